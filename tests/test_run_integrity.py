"""A run folder read as a whole (issue 20): cells that are not the run's own are refused,
records.csv is rebuilt from the cells, unfinished runs say so, corrupt sample files are named,
and a report or figures folder is replaced whole, never left half-written."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.records import atomic
from harness.records.store import corrupt_samples, load_run, read_cells, samples_path
from tests.test_compare import _make_run

ROOT = Path(__file__).resolve().parents[1]
FOREIGN = "delete it, or move it back to the run it came from"


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command printed."""
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("wsfm-bench: error: ")
    return line


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# Item 4: foreign cells.
def _other_task(rec: dict) -> None:
    rec["task"] = rec["cell"]["task"] = "spirals"


@pytest.mark.parametrize("command", ["summary", "report", "figures", "compare"])
def test_a_cell_copied_from_another_run_is_refused(tmp_path, capsys, command: str) -> None:
    run = _make_run(tmp_path, "run")
    other = _make_run(tmp_path, "other", _other_task)
    stray = sorted((other / "cells").glob("*.json"))[0]
    shutil.copy(stray, run / "cells")
    before = _files(run)
    argv = [command, str(run)] + ([str(run)] if command == "compare" else [])
    assert main(argv) == 2
    line = _error(capsys)
    assert f"cell file {run / 'cells' / stray.name} is not a cell of this run's suite" in line
    assert "task 'spirals'" in line and line.endswith(f"copied from another run; {FOREIGN}")
    assert _files(run) == before  # nothing written, nothing lost
    (run / "cells" / stray.name).unlink()
    assert main(argv) in (0, 1) and len(read_cells(run)) == 6


def _later_seed(rec: dict) -> None:
    rec["seed"] = rec["cell"]["seed"] = rec["seed"] + 5


def test_a_cell_of_a_seed_the_suite_never_ran_is_refused(tmp_path, capsys) -> None:
    run = _make_run(tmp_path, "run", seeds=[0, 1, 2])
    later = _make_run(tmp_path, "later", _later_seed, seeds=[2])
    shutil.copy(next((later / "cells").glob("*.json")), run / "cells")
    assert main(["summary", str(run)]) == 2
    assert "seed 7 is not one of its seeds for 'two-moons', [0, 1, 2]" in _error(capsys)


def test_a_renamed_or_edited_cell_file_is_refused(tmp_path, capsys) -> None:
    run = _make_run(tmp_path, "run")
    first = sorted((run / "cells").glob("*.json"))[0]
    renamed = run / "cells" / ("0" * 20 + ".json")
    first.rename(renamed)
    assert main(["compare", str(run), str(run)]) == 2
    line = _error(capsys)
    assert (f"cell file {renamed} holds the record of cell {first.stem}, not {renamed.stem}: "
            f"it was renamed or copied from another run; {FOREIGN}") in line
    # The id inside edited to match the name: the id is not its cell's.
    data = json.loads(renamed.read_text())
    data["identity"]["cell_id"] = renamed.stem
    renamed.write_text(json.dumps(data))
    assert main(["summary", str(run)]) == 2
    line = _error(capsys)
    assert f"its cell_id {renamed.stem} is not the id of the cell it ran ({first.stem})" in line


def test_cells_read_again_are_validated_again_once_edited(tmp_path) -> None:
    """A report reads a run's cells several times and validates each content once: the same
    records come back every time, and a file edited in place (same size, same inode) after a
    read is validated anew and refused."""
    from harness.errors import SchemaError

    run = _make_run(tmp_path, "run")
    first, again = read_cells(run), read_cells(run)
    assert [r.to_json() for r in first] == [r.to_json() for r in again]
    path = sorted((run / "cells").glob("*.json"))[0]
    from harness.records import store

    mine = store._validated(path)  # each read is a copy of its own: changing it changes no other
    mine["identity"]["cell_id"] = "changed"
    assert store._validated(path)["identity"]["cell_id"] == path.stem
    text = path.read_text()
    bad = text.replace('"schema_version": "2"', '"schema_version": "X"', 1)
    assert bad != text and len(bad) == len(text)
    with open(path, "r+") as f:  # in place: the same file, the same size
        f.write(bad)
    with pytest.raises(SchemaError, match="schema version X"):
        read_cells(run)


# Item 8: records.csv is rebuilt from the cells.
def test_a_hand_edited_records_csv_is_rebuilt_from_the_cells(tmp_path, capsys) -> None:
    run = _make_run(tmp_path, "run")
    truth = load_run(run).to_csv(index=False)
    assert not (run / "records.csv").exists()
    for argv in (["summary", str(run)], ["report", str(run)], ["figures", str(run)]):
        (run / "records.csv").write_text(truth.replace("0.11", "0.01"))  # a "better" swd
        assert main(argv) == 0
        assert (run / "records.csv").read_text() == truth
        assert f"{run / 'records.csv'} was missing or differed from the run's cells: " \
               "rebuilt" in capsys.readouterr().err
    mtime = (run / "records.csv").stat().st_mtime_ns
    assert main(["summary", str(run)]) == 0  # up to date: not rewritten
    assert (run / "records.csv").stat().st_mtime_ns == mtime
    assert "rebuilt" not in capsys.readouterr().err


def test_a_run_of_an_older_schema_version_is_not_rewritten(tmp_path, capsys) -> None:
    run = _make_run(tmp_path, "old", version_1=True)
    (run / "records.csv").write_text("as version 1 wrote it\n")
    assert main(["summary", str(run)]) == 0
    assert (run / "records.csv").read_text() == "as version 1 wrote it\n"


# Item 5: unfinished and failed runs say so.
def _failed(tmp_path: Path) -> Path:
    return _make_run(tmp_path, "failed", status="failed", error="RuntimeError: boom",
                     cells={"total": 10, "reused": 0, "run": 6})


def test_summary_of_a_failed_run_says_so_first(tmp_path, capsys) -> None:
    run = _failed(tmp_path)
    capsys.readouterr()
    assert main(["summary", str(run)]) == 0
    out, err = capsys.readouterr()
    line = (f"Unfinished run {run}: it failed: RuntimeError: boom; 6 of 10 cells recorded. "
            "What follows covers only the recorded cells; the same command resumes the run.")
    assert out.splitlines()[0] == f"**{line}**"
    assert f"wsfm-bench: warning: {line}" in err.splitlines()
    assert main(["summary", str(run), "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert rows and all(r["run"] == {"status": "failed", "complete": False,
                                     "cells_recorded": 6, "cells_total": 10,
                                     "error": "RuntimeError: boom", "running": None}
                        for r in rows)
    assert f"wsfm-bench: warning: {line}" in err.splitlines()


def test_summary_of_a_complete_run_says_nothing_of_it(tmp_path, capsys) -> None:
    run = _make_run(tmp_path, "done", status="complete", finished="2026-01-01T00:10:00",
                    cells={"total": 6, "reused": 0, "run": 6})
    assert main(["summary", str(run), "--json"]) == 0
    out, err = capsys.readouterr()
    assert all(r["run"]["complete"] and r["run"]["cells_recorded"] == 6 for r in json.loads(out))
    assert "Unfinished" not in err


def test_figures_of_a_failed_run_say_so(tmp_path, capsys) -> None:
    run = _failed(tmp_path)
    assert main(["figures", str(run)]) == 0
    index = (run / "figures" / "index.md").read_text().splitlines()
    assert index[2] == (f"**Unfinished run {run}: it failed: RuntimeError: boom; 6 of 10 cells "
                        "recorded. What follows covers only the recorded cells; the same "
                        "command resumes the run.**")
    assert "wsfm-bench: warning: Unfinished run" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["figures", "summary", "report"])
def test_a_run_without_cells_is_refused(tmp_path, capsys, command: str) -> None:
    run = _make_run(tmp_path, "empty", status="running")
    shutil.rmtree(run / "cells")
    assert main([command, str(run)]) == 2
    assert _error(capsys).endswith(f"{run} has no finished cells (status running): nothing to "
                                   + {"figures": "draw figures or tables of",
                                      "summary": "summarise", "report": "report"}[command]
                                   + "; run (or resume) its suite first")
    assert not (run / "figures").exists() and not (run / "report").exists()


# Item 8: corrupt sample files are named.
def _with_samples(run: Path) -> None:
    rng = np.random.default_rng(0)
    for record in read_cells(run):
        path = samples_path(run, record.cell_id)
        path.parent.mkdir(exist_ok=True)
        np.save(path, rng.normal(size=(50, 2)).astype(np.float32))
    np.save(run / "samples" / "reference-two-moons.npy", rng.normal(size=(50, 2)))


def test_corrupt_sample_files_are_named_with_their_fix(tmp_path) -> None:
    run = _make_run(tmp_path, "run")
    _with_samples(run)
    assert corrupt_samples(run) == []
    cells = sorted(read_cells(run), key=lambda r: r.cell_id)
    cut = samples_path(run, cells[0].cell_id)
    cut.write_bytes(cut.read_bytes()[:-7])  # truncated
    samples_path(run, cells[1].cell_id).write_bytes(b"not an array at all")
    np.save(samples_path(run, cells[2].cell_id), np.array([{"a": 1}]), allow_pickle=True)
    (run / "samples" / "reference-two-moons.npy").write_bytes(b"\x93NUMPY garbage")
    lines = corrupt_samples(run)
    assert len(lines) == 4
    assert lines[0] == (f"sample file samples/{cells[0].cell_id}.npy is corrupt (521 bytes "
                        f"where its header says 528): delete it and cells/{cells[0].cell_id}"
                        ".json, then rerun the run's command: it redoes that cell")
    assert "holds Python objects" in lines[2]
    assert lines[3].startswith("sample file samples/reference-two-moons.npy is corrupt (")
    assert lines[3].endswith("delete it and rerun the run's command: the run writes it again")
    main(["report", str(run)])
    md = (run / "report" / "report.md").read_text()
    assert "## Corrupt sample files" in md and all(f"- {line}" in md for line in lines)


# Item 3: the report and figures are replaced whole.
def _referenced(report: Path) -> list[str]:
    return re.findall(r"\]\((figures/[^)]+)\)", (report / "report.md").read_text())


def test_a_report_failing_part_way_leaves_the_old_one_whole(tmp_path, monkeypatch) -> None:
    from harness.report import document

    run = _make_run(tmp_path, "run")
    _with_samples(run)
    document.write_report(run)
    old = _files(run / "report")
    assert _referenced(run / "report") and all(
        (run / "report" / p).is_file() for p in _referenced(run / "report"))

    def boom(*args, **kwargs):  # after the headline and task figures were drawn
        raise RuntimeError("disk full")

    monkeypatch.setattr(document, "all_methods_section", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        document.write_report(run)
    assert _files(run / "report") == old
    assert [p.name for p in run.iterdir() if p.name.startswith(".report")] == []


KILLED_MID_WRITE = """
import sys, time
from pathlib import Path
from harness.report import document

def stall(*args, **kwargs):
    Path(sys.argv[2]).write_text("figures drawn")
    time.sleep(600)

document.all_methods_section = stall
document.write_report(sys.argv[1])
"""


def test_a_report_killed_mid_write_leaves_the_old_one_whole(tmp_path) -> None:
    from harness.report.document import write_report

    run = _make_run(tmp_path, "run")
    _with_samples(run)
    write_report(run)
    old = _files(run / "report")
    flag = tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(run), str(flag)],
                            cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "writer never started"
            time.sleep(0.1)
        [staged] = [p for p in run.iterdir() if p.name.startswith(f".report.{proc.pid}.")]
        assert list((staged / "figures").glob("*.png"))  # new figures were being drawn
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _files(run / "report") == old  # the old report, whole
    assert all((run / "report" / p).is_file() for p in _referenced(run / "report"))
    write_report(run)  # the next writer sweeps the dead one's folder
    assert not staged.exists() and (run / "report" / "report.md").is_file()
    assert all((run / "report" / p).is_file() for p in _referenced(run / "report"))


def test_figures_failing_part_way_leave_the_old_ones_whole(tmp_path, monkeypatch) -> None:
    from harness.report import publish

    run = _make_run(tmp_path, "run")
    written = publish.write_figures(run, formats=["png"])
    assert all(p.is_file() and p.parent == run / "figures" for p in written)
    old = _files(run / "figures")
    calls = []

    def boom(*args, **kwargs):  # the quality and speed-up figures are drawn by then
        calls.append(1)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(publish, "sweep_figure", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        publish.write_figures(run, formats=["png"])
    assert calls and _files(run / "figures") == old
    assert [p.name for p in run.iterdir() if p.name.startswith(".figures")] == []


def test_figures_refuse_a_folder_they_did_not_write(tmp_path, capsys) -> None:
    run = _make_run(tmp_path, "run")
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "draft.tex").write_text("my paper")
    assert main(["figures", str(run), "--out", str(mine)]) == 2
    assert "holds files `wsfm-bench figures` did not write" in _error(capsys)
    assert _files(mine) == {"draft.tex": b"my paper"}
    assert main(["figures", str(run), "--out", str(tmp_path / "new"), "--formats", "png"]) == 0
    assert main(["figures", str(run), "--out", str(tmp_path / "new"), "--formats", "png"]) == 0


def test_swap_without_an_exchange_keeps_a_whole_folder(tmp_path, monkeypatch) -> None:
    """Where the system cannot swap two folders in one step, two renames; a writer killed
    between them is repaired by the next one."""
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.md").write_text("old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    with atomic.staged_dir(target) as staged:
        (staged / "new.md").write_text("new")
    assert _files(target) == {"new.md": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    # A dead writer's half swap: the old folder aside, the target gone.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    target.rename(tmp_path / f".report.{dead}.x.old.tmp")
    with atomic.staged_dir(target) as staged:
        assert _files(target) == {"new.md": b"new"}  # put back before anything else
        (staged / "newer.md").write_text("newer")
    assert _files(target) == {"newer.md": b"newer"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
