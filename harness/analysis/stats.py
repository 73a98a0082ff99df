"""Statistics over seeds and the quality-matched speed-up of METHOD.md (pure pandas/numpy/scipy).

Every function takes the tidy frame of ``harness.records.store.load_run`` (one row per cell and
metric) and tolerates missing values: None/NaN cells are skipped, a single seed gives a
zero-width interval, and a task without warm-start cells gives a row that says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.records.store import COLUMNS, read_cells

WARM = ("ws-fm", "warm-start")  # the warm-start methods (t0 > 0)
GROUP = ["task", "method", "variant", "n_steps", "metric"]
# The options that define one warm-start setting (its seeds are the replicates).
WS_GROUP = ["draft", "t0", "start", "init", "solver", "n_steps"]
NUMERIC = [
    "t0", "n_steps", "k_steps", "nfe_budget", "nfe_expected", "nfe_measured", "seed", "value",
    "time_s", "time_spread_s", "draft_time_s", "integrate_time_s", "time_per_call_s",
    "ref_time_s", "ref_nfe", "nfe_speedup", "nfe_speedup_theory", "ideal_speedup",
    "wall_speedup", "wall_bound", "timing_noise", "n_samples", "n_eval",
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
    time_s and higher_is_better; family, draft, t0, start, init, solver and the mean k_steps
    ride along for labelling.
    """
    extra = ["family", "draft", "t0", "start", "init", "solver"]
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


def _settings(frame: pd.DataFrame, keys: Sequence[str], level: float) -> pd.DataFrame:
    """One row per setting: quality mean/CI over seeds, mean NFE and K, its variant label."""
    rows = []
    for key, g in frame.groupby(list(keys), dropna=False, sort=False):
        mean, low, high = mean_ci(g["value"], level)
        rows.append({**dict(zip(keys, key, strict=True)), "variant": first_valid(g["variant"]),
                     "mean": mean, "ci_low": low, "ci_high": high,
                     "n_seeds": int(np.isfinite(g["value"]).sum()),
                     "nfe": g["nfe_measured"].mean(), "k": g["k_steps"].mean()})
    out = pd.DataFrame(rows)
    return out[np.isfinite(out["mean"])] if len(out) else out


def quality_matched_speedup(
    df: pd.DataFrame,
    task: str,
    metric: str,
    draft: str,
    reference_solver: str = "euler",
    method: str = "ws-fm",
    level: float = 0.95,
) -> dict[str, Any]:
    """The largest NFE ratio at which ``method`` with ``draft`` is not worse than full FM's best.

    The full model (``full-fm`` with ``reference_solver``) is summarised per budget N; its best
    mean quality over budgets and that mean's interval define the target. The reference NFE is
    the SMALLEST full-FM measured NFE whose mean lies within that interval: the full model's
    cheapest budget at its best quality. Comparing against a larger, over-spent N (one whose
    quality is no better within the noise) would inflate the speed-up with calls the full
    model does not need.

    A warm-start setting (same draft, t0, start, init, solver and N; its seeds pooled)
    matches when its mean is not worse than the best's interval bound: mean <= ci_high for
    lower-is-better metrics, mean >= ci_low for higher-is-better ones. The speed-up is
    reference_nfe / the setting's measured NFE, the largest over matching settings; when none
    matches it is NaN and ``reason`` says why.
    """
    d = coerce_numeric(df)
    d = d[(d["task"] == task) & (d["metric"] == metric)]
    hib = higher_is_better(d)
    out: dict[str, Any] = {
        "task": task, "method": method, "draft": draft, "metric": metric,
        "higher_is_better": hib, "reference_solver": reference_solver,
        "reference_n_steps": math.nan, "reference_nfe": math.nan, "full_best_mean": math.nan,
        "full_best_ci_low": math.nan, "full_best_ci_high": math.nan, "full_best_n_steps": math.nan,
        "best_variant": None, "variant": None, "t0": math.nan, "n_steps": math.nan,
        "k_steps": math.nan, "nfe_measured": math.nan, "mean": math.nan, "ci_low": math.nan,
        "ci_high": math.nan, "n_seeds": 0, "speedup": math.nan, "n_matching": 0,
        "n_settings": 0, "reason": "",
    }
    full = d[(d["method"] == "full-fm") & (d["solver"] == reference_solver)]
    full = _settings(full, ["n_steps"], level) if len(full) else full
    if full.empty:
        out["reason"] = f"no full-fm cells with solver={reference_solver} measure {metric}"
        return out
    best = full.loc[full["mean"].idxmax() if hib else full["mean"].idxmin()]
    tol = 1e-12 * max(1.0, abs(best["mean"]))
    within = full[(full["mean"] >= best["ci_low"] - tol) & (full["mean"] <= best["ci_high"] + tol)]
    within = within[np.isfinite(within["nfe"]) & (within["nfe"] > 0)]
    out.update(full_best_mean=best["mean"], full_best_ci_low=best["ci_low"],
               full_best_ci_high=best["ci_high"], full_best_n_steps=best["n_steps"])
    if within.empty:
        out["reason"] = "the full model's best budget has no measured NFE"
        return out
    ref = within.loc[within["nfe"].idxmin()]
    out.update(reference_nfe=ref["nfe"], reference_n_steps=ref["n_steps"])

    ws = d[(d["method"] == method) & (d["draft"] == draft)]
    ws = _settings(ws, WS_GROUP, level) if len(ws) else ws
    if ws.empty:
        out["reason"] = f"no {method} cells with the {draft} draft measure {metric}"
        return out
    ws = ws[np.isfinite(ws["nfe"]) & (ws["nfe"] > 0)].copy()
    out["n_settings"] = len(ws)
    bound = best["ci_low"] if hib else best["ci_high"]
    ws["speedup"] = ref["nfe"] / ws["nfe"]
    ok = ws[ws["mean"] >= bound - tol] if hib else ws[ws["mean"] <= bound + tol]
    out["n_matching"] = len(ok)
    if ok.empty:
        if ws.empty:
            out["reason"] = f"no {method} cell with the {draft} draft has a measured NFE"
            return out
        near = ws.loc[ws["mean"].idxmax() if hib else ws["mean"].idxmin()]
        side = "below" if hib else "above"
        out["reason"] = (
            f"no {method} setting with the {draft} draft reaches the full model's best quality: "
            f"its best mean {near['mean']:.4g} ({near['variant']}, N={near['n_steps']:g}) is "
            f"{side} the bound {bound:.4g}"
        )
        return out
    # Largest speed-up; among ties the better quality.
    ok = ok.assign(_q=-ok["mean"] if hib else ok["mean"]).sort_values(["speedup", "_q"],
                                                                       ascending=[False, True])
    win = ok.iloc[0]
    out.update(
        best_variant=f"{win['variant']}, N={win['n_steps']:g}", variant=win["variant"],
        t0=win["t0"], n_steps=win["n_steps"], k_steps=win["k"], nfe_measured=win["nfe"],
        mean=win["mean"], ci_low=win["ci_low"], ci_high=win["ci_high"],
        n_seeds=int(win["n_seeds"]), speedup=float(win["speedup"]),
    )
    return out


def primary_metric(df: pd.DataFrame, task: str, primary_metrics: Mapping[str, str]) -> str | None:
    """The task's primary metric from the manifest, else swd if measured, else the first one."""
    measured = sorted(df.loc[df["task"] == task, "metric"].dropna().unique())
    chosen = (primary_metrics or {}).get(task)
    if chosen in measured:
        return chosen
    if "swd" in measured:
        return "swd"
    return measured[0] if measured else chosen


def quality_matched_table(
    df: pd.DataFrame,
    primary_metrics: Mapping[str, str],
    reference_solver: str = "euler",
    methods: Sequence[str] = WARM,
) -> pd.DataFrame:
    """quality_matched_speedup for every task (its primary metric), method and draft."""
    rows = []
    for task in sorted(df["task"].dropna().unique()):
        metric = primary_metric(df, task, primary_metrics)
        if metric is None:
            continue
        for method in methods:
            sel = df[(df["task"] == task) & (df["method"] == method)]
            for draft in sorted(sel["draft"].dropna().unique()):
                rows.append(quality_matched_speedup(df, task, metric, draft,
                                                    reference_solver, method))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- issue 5 part 4: evidence
# Replicates below this count get a Student-t interval: the bootstrap of a mean over 3 seeds
# can only resample 10 distinct multisets and covers the true mean only ~70-75% of the time at a
# nominal 95% (tests/test_stats_bootstrap.py measures it); from 10 replicates on the BCa
# bootstrap covers close to nominal, also for skewed values.


def cell_frame(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished cell of a run (also those without metrics), numeric columns as
    floats: the record columns of ``harness.records.store.load_run`` without the metric ones."""
    keep = [c for c in COLUMNS if c not in ("metric", "value", "higher_is_better")]
    rows = [{k: r.get(k) for k in keep} for r in read_cells(run_dir)]
    return coerce_numeric(pd.DataFrame(rows, columns=keep))
