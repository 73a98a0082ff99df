"""What a reader of the report sees first (issue 20, items 9 and 13): the verdicts' one-line
legend above the headline table and the rules below it; a flagged row claims no speed-up and
says why; a metric spanning more than ten times on a log axis; a draft and the warm starts from
it in one hue."""

from __future__ import annotations

import colorsys
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from harness.analysis.verdicts import _speed_up_claim  # noqa: E402
from harness.report import figures  # noqa: E402
from harness.report.colours import draft_hues, log_if_wide, palette  # noqa: E402
from harness.report.headline import LEGEND, headline_section, headline_table  # noqa: E402
from harness.report.loading import load_for_report  # noqa: E402
from harness.roles import Role  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "smoke-2026-11"


def test_the_legend_stands_above_the_headline_table_and_the_rules_below(
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    loaded = load_for_report(run, "report")
    md, rows = headline_section(run, loaded.df, loaded.manifest, tmp_path / "out")
    assert rows
    legend, table = md.index(LEGEND), md.index("| task | draft | method |")
    rules = md.index("Is WS-FM as good as full flow matching")
    assert legend < table < rules
    assert "\n" not in LEGEND and LEGEND.startswith("Verdicts: **non-inferior**")
    for verdict in ("non-inferior", "inferior", "draft-alone-suffices", "inconclusive"):
        assert f"**{verdict}**" in LEGEND


def _row(**extra) -> dict:
    row = {"task": "two-moons", "draft": "good", "control": None, "title": "WS-FM",
           "variant": "good t0=0.8", "n_budget": 10, "k_steps": 2, "metric": "swd",
           "margin": 0.01, "mean": 0.036, "reference_mean": 0.041, "draft_mean": 0.07,
           "draft_position": None, "floor": 0.032, "target_quality": 0.035,
           "versus_draft": None, "reference": {"title": "Full FM", "variant": "heun",
                                               "n_budget": 5},
           "reference_censored": False, "speedup_nfe": 5.0, "speedup_wall": 4.6,
           "interval": (4.1, 5.2), "verdict": "non-inferior", "detectable_margin": 0.004,
           "reason": "", "flagged": 0}
    row.update(extra)
    return row


def test_a_non_inferior_row_whose_cells_were_flagged_claims_no_speed_up() -> None:
    clean, flagged = _row(), _row(flagged=2)
    for row in (clean, flagged):
        _speed_up_claim(row)
    assert clean["speedup_backed"] and clean["reason"] == ""
    assert not flagged["speedup_backed"]
    assert flagged["reason"] == ("2 of its cells failed the bound or NFE check: no speed-up is "
                                 "claimed from them")
    table = headline_table([clean, flagged]).splitlines()
    assert "| 5x | 4.6x [4.1x, 5.2x] | **non-inferior** |" in table[2]
    assert "| – | – | **non-inferior** |" in table[3] and "failed the bound" in table[3]


@pytest.mark.parametrize("values, log", [([2.7, 43.0], True), ([1.0, 5.0, float("nan")], False),
                                         ([0.0, 50.0], False), ([0.2, None, 3.0], True)])
def test_a_metric_spanning_more_than_ten_times_is_drawn_on_a_log_axis(values, log) -> None:
    fig, ax = plt.subplots()
    assert log_if_wide(ax, values) is log
    assert ax.get_yscale() == ("log" if log else "linear")
    plt.close(fig)


def test_the_quality_figure_puts_digits_fid_on_a_log_axis(tmp_path: Path, monkeypatch) -> None:
    scales = []
    monkeypatch.setattr(figures.plt, "close", lambda fig: scales.append(
        fig.axes[0].get_yscale()))
    frame = pd.DataFrame([
        {"method": m, "variant": v, "role": role, "draft": d, "value": value, "time_s": t,
         "n_steps": n, "seed": s}
        for m, v, role, d, value, t, n in (
            ("full-fm", "euler", Role.REFERENCE, None, 43.0, 0.01, 1),
            ("full-fm", "euler", Role.REFERENCE, None, 2.7, 0.2, 20),
            ("draft-only", "good", Role.FLOOR, "good", 6.4, 0.0, 0))
        for s in (0, 1)])
    assert figures.quality_vs_cost(frame, "time_s", tmp_path / "q.png", "digits", "s",
                                   "fid") is not None
    assert scales == ["log"]


def _hue(rgb) -> float:
    return colorsys.rgb_to_hsv(*rgb)[0]


def test_a_draft_and_its_warm_starts_share_one_hue_and_full_fm_has_its_own() -> None:
    colours = palette([(Role.FLOOR, "good", "good draft"),
                       (Role.WARM_START, "good", "ws-fm good t0=0.8"),
                       (Role.WARM_START, "good", "warm-start good t0=0.8"),
                       (Role.FLOOR, "poor", "poor draft"),
                       (Role.WARM_START, "poor", "ws-fm poor t0=0.5"),
                       (Role.REFERENCE, None, "full-fm euler")])
    hues = draft_hues(["good", "poor"])
    good = [colours[k] for k in ("good draft", "ws-fm good t0=0.8", "warm-start good t0=0.8")]
    poor = [colours[k] for k in ("poor draft", "ws-fm poor t0=0.5")]
    assert len(set(good)) == 3  # shades, so the lines stay apart
    assert all(_hue(c) == pytest.approx(_hue(hues["good"]), abs=1e-6) for c in good)
    assert all(_hue(c) == pytest.approx(_hue(hues["poor"]), abs=1e-6) for c in poor)
    assert _hue(hues["good"]) != pytest.approx(_hue(hues["poor"]), abs=0.02)
    full = _hue(colours["full-fm euler"])
    assert all(full != pytest.approx(_hue(c), abs=0.02) for c in good + poor)
