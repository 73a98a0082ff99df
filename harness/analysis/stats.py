"""Statistics over seeds (pure pandas/numpy/scipy): means with Student-t intervals, per-group
summaries, metric directions, the primary metric, a run's cells as one frame.

Every function takes the tidy frame of ``harness.records.store.load_run`` (one row per cell and
metric) and tolerates missing values: None/NaN cells are skipped, a single seed gives a
zero-width interval (the report prints "one seed: no interval" instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.records.record import COLUMNS, PER_METRIC
from harness.records.store import read_cells

GROUP = ["task", "method", "variant", "n_steps", "metric"]
NUMERIC = [
    "t0", "n_steps", "k_steps", "nfe_budget", "nfe_expected", "nfe_measured", "seed", "value",
    "time_s", "time_spread_s", "draft_time_s", "integrate_time_s", "time_per_call_s",
    "ref_time_s", "ref_nfe", "nfe_speedup", "nfe_speedup_theory", "ideal_speedup",
    "wall_speedup", "wall_bound", "timing_noise", "n_samples", "n_eval", "k_observed",
    "target",
]


def flag(value: Any) -> bool | None:
    """A stored boolean as True/False, or None when it is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def coerce_numeric(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose numeric columns are floats (None -> NaN), so arithmetic never trips."""
    out = df.copy()
    for col in NUMERIC:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out


def mean_ci(values: Iterable[Any], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a Student-t interval over seeds. n=1 gives low = high = mean."""
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    half = float(sps.t.ppf(0.5 + level / 2, x.size - 1)) * sem
    return mean, mean - half, mean + half


def higher_is_better(frame: pd.DataFrame) -> bool:
    """The direction of the metric in ``frame``: the majority of its rows' flags."""
    flags = [f for f in map(flag, frame.get("higher_is_better", [])) if f is not None]
    return bool(flags) and sum(flags) * 2 >= len(flags)


def first_valid(series: pd.Series) -> Any:
    """The first non-missing value of ``series`` (None if there is none)."""
    valid = series.dropna()
    return valid.iloc[0] if len(valid) else None


def summarise(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean and t-interval over seeds per (task, method, variant, n_steps, metric).

    Columns: the group keys, mean, ci_low, ci_high, n_seeds, and the means of nfe_measured,
    time_s and higher_is_better; role, title, draft, t0, start, init, solver and the mean
    k_steps ride along for labelling.
    """
    extra = ["role", "title", "draft", "t0", "start", "init", "solver", "nfe_note"]
    columns = GROUP + ["mean", "ci_low", "ci_high", "n_seeds", "nfe_measured", "time_s",
                       "higher_is_better", "k_steps"] + extra
    if df.empty:
        return pd.DataFrame(columns=columns)
    d = coerce_numeric(df)
    rows = []
    for key, g in d.groupby(GROUP, dropna=False, sort=False):
        mean, low, high = mean_ci(g["value"], level)
        hib = [f for f in map(flag, g["higher_is_better"]) if f is not None]
        rows.append({
            **dict(zip(GROUP, key, strict=True)), "mean": mean, "ci_low": low, "ci_high": high,
            "n_seeds": int(np.isfinite(g["value"]).sum()),
            "nfe_measured": g["nfe_measured"].mean(), "time_s": g["time_s"].mean(),
            "higher_is_better": float(np.mean(hib)) if hib else math.nan,
            "k_steps": g["k_steps"].mean(), **{c: first_valid(g[c]) for c in extra},
        })
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["task", "method", "variant", "n_steps", "metric"],
                           na_position="first", key=_sort_key).reset_index(drop=True)


def _sort_key(col: pd.Series) -> pd.Series:
    return col if col.name == "n_steps" else col.astype(str)


def primary_metric(df: pd.DataFrame, task: str, primary_metrics: Mapping[str, str]) -> str | None:
    """The task's primary metric from the manifest, else swd if measured, else the first one."""
    measured = sorted(df.loc[df["task"] == task, "metric"].dropna().unique())
    chosen = (primary_metrics or {}).get(task)
    if chosen in measured:
        return chosen
    if "swd" in measured:
        return "swd"
    return measured[0] if measured else chosen


def cell_frame(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished cell of a run (also those without metrics), numeric columns as
    floats: the record columns of ``harness.records.store.load_run`` without the metric ones."""
    keep = [c for c in COLUMNS if c not in PER_METRIC]
    return coerce_numeric(pd.DataFrame([r.flat() for r in read_cells(run_dir)], columns=keep))
