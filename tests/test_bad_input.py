"""Bad input: one clear error naming the bad value, before any work, no results left behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from harness.cli import main


def _run(tmp_path: Path, suite_text: str, *extra: str) -> int:
    suite = tmp_path / "suite.toml"
    suite.write_text(suite_text)
    return main(["run", str(suite), "--out", str(tmp_path / "results"), "--quiet", *extra])


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ('[[methods]]\nname = "ws_fm"', r"unknown method 'ws_fm'.*did you mean 'ws-fm'"),
        ('[[methods]]\nname = "ws-fm"\nt0 = 1.5', r"t0=1\.5 is outside \(0, 1\)"),
        ('[[methods]]\nname = "ws-fm"\nt0 = 0.0', r"t0=0\.0 is outside \(0, 1\)"),
        ('[[methods]]\nname = "ws-fm"\nt0 = [0.5, -0.2]', r"t0=-0\.2 is outside"),
        ('[[methods]]\nname = "ws-fm"\nstart = "cold"', r"start='cold'; allowed: draft"),
        ('[[methods]]\nname = "ws-fm"\ndraft = "great"', r"draft 'great' is neither"),
        ('[[methods]]\nname = "full-fm"\nsolver = "rk45"', r"unknown solver 'rk45'"),
        ('[[methods]]\nname = "full-fm"\nsteps = 3', r"full-fm' has no option 'steps'"),
        ('[[methods]]\nname = "full-fm"\nbudgets = [0]', r"must be a positive integer, got 0"),
    ],
)
def test_bad_method_is_refused_before_work(tmp_path, tiny_suite_text, capsys, methods, message):
    assert _run(tmp_path, tiny_suite_text + methods) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("budgets = [4]", "budgets = [4, 2.5]"),
         r"budgets: each must be a positive integer, got 2\.5 in \[4, 2\.5\]"),
        (("budgets = [4]", "budgets = [-1]"), r"got -1"),
        (("budgets = [4]", 'budgets = ["ten"]'), r"got 'ten'"),
        (('name = "two-moons"', 'name = "two-moon"'), r"unknown task 'two-moon'"),
        (("seeds = [0]", "seeds = [0]\nseed = 3"), r"unknown key 'seed'"),
        (("steps = 60", "step = 60"), r"\[training\] has no key 'step'"),
    ],
)
def test_bad_suite_values(tmp_path, tiny_suite_text, capsys, change, message):
    text = tiny_suite_text.replace(*change) + '[[methods]]\nname = "full-fm"\n'
    assert _run(tmp_path, text) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "results").exists()


def test_missing_and_malformed_suite_files(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "nope.toml does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n[[tasks]")
    assert main(["run", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_an_error(tmp_path, tiny_suite_text, capsys):
    assert _run(tmp_path, tiny_suite_text + '[[methods]]\nname = "full-fm"\n',
                "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert "device 'cuda' asked for, but no CUDA GPU is available" in err
    assert not (tmp_path / "results").exists()


def test_unknown_device_name(tmp_path, tiny_suite_text, capsys):
    assert _run(tmp_path, tiny_suite_text + '[[methods]]\nname = "full-fm"\n',
                "--device", "gpu0") == 2
    assert "device 'gpu0' is not a device name" in capsys.readouterr().err


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a wsfm-bench run: manifest.json is missing" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_run_folder_of_another_suite_is_not_overwritten(tmp_path, tiny_suite_text, capsys):
    text = tiny_suite_text + '[[methods]]\nname = "draft-only"\n'
    assert _run(tmp_path, text, "--run-id", "same", "--no-report") == 0
    assert _run(tmp_path, text.replace("seeds = [0]", "seeds = [1]"), "--run-id", "same") == 2
    assert "holds a run of a different suite configuration" in capsys.readouterr().err
