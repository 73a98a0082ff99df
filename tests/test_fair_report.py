"""What the report says so that comparisons stay fair (issue 12): the paper's speed-ups beside
the measured ones (the poor-draft case too), the autoregressive baseline's NFE marked as cheap
one-token calls, and per-token judge metrics labelled as not comparable across methods."""

from __future__ import annotations

import pandas as pd

from baselines.autoregressive import NFE_NOTE
from harness.records.store import COLUMNS
from harness.report.headline import paper_table
from harness.report.tables import all_methods_section
from harness.report.text import PER_TOKEN_NOTE, comparison_table


def _row(task: str, draft: str, verdict: str, **extra) -> dict:
    return {"task": task, "draft": draft, "method": "ws-fm", "title": "WS-FM", "t0": 0.3,
            "verdict": verdict,
            "speedup_nfe": 1.43, "speedup_wall": 1.3, **extra}


def test_the_paper_s_poor_draft_figure_stands_beside_the_measured_one() -> None:
    table = paper_table([_row("two-moons", "poor", "non-inferior", speedup_backed=True),
                         _row("two-moons", "good", "inferior"), _row("digits", "poor", "x")])
    lines = [line for line in table.splitlines() if line.startswith("| two-moons")]
    assert any("poor" in line and "1.43x NFE, 1.3x wall-clock" in line
               and "about 1.5x" in line for line in lines)
    assert any("good" in line and "none backed (inferior)" in line and "about 10x" in line
               for line in lines)
    assert "digits" not in table  # no paper figure for it
    assert paper_table([_row("digits", "poor", "x")]) == ""
    # Non-inferior, but its cells failed the bound check: the headline claims no speed-up,
    # and neither does the comparison with the paper.
    unbacked = paper_table([_row("two-moons", "poor", "non-inferior", speedup_backed=False)])
    assert "1.43x" not in unbacked and "its speed-up is not claimed" in unbacked


def _frame() -> pd.DataFrame:
    rows = []
    for method, role, title, note, nfe, t in (
            ("ar", "baseline", "AR", NFE_NOTE, 64, 0.05),
            ("full-fm", "reference", "Full FM", None, 20, 0.5)):
        for seed in (0, 1):
            for metric in ("judge-nll-char", "judge-nll"):
                row = dict.fromkeys(COLUMNS)
                row.update(task="text", method=method, role=role, title=title, nfe_note=note,
                           variant="v", n_steps=20,
                           nfe_measured=nfe, seed=seed, metric=metric, value=3.0 + seed,
                           higher_is_better=False, time_s=t, cell_id=f"{method}{seed}",
                           wall_speedup=None, wall_bound=None)
                rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_autoregressive_nfe_is_marked_and_explained_in_every_table() -> None:
    df = _frame()
    table = all_methods_section(df, {"text": "judge-nll-char"})
    ar_line = next(line for line in table.splitlines() if line.startswith("| ar "))
    note = f"† AR: {NFE_NOTE}."
    assert "64 †" in ar_line and note in table
    cells = df.drop_duplicates("cell_id")
    text = comparison_table(df, cells)
    assert "64 †" in text and note in text and PER_TOKEN_NOTE in text
