"""The results schema: real records and manifests validate; bad, old, newer and corrupt files
are refused with messages that name the file and the field; invalid records are never written."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from harness.cache import Cache
from harness.errors import RunDirError, SchemaError
from harness.records import schema
from harness.records import store as records
from harness.records.schema import (
    SCHEMA_VERSION,
    SchemaVersionError,
    validate_manifest,
    validate_record,
)
from harness.run import runner
from harness.run.cell import OPTIONAL, Cell
from harness.run.suite import parse_suite

VERSION_ADVICE = "rerun the suite with this version, or read it with the wsfm-bench that wrote it"

SUITE = {
    "name": "schema-test", "seeds": [0], "budgets": [4], "n_samples": 200, "n_eval": 200,
    "repeats": 1, "warmup": 1, "training": {"steps": 20},
    "tasks": [{"name": "two-moons", "n_train": 300, "n_test": 200}],
    "methods": [{"name": "ws-fm", "t0": 0.75}],
}


def _cell(method: str, options: dict[str, Any]) -> Cell:
    return Cell(task="two-moons", task_options={"n_train": 300, "n_test": 200}, method=method,
                method_options=options, n_steps=4, seed=0, device="cpu", n_samples=200,
                n_eval=200, repeats=1, warmup=1, training={"steps": 20})


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, Any]:
    """A warm-start and a draft-only record made by run_cell, and a manifest by _manifest."""
    tmp = tmp_path_factory.mktemp("schema")
    cache = Cache(tmp / "cache")
    warm, warm_samples = runner.run_cell(_cell("ws-fm", {"t0": 0.75}), cache, progress=False)
    draft, _ = runner.run_cell(_cell("draft-only", {"draft": "good"}), cache, progress=False)
    suite = parse_suite(copy.deepcopy(SUITE), "schema test suite")
    return {"warm": warm, "samples": warm_samples, "draft": draft,
            "manifest": runner._manifest(suite, "schema-run", None)}


def _versioned(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it lands on disk: JSON round trip, with schema_version."""
    return json.loads(json.dumps({"schema_version": SCHEMA_VERSION, **record}, default=str))


def _run_dir(tmp_path: Path, real: dict[str, Any]) -> Path:
    run = tmp_path / "run"
    records.write_manifest(run, real["manifest"])
    records.write_cell(run, real["warm"], real["samples"])
    return run


def _write_cell_file(run: Path, record: dict[str, Any], name: str = "bad") -> Path:
    path = records.cell_path(run, name)
    path.write_text(json.dumps(record))
    return path


# --- the schema files ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["record", "manifest"])
def test_schema_files_are_valid_and_documented(kind: str) -> None:
    doc = schema.load_schema(kind)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith(f"{kind}:{SCHEMA_VERSION}") and doc["title"] and doc["description"]
    assert doc["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert "schema_version" in doc["required"]
    assert doc["additionalProperties"] is True

    undocumented = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    undocumented.append(f"{where}.{name}")
            for key, sub in node.items():
                if key != "if":  # a condition, not a field
                    walk(sub, f"{where}.{key}" if key != "properties" else where)
        elif isinstance(node, list):
            for sub in node:
                walk(sub, where)

    walk(doc, "$")
    assert not undocumented, f"properties without a description: {undocumented}"


def test_record_schema_covers_what_the_runner_writes(real) -> None:
    doc = schema.load_schema("record")
    props = set(doc["properties"])
    tidy = set(records.COLUMNS) - {"metric", "value", "higher_is_better"}
    assert tidy <= props, f"COLUMNS not in the schema: {tidy - props}"
    for rec in (real["warm"], real["draft"]):
        assert set(rec) <= props, f"undocumented record fields: {set(rec) - props}"
    # Required: exactly what every record has (the bound check is warm-start only).
    always = set(real["warm"]) & set(real["draft"]) | {"schema_version"}
    # Fields added within version 1 stay optional, so older version-1 records still validate.
    added_in_v1 = {"finalize", "compile", "compile_s", "refiner_stats", "train_s", "train_parts",
                   "convergence"}
    assert set(doc["required"]) == always - added_in_v1
    # compile, metrics and metric_options are written only when set, so the ids of cells
    # without them did not change.
    assert set(doc["$defs"]["cell"]["required"]) == {f.name for f in fields(Cell)} - set(
        OPTIONAL)


# --- good files ------------------------------------------------------------------------------


def test_real_records_and_manifest_validate(real) -> None:
    assert real["draft"]["t0"] is None and "bound_ok" not in real["draft"]
    assert real["warm"]["bound_ok"] is not None and real["warm"]["t0"] == 0.75
    for rec in (real["warm"], real["draft"]):
        validate_record(_versioned(rec), "record.json")
    manifest = _versioned(real["manifest"])
    assert real["manifest"]["schema_version"] == SCHEMA_VERSION
    validate_manifest(manifest, "manifest.json")
    manifest.update(finished="2026-01-01T00:00:00+0000", status="complete",
                    cells={"total": 1, "reused": 0, "run": 1},
                    cache={"root": "/tmp/c", "hits": 0, "misses": 2})
    validate_manifest(manifest, "manifest.json")


def test_written_run_reads_back(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    on_disk = json.loads(records.cell_path(run, real["warm"]["cell_id"]).read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION
    assert "schema_version" not in real["warm"]  # the caller's dict is left alone
    assert records.read_manifest(run)["schema_version"] == SCHEMA_VERSION
    assert [r["cell_id"] for r in records.read_cells(run)] == [real["warm"]["cell_id"]]
    df = records.load_run(run)
    assert len(df) == len(real["warm"]["metrics"]) and list(df.columns) == records.COLUMNS


# --- bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "path", "expected"),
    [
        (lambda r: r.update(nfe_measured="10"), "$.nfe_measured", "is not of type 'integer'"),
        (lambda r: r.update(nfe_measured=2.5), "$.nfe_measured", "is not of type 'integer'"),
        (lambda r: r.pop("metrics"), "$.metrics", "required field 'metrics' is missing"),
        (lambda r: r["metrics"]["swd"].update(value="0.1"), "$.metrics.swd.value",
         "is not of type 'number', 'null'"),
        (lambda r: r["metrics"]["swd"].pop("higher_is_better"), "$.metrics.swd.higher_is_better",
         "required field"),
        (lambda r: r["cell"].pop("seed"), "$.cell.seed", "required field 'seed' is missing"),
        (lambda r: r.pop("wall_bound"), "$.wall_bound", "'bound_ok' is present"),
        (lambda r: r["timings"]["total"].update(times=[]), "$.timings.total.times",
         "should be non-empty"),
        (lambda r: r.update(t0=1.5), "$.t0", "greater than the maximum of 1"),
    ],
    ids=["nfe-str", "nfe-float", "no-metrics", "metric-str", "metric-direction", "cell-seed",
         "bound-fields", "no-times", "t0-range"],
)
def test_bad_record_is_refused_naming_file_and_field(tmp_path: Path, real, mutate, path,
                                                     expected) -> None:
    run = _run_dir(tmp_path, real)
    bad = _versioned(real["warm"])
    mutate(bad)
    file = _write_cell_file(run, bad)
    with pytest.raises(SchemaError) as info:
        records.read_cells(run)
    message = str(info.value)
    assert str(file) in message and f"at {path}" in message and expected in message, message
    assert "delete it to rerun that cell" in message
    assert not isinstance(info.value, SchemaVersionError)
    with pytest.raises(RunDirError, match="does not match the results schema"):
        records.load_run(run)


def test_plugin_fields_are_allowed_at_the_top_level(real) -> None:
    validate_record({**_versioned(real["warm"]), "my_plugin_score": [1, 2]}, "record.json")
    with pytest.raises(SchemaError, match=r"at \$\.cell: Additional properties"):
        bad = _versioned(real["warm"])
        bad["cell"]["colour"] = "red"
        validate_record(bad, "record.json")


@pytest.mark.parametrize("version", ["2", "0"])
def test_other_schema_version_gives_the_version_message(tmp_path: Path, real, version) -> None:
    run = _run_dir(tmp_path, real)
    file = _write_cell_file(run, {**_versioned(real["warm"]), "schema_version": version})
    with pytest.raises(SchemaVersionError) as info:
        records.read_cells(run)
    assert str(info.value) == (
        f"{file} was written with results schema version {version}; this wsfm-bench reads "
        f"version {SCHEMA_VERSION}: {VERSION_ADVICE}"
    )


def test_missing_schema_version_is_an_old_unversioned_file(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    old = _versioned(real["warm"])
    del old["schema_version"]
    file = _write_cell_file(run, old)
    with pytest.raises(SchemaVersionError) as info:
        records.read_cells(run)
    message = str(info.value)
    assert message.startswith(f"{file} has no schema_version") and "older wsfm-bench" in message
    assert f"reads version {SCHEMA_VERSION}: {VERSION_ADVICE}" in message


def test_non_string_schema_version_is_refused(real) -> None:
    with pytest.raises(SchemaVersionError, match="schema_version must be a string"):
        validate_record({**_versioned(real["warm"]), "schema_version": 1}, "record.json")
    with pytest.raises(SchemaError, match="must be a JSON object, got list"):
        validate_record([1, 2], "record.json")


def test_truncated_cell_file_names_the_file(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    path = records.cell_path(run, real["warm"]["cell_id"])
    path.write_text(path.read_text()[:200])
    with pytest.raises(RunDirError) as info:
        records.read_cells(run)
    assert str(path) in str(info.value) and "corrupt" in str(info.value)
    assert not isinstance(info.value, SchemaError)


def test_write_cell_refuses_an_invalid_record_and_writes_nothing(tmp_path: Path, real) -> None:
    run = tmp_path / "run"
    bad = {**real["warm"], "nfe_measured": "ten"}
    with pytest.raises(SchemaError) as info:
        records.write_cell(run, bad, real["samples"])
    message = str(info.value)
    assert message.startswith("refusing to write cell record")
    assert str(records.cell_path(run, bad["cell_id"])) in message and "$.nfe_measured" in message
    assert not run.exists() or not any(run.rglob("*")), list(run.rglob("*"))
    # A value json can only write as a string (here a numpy integer) is refused too.
    with pytest.raises(SchemaError, match=r"\$\.nfe_measured: '4' is not of type 'integer'"):
        records.write_cell(run, {**real["warm"], "nfe_measured": np.int64(4)}, None)
    with pytest.raises(SchemaVersionError, match="writes version"):
        records.write_cell(run, {**real["warm"], "schema_version": "0"}, None)
    assert not run.exists() or not any(run.rglob("*"))


def test_write_manifest_refuses_an_invalid_manifest(tmp_path: Path, real) -> None:
    run = tmp_path / "run"
    path = records.write_manifest(run, real["manifest"])
    before = path.read_bytes()
    for bad, where in [({"status": "done"}, "$.status"),
                       ({"status": "complete"}, "$.cells"),  # a complete run has its counts
                       ({"seeds": ["0"]}, "$.seeds[0]")]:
        with pytest.raises(SchemaError) as info:
            records.write_manifest(run, {**real["manifest"], **bad})
        assert f"at {where}" in str(info.value) and str(path) in str(info.value)
        assert path.read_bytes() == before
    assert [p.name for p in run.iterdir()] == ["manifest.json"]  # no temporary left behind


def test_load_run_refuses_a_manifest_of_another_version(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    path = run / records.MANIFEST
    path.write_text(json.dumps({**_versioned(real["manifest"]), "schema_version": "0"}))
    with pytest.raises(SchemaVersionError) as info:
        records.load_run(run)
    assert str(info.value) == (
        f"{path} was written with results schema version 0; this wsfm-bench reads version "
        f"{SCHEMA_VERSION}: {VERSION_ADVICE}"
    )
    old = _versioned(real["manifest"])
    del old["schema_version"]
    path.write_text(json.dumps(old))
    with pytest.raises(SchemaVersionError, match="has no schema_version"):
        records.load_run(run)


def test_bad_manifest_field_is_named(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    path = run / records.MANIFEST
    bad = _versioned(real["manifest"])
    bad["git_commit"] = "deadbeef"
    path.write_text(json.dumps(bad))
    with pytest.raises(SchemaError) as info:
        records.read_manifest(run)
    message = str(info.value)
    assert message.startswith(f"run manifest {path} does not match the results schema")
    assert "at $.git_commit: 'deadbeef' is not of type 'object'" in message
