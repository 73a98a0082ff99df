"""Paths the command cannot use (issue 20, items 7 and 8): a file where a folder is needed, a
folder it cannot write, a folder of someone else's files, an empty run id. Each is one line
naming the path and what to do, exit 2, before any work; an unforeseen one (a PermissionError
deep in a run) is one line too, through the CLI's last line of defence."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness.cli import main
from harness.records.lock import RunLock

DRAFT_ONLY = '[[methods]]\nname = "draft-only"\n'
ROOT = Path(__file__).resolve().parents[1]


def _suite(tmp_path: Path, text: str) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(text + DRAFT_ONLY)
    return str(path)


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("wsfm-bench: error:") == 1 and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(("flag", "where", "message"), [
    ("--out", "a-file/results", "--out {p} would be inside {f}, which is a file; give a folder "
                                "for the results"),
    ("--cache", "a-file", "--cache {p} is a file; give a folder for the cache"),
    ("--run-id", "", "--run-id '' must be a plain folder name (not empty"),
])
def test_a_path_that_cannot_be_a_folder_is_refused_before_any_work(
        tmp_path: Path, tiny_suite_text: str, capsys: pytest.CaptureFixture[str], flag: str,
        where: str, message: str) -> None:
    file = tmp_path / "a-file"
    file.write_text("mine")
    value = str(tmp_path / where) if where else where
    args = ["run", _suite(tmp_path, tiny_suite_text), "--quiet", flag, value]
    if flag != "--out":
        args += ["--out", str(tmp_path / "results")]
    assert main(args) == 2
    assert message.format(p=value, f=file) in _one_error(capsys)
    assert file.read_text() == "mine" and not (tmp_path / "results").exists()
    assert "checking the suite" not in capsys.readouterr().out  # refused before the suite


def test_a_folder_of_other_files_is_not_written_into(tmp_path: Path, tiny_suite_text: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "results" / "mine"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    suite = _suite(tmp_path, tiny_suite_text)
    out = ["--out", str(tmp_path / "results"), "--quiet", "--no-report"]
    assert main(["run", suite, *out, "--run-id", "mine"]) == 2
    err = _one_error(capsys)
    assert f"{mine} is not empty and not a wsfm-bench run (no manifest.json; it holds " \
        "thesis.tex): refusing to write among those files" in err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    # A folder of ours that a killed run left before its manifest (only the lock) is taken.
    ours = tmp_path / "results" / "ours"
    with RunLock(ours):
        pass
    assert main(["run", suite, *out, "--run-id", "ours"]) == 0
    assert (ours / "manifest.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("which", ["out", "cache", "run"])
def test_read_only_folders_are_refused_before_any_work(
        tmp_path: Path, tiny_suite_text: str, capsys: pytest.CaptureFixture[str],
        which: str) -> None:
    out, cache = tmp_path / "results", tmp_path / "cache"
    locked = {"out": out, "cache": cache, "run": out / "r"}[which]
    locked.mkdir(parents=True)
    locked.chmod(0o555)
    try:
        code = main(["run", _suite(tmp_path, tiny_suite_text), "--out", str(out), "--cache",
                     str(cache), "--run-id", "r", "--quiet"])
    finally:
        locked.chmod(0o755)
    assert code == 2
    assert f"{locked} is not writable: make it writable, or give another folder" in \
        _one_error(capsys)


def test_an_unwritable_cache_is_found_before_training(tmp_path: Path, tiny_suite_text: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """As root (CI's containers) no folder is read-only to us: ask os.access as a user would
    get it, so the check itself is what is tested."""
    cache = tmp_path / "shared-cache"
    cache.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != cache and real(p, mode))
    monkeypatch.setenv("WSFM_BENCH_CACHE", str(cache))
    assert main(["run", _suite(tmp_path, tiny_suite_text), "--out",
                 str(tmp_path / "results"), "--quiet"]) == 2
    assert f"the cache folder {cache} is not writable: make it writable, or give another " \
        "folder for the cache" in _one_error(capsys)
    assert not (tmp_path / "results").exists()


def test_a_permission_error_deep_in_a_run_is_one_line(tmp_path: Path, tiny_suite_text: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """What the checks cannot foresee (a folder made read-only while the command runs) still
    ends as one line naming the path, through the CLI's handler of OSErrors with a path."""
    def refused(self: RunLock) -> RunLock:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self.path))

    monkeypatch.setattr(RunLock, "__enter__", refused)
    assert main(["run", _suite(tmp_path, tiny_suite_text), "--out",
                 str(tmp_path / "results"), "--run-id", "r", "--quiet"]) == 2
    err = _one_error(capsys)
    assert f"cannot write {tmp_path / 'results' / 'r' / '.lock'} (permission denied): make " \
        "that folder writable, or give another one" in err


def test_figures_into_a_file_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "a-file"
    file.write_text("mine")
    code = main(["figures", str(ROOT / "tests" / "fixtures" / "smoke-2026-11"), "--out",
                 str(file)])
    assert code == 2 and str(file) in _one_error(capsys) and file.read_text() == "mine"


def test_a_suite_name_that_cannot_name_a_folder_is_blamed_on_the_suite(
        tmp_path: Path, tiny_suite_text: str, capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite(tmp_path, tiny_suite_text.replace('name = "tiny"', 'name = "a/b"'))
    assert main(["run", suite, "--out", str(tmp_path / "results"), "--quiet"]) == 2
    err = _one_error(capsys)
    assert f"{suite}: the suite's name 'a/b' must be a plain folder name" in err
    assert "runs are stored in a folder named after it" in err and "--run-id" not in err


def test_a_report_that_cannot_be_written_is_one_line_and_keeps_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from harness.records import atomic

    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "fixtures" / "smoke-2026-11", run)
    assert main(["report", str(run)]) == 0
    before = (run / "report" / "report.md").read_bytes()
    capsys.readouterr()

    def refused(path: str | Path, text: str) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(atomic, "write_text", refused)
    assert main(["report", str(run)]) == 2
    assert _one_error(capsys).strip() == (
        f"wsfm-bench: error: cannot write the report into {run / 'report'} (Permission denied);"
        " the previous report, if any, is unchanged: make the run folder writable")
    assert (run / "report" / "report.md").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".report")]  # no staged leftovers


def test_a_full_disk_outside_a_run_is_one_line_and_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from harness.report import figures

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "f" / "a.png"))

    monkeypatch.setattr(figures.plt, "close", full)
    code = main(["figures", str(ROOT / "tests" / "fixtures" / "smoke-2026-11"), "--out",
                 str(tmp_path / "f")])
    assert code == 1
    assert _one_error(capsys).strip() == (
        f"wsfm-bench: error: the disk is full (no space left on device writing "
        f"{tmp_path / 'f' / 'a.png'}); free some space (wsfm-bench cache clear --older-than "
        "DAYS frees cached models) and run the same command again")
    assert not (tmp_path / "f").exists()  # figures are staged: nothing half-drawn is left
