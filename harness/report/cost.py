"""The report's cost-model section: the fitted seconds per network call and fixed cost per
(task, method variant, device), and each cell group's predicted vs measured time."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.analysis.costmodel import GROUP, fit_cost_model, predict_cells
from harness.report.format import fmt, fmt_int, md_table

MS = 1000.0


def _ms(value: float) -> str:
    if isinstance(value, float | int | np.floating):
        # Below a nanosecond is rounding residue of the fit, not a time.
        value = 0.0 if abs(value) < 1e-9 else value * MS
    return fmt(value)


def cost_model_section(cells: pd.DataFrame) -> str:
    """Markdown for the cost model, from one row per cell (the report's cell frame)."""
    head = "## Cost model\n\n"
    needed = {"time_s", "draft_time_s", "nfe_measured", "cell_id", *GROUP}
    if cells.empty or not needed <= set(cells.columns):
        return head + "_No timed cells in this run._"
    fits = fit_cost_model(cells)
    pred = predict_cells(cells, fits)
    if fits.empty:
        return head + "_No timed cells in this run._"

    intro = (
        "Predicted time = T_d + NFE × c + f: T_d is each cell's measured draft time (median "
        "of its timed repeats), c the seconds per network call and f a fixed cost per batch, "
        "both fitted by least squares per task, method variant and device over its cells "
        "(every budget and seed; a warm start's full-grid reference run adds a point with no "
        "draft). R² is of the fitted part (time − T_d). The bound check does not use this "
        "fit: its S_wall takes each cell's own c = reference time / reference NFE (fixed "
        "cost folded in) and T_d; the median of that c is shown as *c (bound)*. A fixed cost "
        "f > 0 makes that S_wall optimistic: the warm start pays all of f, its c only K/N of "
        "it. Times in ms."
    )
    rows = []
    for r in fits.itertuples():
        rows.append([r.task, r.method, r.variant, r.device, fmt_int(r.points),
                     f"{fmt_int(r.nfe_min)}–{fmt_int(r.nfe_max)}", _ms(r.time_per_call_s),
                     _ms(r.fixed_s), fmt(r.r2, 4), r.fit, _ms(r.bound_time_per_call_s),
                     _ms(r.draft_time_s)])
    fit_table = md_table(["task", "method", "variant", "device", "points", "NFE",
                          "c (fit)", "f (fit)", "R²", "fit", "c (bound)", "T_d"], rows)

    grouped = (pred.groupby([*GROUP, "n_steps"], sort=True, dropna=False)
               .agg(nfe=("nfe_measured", "median"), draft=("draft_time_s", "median"),
                    measured=("time_s", "median"), predicted=("predicted_time_s", "median"),
                    rel_error=("rel_error", "median"), seeds=("cell_id", "count"))
               .reset_index())
    rows = [[g.task, g.method, g.variant, g.device, fmt_int(g.n_steps), fmt_int(g.nfe),
             fmt_int(g.seeds), _ms(g.draft), _ms(g.measured), _ms(g.predicted),
             "–" if not math.isfinite(g.rel_error) else f"{round(100 * g.rel_error, 1) + 0:+.1f}%"]
            for g in grouped.itertuples()]
    errors = grouped["rel_error"].abs().replace([np.inf, -np.inf], np.nan).dropna()
    summary = ("Relative error of the prediction over cell groups: median "
               f"{100 * errors.median():.1f}%, largest {100 * errors.max():.1f}%."
               if len(errors) else "No cell group has a prediction.")
    pred_table = md_table(["task", "method", "variant", "device", "N", "NFE", "seeds", "T_d",
                           "measured", "predicted", "error"], rows)
    return (head + intro + "\n\n" + fit_table + "\n\n### Predicted vs measured time per cell "
            "group\n\nMedians over seeds; error = (predicted − measured) / measured. "
            + summary + "\n\n" + pred_table)
