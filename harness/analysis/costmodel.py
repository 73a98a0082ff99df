"""A cost model of sampling time, fitted from a run's own measurements.

    predicted time = T_d + NFE * c + f

T_d is the cell's measured draft time (median of its timed repeats: drawing the start point,
the draft or the noise), c the seconds per network call and f a fixed cost per batch (solver
set-up, grid, result assembly). c and f are fitted by least squares per (task, method,
variant, device) over that group's cells: every budget and seed gives one point
(NFE = nfe_measured, y = time_s - draft_time_s), and a warm start's full-grid reference
integration gives one more (NFE = ref_nfe, y = ref_time_s: same network, same batch, no
draft). With a single distinct NFE, c and f cannot be told apart: f is taken as 0 and c as
the median of y / NFE; with no network calls (draft only) c is undefined and f is the median
of y. R^2 is of the fitted part y, not of the total time (T_d is measured, not fitted).

The bound check (harness.run.measure.bound_check; docs/method.md, "The bound check") uses
per-cell figures, not this fit: c = ref_time_s / ref_nfe (the reference full-grid run of the
same cell, fixed cost folded into c) and T_d = draft_time_s. The records keep both as
``bound_time_per_call_s`` and ``bound_draft_time_s``, and the report shows them next to the
fit, so a reader can see how far the bound's c is from the fitted one.

``predict`` and ``max_steps`` are what a wall-clock budget needs: the time of a plan with K
steps, and the most steps that fit in a time budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

GROUP = ["task", "method", "variant", "device"]
FIT_COLUMNS = [*GROUP, "points", "cells", "nfe_min", "nfe_max", "time_per_call_s", "fixed_s",
               "r2", "fit", "draft_time_s", "bound_time_per_call_s"]


def predict(k_steps: float | np.ndarray, time_per_call: float, evals_per_step: int = 1,
            draft_s: float = 0.0, fixed_s: float = 0.0) -> float | np.ndarray:
    """Predicted seconds of a plan taking ``k_steps`` solver steps of ``evals_per_step``
    network calls each: draft_s + fixed_s + k_steps * evals_per_step * time_per_call."""
    return draft_s + fixed_s + k_steps * evals_per_step * time_per_call


def max_steps(budget_s: float, time_per_call: float, evals_per_step: int = 1,
              draft_s: float = 0.0, fixed_s: float = 0.0) -> int:
    """The most solver steps K whose predicted time fits in ``budget_s`` seconds (0 when not
    even the draft and fixed cost fit)."""
    if budget_s <= 0 or not all(map(math.isfinite, (budget_s, draft_s, fixed_s))):
        return 0
    if time_per_call <= 0 or not math.isfinite(time_per_call):
        raise ValueError(f"time_per_call must be a positive number, got {time_per_call!r}")
    room = budget_s - draft_s - fixed_s
    if room < 0:
        return 0
    k = math.floor(room / (evals_per_step * time_per_call) * (1 + 1e-12))
    while k > 0 and predict(k, time_per_call, evals_per_step, draft_s, fixed_s) > budget_s:
        k -= 1  # guard against rounding up across the boundary
    return k


def fit_line(nfe: Sequence[float], y: Sequence[float]) -> tuple[float, float, float, str]:
    """Least-squares y = c * nfe + f; returns (c, f, r2, how). See the module docstring for
    the degenerate cases ("ratio": one distinct NFE; "constant": no calls)."""
    x, y = np.asarray(nfe, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) == 0:
        return math.nan, math.nan, math.nan, "none"
    if not np.any(x > 0):
        return math.nan, float(np.median(y)), math.nan, "constant"
    if len(np.unique(x)) < 2:
        pos = x > 0
        c, f, how = float(np.median(y[pos] / x[pos])), 0.0, "ratio"
    else:
        design = np.column_stack([x, np.ones_like(x)])
        (c, f), *_ = np.linalg.lstsq(design, y, rcond=None)
        c, f, how = float(c), float(f), "lsq"
    residual = y - (c * x + f)
    total = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum(residual ** 2))
    if total > 0:
        r2 = 1.0 - ss_res / total
    else:
        r2 = 1.0 if ss_res <= 1e-24 else math.nan
    return c, f, r2, how


def _cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (a tidy frame has one per metric), numeric columns as floats."""
    cells = df.drop_duplicates("cell_id") if "cell_id" in df else df
    cells = cells.copy()
    for col in ("time_s", "draft_time_s", "nfe_measured", "ref_time_s", "ref_nfe", "n_steps"):
        cells[col] = pd.to_numeric(cells[col], errors="coerce") if col in cells else math.nan
    for col in GROUP:
        if col not in cells:
            cells[col] = None
    cells[GROUP] = cells[GROUP].astype(object).where(cells[GROUP].notna(), "")
    return cells


def fit_cost_model(df: pd.DataFrame) -> pd.DataFrame:
    """Fit c (time_per_call_s) and f (fixed_s) per (task, method, variant, device) from a
    run's records (a tidy frame from harness.records.store.load_run, or one row per cell).

    Columns: FIT_COLUMNS: points and cells used, the NFE range, c, f, R^2, how it was fitted,
    the median measured draft time, and the median c the bound check used (NaN for groups
    without a reference run).
    """
    cells = _cells(df)
    rows = []
    for key, group in cells.groupby(GROUP, sort=True, dropna=False):
        nfe = list(group["nfe_measured"])
        y = list(group["time_s"] - group["draft_time_s"])
        ref = group[group["ref_nfe"].fillna(0) > 0]
        nfe += list(ref["ref_nfe"])
        y += list(ref["ref_time_s"])
        c, f, r2, how = fit_line(nfe, y)
        bound_c = (ref["ref_time_s"] / ref["ref_nfe"]).median() if len(ref) else math.nan
        points = [n for n, v in zip(nfe, y, strict=True)
                  if math.isfinite(n) and math.isfinite(v)]
        rows.append([*key, len(points), len(group), min(points, default=math.nan),
                     max(points, default=math.nan), c, f, r2, how,
                     float(group["draft_time_s"].median()), float(bound_c)])
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def predict_cells(df: pd.DataFrame, fits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each cell's predicted time from its group's fit and its own measured draft time:
    the cell's columns plus fit_time_per_call_s, fit_fixed_s, predicted_time_s and rel_error
    ((predicted - measured) / measured)."""
    cells = _cells(df)
    fits = fit_cost_model(cells) if fits is None else fits
    fitted = fits[[*GROUP, "time_per_call_s", "fixed_s"]].rename(
        columns={"time_per_call_s": "fit_time_per_call_s", "fixed_s": "fit_fixed_s"})
    merged = cells.drop(columns=["fit_time_per_call_s", "fit_fixed_s"], errors="ignore") \
        .merge(fitted, on=GROUP, how="left")
    calls = merged["nfe_measured"] * merged["fit_time_per_call_s"]
    calls = calls.where(merged["nfe_measured"] != 0, 0.0)  # no calls: c may be undefined
    merged["predicted_time_s"] = merged["draft_time_s"] + merged["fit_fixed_s"] + calls
    merged["rel_error"] = (merged["predicted_time_s"] - merged["time_s"]) / merged["time_s"]
    return merged
