"""The results schema: generated from the typed record; real records and manifests validate and
read back as they were written; bad, newer and corrupt files are refused with messages that
name the file and the field; invalid records are never written; stored runs of version 1 load
through the migration (the smoke fixture and the checked-in smoke reference)."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from harness.analysis.compare import compare_runs
from harness.cache import Cache
from harness.errors import RunDirError, SchemaError
from harness.records import schema
from harness.records import store as records
from harness.records.cell import OPTIONAL, Cell
from harness.records.record import SECTIONS, CellRecord
from harness.records.schema import (
    SCHEMA_VERSION,
    SchemaVersionError,
    validate_manifest,
    validate_record,
)
from harness.run import runner
from harness.run.jobs import Worker
from harness.run.suite import parse_suite

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "smoke-2026-11"  # a smoke run of version 1
REFERENCE = ROOT / "results" / "reference" / "smoke"
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
    """A warm-start and a draft-only record made by a worker, and a manifest by _manifest."""
    tmp = tmp_path_factory.mktemp("schema")
    cache, worker = Cache(tmp / "cache"), Worker()
    warm, warm_samples = worker.run(_cell("ws-fm", {"t0": 0.75}), cache, progress=False)
    draft, _ = worker.run(_cell("draft-only", {"draft": "good"}), cache, progress=False)
    suite = parse_suite(copy.deepcopy(SUITE), "schema test suite")
    return {"warm": warm, "samples": warm_samples, "draft": draft,
            "manifest": runner._manifest(suite, "schema-run", None)}


def _json(record: CellRecord) -> dict[str, Any]:
    """The record as it lands on disk: a JSON round trip."""
    return json.loads(json.dumps(record.to_json(), default=str))


def _run_dir(tmp_path: Path, real: dict[str, Any]) -> Path:
    run = tmp_path / "run"
    records.write_manifest(run, real["manifest"])
    records.write_cell(run, real["warm"], real["samples"])
    return run


def _write_cell_file(run: Path, record: dict[str, Any], name: str = "bad") -> Path:
    path = records.cell_path(run, name)
    path.write_text(json.dumps(record))
    return path


# --- the schema ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["record", "manifest"])
def test_schemas_are_valid_and_documented(kind: str) -> None:
    doc = schema.load_schema(kind)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith(f"{kind}:{SCHEMA_VERSION}") and doc["title"] and doc["description"]
    assert doc["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert "schema_version" in doc["required"]

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


def test_the_record_schema_is_generated_from_the_typed_record() -> None:
    doc = schema.load_schema("record")
    assert set(doc["properties"]) == {f.name for f in fields(CellRecord)}
    required = {f.name for f in fields(CellRecord) if f.default is f.default_factory is MISSING}
    assert set(doc["required"]) == required == {"schema_version", "cell", *SECTIONS,
                                                "metrics"} - {"bound", "budget"}
    for cls in SECTIONS.values():
        assert set(doc["$defs"][cls.__name__]["properties"]) == {f.name for f in fields(cls)}
    # compile, metrics and metric_options are written only when set, so the ids of cells
    # without them did not change.
    assert set(doc["$defs"]["Cell"]["required"]) == {f.name for f in fields(Cell)} - set(
        OPTIONAL)
    # The copy for readers is the generated schema (python -m harness.records.schema).
    stored = json.loads(schema.schema_path("record").read_text())
    assert stored == json.loads(json.dumps(doc)), "run python -m harness.records.schema"


# --- good files ------------------------------------------------------------------------------


def test_real_records_and_manifest_validate(real) -> None:
    draft, warm = real["draft"], real["warm"]
    assert draft.plan.t0 is None and draft.bound is None and draft.identity.role == "floor"
    assert warm.bound is not None and warm.plan.t0 == 0.75 and warm.identity.role == "warm-start"
    assert warm.identity.title == "WS-FM" and warm.identity.draft == "good"
    for rec in (warm, draft):
        validate_record(_json(rec), "record.json")
    manifest = json.loads(json.dumps(real["manifest"]))
    assert manifest["schema_version"] == SCHEMA_VERSION
    validate_manifest(manifest, "manifest.json")
    manifest.update(finished="2026-01-01T00:00:00+0000", status="complete",
                    cells={"total": 1, "reused": 0, "run": 1},
                    cache={"root": "/tmp/c", "hits": 0, "misses": 2})
    validate_manifest(manifest, "manifest.json")


def test_written_run_reads_back_as_it_was_written(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    on_disk = json.loads(records.cell_path(run, real["warm"].cell_id).read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION
    assert records.read_manifest(run)["schema_version"] == SCHEMA_VERSION
    assert records.read_cells(run) == [real["warm"]]
    df = records.load_run(run)
    assert len(df) == len(real["warm"].metrics) and list(df.columns) == records.COLUMNS
    assert set(df["role"]) == {"warm-start"} and set(df["title"]) == {"WS-FM"}


# --- bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "path", "expected"),
    [
        (lambda r: r["sampling"].update(nfe_measured="10"), "$.sampling.nfe_measured",
         "is not of type 'integer'"),
        (lambda r: r["sampling"].update(nfe_measured=2.5), "$.sampling.nfe_measured",
         "is not of type 'integer'"),
        (lambda r: r.pop("metrics"), "$.metrics", "required field 'metrics' is missing"),
        (lambda r: r["metrics"]["swd"].update(value="0.1"), "$.metrics.swd.value",
         "is not of type 'number'"),
        (lambda r: r["metrics"]["swd"].pop("higher_is_better"), "$.metrics.swd.higher_is_better",
         "required field"),
        (lambda r: r["cell"].pop("seed"), "$.cell.seed", "required field 'seed' is missing"),
        (lambda r: r["bound"].pop("wall_bound"), "$.bound.wall_bound", "required field"),
        (lambda r: r["identity"].update(role="hero"), "$.identity.role", "is not one of"),
        (lambda r: r["plan"].update(t0=1.5), "$.plan.t0", "greater than the maximum of 1"),
        (lambda r: r["identity"].update(colour="red"), "$.identity",
         "Additional properties are not allowed"),
    ],
    ids=["nfe-str", "nfe-float", "no-metrics", "metric-str", "metric-direction", "cell-seed",
         "bound-fields", "role", "t0-range", "extra-field"],
)
def test_bad_record_is_refused_naming_file_and_field(tmp_path: Path, real, mutate, path,
                                                     expected) -> None:
    run = _run_dir(tmp_path, real)
    bad = _json(real["warm"])
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


@pytest.mark.parametrize("version", ["99", "0"])
def test_unknown_schema_version_gives_the_version_message(tmp_path: Path, real, version) -> None:
    run = _run_dir(tmp_path, real)
    file = _write_cell_file(run, {**_json(real["warm"]), "schema_version": version})
    with pytest.raises(SchemaVersionError) as info:
        records.read_cells(run)
    assert str(info.value) == (
        f"{file} was written with results schema version {version}; this wsfm-bench reads "
        f"versions 1, {SCHEMA_VERSION}: read it with the wsfm-bench that wrote it (or a newer "
        "one), or rerun the suite with this version")


def test_missing_schema_version_is_an_old_unversioned_file(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    old = _json(real["warm"])
    del old["schema_version"]
    old.update(cell_id="x", task="two-moons")  # fields a record of any version had
    file = _write_cell_file(run, old)
    with pytest.raises(SchemaVersionError) as info:
        records.read_cells(run)
    message = str(info.value)
    assert message.startswith(f"{file} has no schema_version") and "older wsfm-bench" in message


def test_non_string_schema_version_is_refused(real) -> None:
    with pytest.raises(SchemaVersionError, match="schema_version must be a string"):
        validate_record({**_json(real["warm"]), "schema_version": 2}, "record.json")
    with pytest.raises(SchemaError, match="must be a JSON object, got list"):
        validate_record([1, 2], "record.json")


def test_truncated_cell_file_names_the_file(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    path = records.cell_path(run, real["warm"].cell_id)
    path.write_text(path.read_text()[:200])
    with pytest.raises(RunDirError) as info:
        records.read_cells(run)
    assert str(path) in str(info.value) and "corrupt" in str(info.value)
    assert not isinstance(info.value, SchemaError)


def test_write_cell_refuses_an_invalid_record_and_writes_nothing(tmp_path: Path, real) -> None:
    run = tmp_path / "run"
    warm = real["warm"]
    bad = replace(warm, sampling=replace(warm.sampling, nfe_measured="ten"))
    with pytest.raises(SchemaError) as info:
        records.write_cell(run, bad, real["samples"])
    message = str(info.value)
    assert message.startswith("refusing to write cell record")
    assert str(records.cell_path(run, warm.cell_id)) in message
    assert "$.sampling.nfe_measured" in message
    assert not run.exists() or not any(run.rglob("*")), list(run.rglob("*"))
    # A value json can only write as a string (here a numpy integer) is refused too.
    numpy_int = replace(warm, sampling=replace(warm.sampling, nfe_measured=np.int64(4)))
    with pytest.raises(SchemaError, match=r"nfe_measured: '4' is not of type 'integer'"):
        records.write_cell(run, numpy_int, None)
    with pytest.raises(SchemaVersionError, match="writes version"):
        records.write_cell(run, replace(warm, schema_version="1"), None)
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


def test_load_run_refuses_a_manifest_of_an_unknown_version(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    path = run / records.MANIFEST
    manifest = json.loads(json.dumps(real["manifest"]))
    path.write_text(json.dumps({**manifest, "schema_version": "0"}))
    with pytest.raises(SchemaVersionError, match=f"{path} was written with results schema "
                                                 "version 0"):
        records.load_run(run)
    del manifest["schema_version"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(SchemaVersionError, match="has no schema_version"):
        records.load_run(run)


def test_bad_manifest_field_is_named(tmp_path: Path, real) -> None:
    run = _run_dir(tmp_path, real)
    path = run / records.MANIFEST
    bad = json.loads(json.dumps(real["manifest"]))
    bad["git_commit"] = "deadbeef"
    path.write_text(json.dumps(bad))
    with pytest.raises(SchemaError) as info:
        records.read_manifest(run)
    message = str(info.value)
    assert message.startswith(f"run manifest {path} does not match the results schema")
    assert "at $.git_commit: 'deadbeef' is not of type 'object'" in message


# --- stored runs of version 1 ----------------------------------------------------------------


@pytest.mark.parametrize("run", [FIXTURE, REFERENCE], ids=["fixture", "reference"])
def test_stored_runs_load_through_the_migration(run: Path) -> None:
    """Every stored record reads as this version's typed record, with the values it holds."""
    raw = {p.stem: json.loads(p.read_text()) for p in (run / "cells").glob("*.json")}
    cells = {c.cell_id: c for c in records.read_cells(run, time_budgets=None)}
    assert set(cells) == set(raw) and cells
    assert records.read_manifest(run)["schema_version"] == SCHEMA_VERSION
    roles = {"full-fm": "reference", "ws-fm": "warm-start", "warm-start": "warm-start",
             "draft-only": "floor", "ddim": "baseline", "ddpm": "baseline"}
    for cell_id, old in raw.items():
        new = cells[cell_id]
        if old.get("schema_version") != "1":
            continue  # already this version (a refreshed reference)
        flat = new.flat()
        for column in ("task", "method", "variant", "draft", "t0", "n_steps", "k_steps",
                       "nfe_measured", "nfe_ok", "seed", "time_s", "nfe_speedup", "bound_ok"):
            want, got = old.get(column), flat[column]
            assert got == want or (got is None and want is None), (cell_id, column, got, want)
        assert new.identity.role == roles[old["method"]]
        assert new.quality() == {k: m["value"] for k, m in old["metrics"].items()} or all(
            math.isnan(v) for v in new.quality().values())
    assert not records.load_run(run).empty


def test_a_migrated_run_compares_with_itself() -> None:
    result = compare_runs(FIXTURE, FIXTURE)
    assert result.exit_code == 0 and result.regressions == [] and result.compared > 0
