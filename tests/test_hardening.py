"""Bad inputs, concurrent runs, broken plugins and compare edge cases (issue 14): each answered
with one line naming the file, key or plugin, exit 2, nothing partial left behind (or a run
folder marked failed with the reason)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.errors import SchemaError
from harness.plugins import Metric
from harness.records.lock import RunLock
from harness.records.store import read_cells
from harness.registry import metrics
from harness.report.format import fmt_ci
from tests.synthetic import fields_of

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "smoke-2026-11"
DRAFT_ONLY = '[[methods]]\nname = "draft-only"\n'


def _run(tmp_path: Path, text: str, *extra: str) -> int:
    suite = tmp_path / "suite.toml"
    suite.write_text(text)
    return main(["run", str(suite), "--out", str(tmp_path / "results"), "--quiet", *extra])


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("wsfm-bench: error:") == 1 and "Traceback" not in err, err
    return err


# 1. Image folders with nothing, or something broken, in them.
def _folder(tmp_path: Path, bad: str | None) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    if bad == "empty":
        return root
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / f"{i}.png")
    if bad == "random-bytes":
        (root / "noise.png").write_bytes(rng.bytes(300))
    elif bad == "half-written":
        data = (root / "0.png").read_bytes()
        big = root / "big.png"
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(big)
        big.write_bytes(big.read_bytes()[: len(big.read_bytes()) // 2])
        assert data  # the other files stay whole
    return root


@pytest.mark.parametrize(("bad", "message"), [
    ("empty", r"holds no \.png/\.jpg/\.jpeg/\.bmp images"),
    ("random-bytes", r"noise\.png is not a readable image"),
    ("half-written", r"big\.png is not a readable image"),
])
def test_broken_image_folder_is_refused_before_any_work(tmp_path, capsys, bad, message) -> None:
    root = _folder(tmp_path, bad)
    text = (f'name = "img"\nseeds = [0]\nbudgets = [2]\n[[tasks]]\nname = "image-folder"\n'
            f'root = "{root}"\nn_test = 2\nimage_size = 8\n' + DRAFT_ONLY)
    assert _run(tmp_path, text) == 2
    import re

    err = _one_error(capsys)
    assert re.search(message, err) and "task 'image-folder'" in err
    assert not (tmp_path / "results").exists()  # no run folder, no manifest "running"


# 2. Two runs into one folder.
def test_a_second_run_into_a_held_folder_is_refused(tmp_path, tiny_suite_text, capsys) -> None:
    run_dir = tmp_path / "results" / "r"
    with RunLock(run_dir):
        assert _run(tmp_path, tiny_suite_text + DRAFT_ONLY, "--run-id", "r") == 2
        err = _one_error(capsys)
        assert f"is being run by process {os.getpid()}" in err and "another --run-id" in err
    assert not (run_dir / "manifest.json").exists()
    # A lock left by a process that is gone (a killed run) is taken over.
    (run_dir / ".lock").write_text('{"pid": 999999, "host": "gone", "started": "then"}')
    assert _run(tmp_path, tiny_suite_text + DRAFT_ONLY, "--run-id", "r", "--no-report") == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed"] == []


# 3. compare: nothing in common; an unfinished run.
def _copy(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(FIXTURE, out)
    return out


def test_compare_with_nothing_in_common_is_an_error(tmp_path, capsys) -> None:
    other = _copy(tmp_path, "other")
    for cell in (other / "cells").glob("*.json"):
        record = json.loads(cell.read_text())
        cell.write_text(json.dumps({**record, "task": "spirals"}))
    assert main(["compare", str(FIXTURE), str(other)]) == 2
    err = _one_error(capsys)
    assert "no (task, method, variant, N, metric) group in common" in err
    assert "['two-moons']" in err and "['spirals']" in err


def test_compare_of_an_unfinished_run_says_so(tmp_path, capsys) -> None:
    new = _copy(tmp_path, "new")
    manifest = json.loads((new / "manifest.json").read_text())
    (new / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    assert main(["compare", str(FIXTURE), str(new)]) == 0
    out = capsys.readouterr().out
    assert f"**Warning: the new run {new} is unfinished (status running)" in out
    assert out.index("**Warning") < out.index("## Regressions")


# 4. Broken and clashing third-party plugins.
def _fake_distribution(site: Path) -> None:
    dist = site / "clash_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clash-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [wsfm_bench.methods]
        full-fm = clash_pkg:Clash
        broken = broken_pkg:Broken
        """))
    (site / "clash_pkg.py").write_text('class Clash:\n    """Takes a built-in\'s name."""\n')
    (site / "broken_pkg.py").write_text("raise ImportError('this plugin is broken')\n")


def test_broken_or_clashing_plugins_are_reported_not_fatal(tmp_path, tiny_suite_text) -> None:
    site = tmp_path / "site"
    _fake_distribution(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")]), "WSFM_BENCH_CACHE": str(tmp_path / "cache")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    clash = next(x for x in lines if x.strip().startswith("full-fm"))
    assert "BROKEN: method plugin 'full-fm' is registered twice" in clash
    assert "wsfm-bench (entry point wsfm.methods:FullFM)" in clash and "clash-pkg" in clash
    broken = next(x for x in lines if x.strip().startswith("broken"))
    assert "BROKEN: cannot load method plugin 'broken' from clash-pkg" in broken
    assert "this plugin is broken" in broken
    assert any(x.strip().startswith("ws-fm") for x in lines)  # the others still listed
    assert "2 plugin(s) cannot be used" in listing.stderr
    # A suite naming the clashing name is refused; one that does not runs.
    suite = tmp_path / "s.toml"
    suite.write_text(tiny_suite_text + '[[methods]]\nname = "full-fm"\n')
    refused = cli("run", str(suite), "--quiet")
    assert refused.returncode == 2 and "registered twice" in refused.stderr
    suite.write_text(tiny_suite_text + DRAFT_ONLY)
    fine = cli("run", str(suite), "--quiet", "--no-report")
    assert fine.returncode == 0, fine.stderr


# 5. --out, --run-id, --threads.
@pytest.mark.parametrize(("extra", "message"), [
    (("--out", "FILE"), "is a file; give a folder for the results"),
    (("--run-id", "../escaped"), "--run-id '../escaped' must be a plain folder name"),
    (("--threads", "0"), "threads must be a positive integer, got 0"),
])
def test_bad_command_line_values(tmp_path, tiny_suite_text, capsys, extra, message) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    suite = tmp_path / "suite.toml"
    suite.write_text(tiny_suite_text + DRAFT_ONLY)
    args = [a.replace("FILE", str(file)) for a in extra]
    out = ["--out", str(tmp_path / "results")] if "--out" not in args else []
    assert main(["run", str(suite), "--quiet", *out, *args]) == 2
    assert message in _one_error(capsys)
    assert not (tmp_path / "results").exists() and not (tmp_path / "escaped").exists()


# 6. Failed and interrupted runs.
def test_failed_run_is_marked_and_report_refuses_an_empty_run(tmp_path, tiny_suite_text,
                                                               monkeypatch, capsys) -> None:
    from harness.run.jobs import Worker

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Worker, "run", boom)
    with pytest.raises(RuntimeError, match="boom"):
        _run(tmp_path, tiny_suite_text + DRAFT_ONLY, "--run-id", "f")
    manifest = json.loads((tmp_path / "results" / "f" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: boom"
    capsys.readouterr()
    assert main(["report", str(tmp_path / "results" / "f")]) == 2
    assert "has no finished cells (status failed: RuntimeError: boom)" in _one_error(capsys)


def test_report_of_an_interrupted_run_says_it_is_unfinished(tmp_path, capsys) -> None:
    run = _copy(tmp_path, "killed")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(status="running", finished=None)
    (run / "manifest.json").write_text(json.dumps(manifest))
    for cell in sorted((run / "cells").glob("*.json"))[:10]:
        cell.unlink()
    assert main(["report", str(run)]) == 0
    md = (run / "report" / "report.md").read_text()
    assert "**Unfinished run: it was interrupted (no process is running it); 50 of 60 cells " \
        "recorded." in md
    assert md.index("Unfinished run") < md.index("## Headline")


# 7. Silent acceptance.
def test_unknown_metric_tolerance_and_cache_kind_are_refused(tmp_path, capsys) -> None:
    assert main(["compare", str(FIXTURE), str(FIXTURE), "--metric-tol", "swdd:rel=0.1"]) == 2
    err = _one_error(capsys)
    assert "--metric-tol names metric 'swdd', which neither run measures" in err
    assert "swd" in err
    assert main(["cache", "clear", "--kind", "modelz", "--cache", str(tmp_path)]) == 2
    assert "--kind 'modelz': no such cache kind; kinds: " in _one_error(capsys)


def test_an_empty_cell_file_is_not_called_old(tmp_path) -> None:
    run = _copy(tmp_path, "run")
    (run / "cells" / "empty.json").write_text("{}")
    with pytest.raises(SchemaError, match=r"empty\.json is not a cell record: it holds none"):
        read_cells(run)


# 8. A third-party metric on a built-in task, from the suite; plugin provenance.
@dataclass
class CentreDistance(Metric):
    """Test metric: distance of the samples' mean from the reference's (lower is better)."""

    power: int = 1
    higher_is_better = False

    def setup(self, train, labels) -> None:
        pass

    def reference_stats(self, reference, seed):
        return {}

    def compute(self, samples, reference, seed, stats=None) -> float:
        return float((samples.mean(0) - reference.mean(0)).norm()) ** self.power


def test_suite_adds_a_metric_to_a_built_in_task(tmp_path, tiny_suite_text) -> None:
    metrics.register("centre-distance")(CentreDistance)
    text = tiny_suite_text.replace(
        'name = "two-moons"',
        'name = "two-moons"\nmetrics = ["swd", "centre-distance"]\n'
        'metric_options = { centre-distance = { power = 2 } }\nprimary_metric = "swd"')
    assert _run(tmp_path, text + DRAFT_ONLY, "--run-id", "m", "--no-report") == 0
    run = tmp_path / "results" / "m"
    [record] = map(fields_of, read_cells(run))
    assert set(record["metrics"]) == {"swd", "centre-distance"}
    assert record["metrics"]["centre-distance"]["value"] >= 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["plugins"]["metric"]["centre-distance"]["package"] is None  # in-process
    assert manifest["plugins"]["metric"]["swd"]["package"] == "wsfm-bench"
    bad = text.replace("power = 2", "powr = 2")
    assert _run(tmp_path, bad + DRAFT_ONLY, "--run-id", "m2") == 2


# 9. Report text that follows the run.
def test_one_seed_has_no_interval_and_text_ar_has_no_levels() -> None:
    from baselines.autoregressive import Autoregressive

    assert fmt_ci([3.803]) == "3.803 (one seed: no interval)"
    assert fmt_ci([1.0, 2.0, 3.0]).startswith("2 [")
    assert Autoregressive().label(text=True) == "characters"
    assert Autoregressive().label() == "levels=16"


# 10. Usability.
def test_list_imports_no_torch_and_run_help_points_at_the_suite_format(capsys) -> None:
    code = ("import sys; from harness.cli import main; main(['list']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip().endswith("NO TORCH") and "two-moons" in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "harness/run/suite.py" in help_text and "wsfm-bench list --options" in help_text
    assert main(["list", "metric", "--options"]) == 0
    assert "n_projections: int = 256" in capsys.readouterr().out


def test_quiet_still_says_what_it_runs_and_resumes(tmp_path, tiny_suite_text, capsys) -> None:
    assert _run(tmp_path, tiny_suite_text + DRAFT_ONLY, "--run-id", "q", "--no-report") == 0
    assert "1 cells into" in capsys.readouterr().out
    assert _run(tmp_path, tiny_suite_text + DRAFT_ONLY, "--run-id", "q", "--no-report") == 0
    assert "resuming: 1 already recorded" in capsys.readouterr().out
