"""Resampling over seeds: bootstrap intervals (BCa from SMALL_N seeds on, Student-t below),
the paired parity test of a warm start against the full model, and the bootstrap interval of
the quality-matched speed-up (harness.analysis.stats)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.analysis.stats import WS_GROUP, coerce_numeric, higher_is_better, mean_ci

SMALL_N = 10
N_RESAMPLES = 10_000


def _finite(values: Iterable[Any]) -> np.ndarray:
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
    return x[np.isfinite(x)]


def bootstrap_ci(values: Iterable[Any], level: float = 0.95, n_resamples: int = N_RESAMPLES,
                 seed: int = 0, method: str = "bca") -> tuple[float, float, float]:
    """(mean, low, high): a seeded bootstrap interval of the mean, BCa or percentile.

    BCa corrects the percentile interval for the bootstrap distribution's bias (z0) and for
    skew through the jackknife acceleration (a); it reduces to the percentile interval for
    symmetric data. n=1 or constant values give low = high = mean.
    """
    if method not in ("bca", "percentile"):
        raise ValueError(f"method={method!r}: use 'bca' or 'percentile'")
    x = _finite(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1 or np.ptp(x) == 0:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    boot = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    probs = np.array([alpha, 1 - alpha])
    if method == "bca":
        share = ((boot < mean).sum() + 0.5 * (boot == mean).sum()) / n_resamples
        z0 = sps.norm.ppf(np.clip(share, 1 / (n_resamples + 1), n_resamples / (n_resamples + 1)))
        jack = (x.sum() - x) / (x.size - 1)
        dev = jack.mean() - jack
        a = float((dev**3).sum() / (6 * (dev**2).sum() ** 1.5))
        z = sps.norm.ppf(probs)
        probs = sps.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    low, high = np.quantile(boot, probs)
    return mean, float(low), float(high)


def interval(values: Iterable[Any], level: float = 0.95, seed: int = 0) -> tuple[float, float,
                                                                                  float, str]:
    """(mean, low, high, how): BCa bootstrap from SMALL_N replicates on, Student-t below."""
    x = _finite(values)
    if x.size >= SMALL_N:
        return (*bootstrap_ci(x, level, seed=seed), "bootstrap BCa")
    return (*mean_ci(x, level), "Student-t")


def parity_test(ws: Mapping[Any, float], full: Mapping[Any, float], higher_is_better: bool,
                tolerance: float, level: float = 0.95) -> dict[str, Any]:
    """WS-FM vs full FM paired by seed: is WS-FM worse by more than ``tolerance``?

    ``worse`` = WS-FM minus full FM in the metric's worse direction (positive: WS-FM worse).
    Its interval over the paired seeds (``interval``: Student-t below SMALL_N pairs) decides:
    "not worse" when the whole interval lies below the tolerance, "worse" when it lies above
    it, "inconclusive" otherwise or with fewer than 2 pairs. ``p`` is the one-sided paired
    t-test's p-value for H0: worse >= tolerance (small p: evidence of not worse).
    """
    pairs = [(float(ws[s]), float(full[s])) for s in ws if s in full
             and math.isfinite(float(ws[s])) and math.isfinite(float(full[s]))]
    sign = -1.0 if higher_is_better else 1.0
    worse = np.array([sign * (w - f) for w, f in pairs])
    out: dict[str, Any] = {"n_pairs": len(pairs), "tolerance": float(tolerance),
                           "diff": math.nan, "diff_low": math.nan, "diff_high": math.nan,
                           "p": math.nan, "verdict": "inconclusive", "interval": ""}
    if not pairs:
        return out
    mean, low, high, how = interval(worse, level)
    # Report the raw difference WS-FM - full FM (metric units), its interval in that order.
    ends = sorted((sign * low, sign * high))
    out.update(diff=sign * mean, diff_low=ends[0], diff_high=ends[1], interval=how)
    if len(pairs) >= 2:
        sd = float(worse.std(ddof=1))
        if sd > 0:
            t = (mean - tolerance) / (sd / math.sqrt(len(pairs)))
            out["p"] = float(sps.t.cdf(t, len(pairs) - 1))
        else:
            out["p"] = 0.0 if mean < tolerance else 1.0
        out["verdict"] = ("not worse" if high < tolerance else "worse" if low > tolerance
                          else "inconclusive")
    return out


def _seed_matrix(frame: pd.DataFrame, keys: list[str], seeds: list[float]) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
    """Values per setting (rows, grouped by ``keys``) and seed (columns), and each row's NFE."""
    rows, nfe = [], []
    for _, g in frame.groupby(keys, dropna=False, sort=False):
        by_seed = g.groupby("seed")["value"].mean()
        rows.append([by_seed.get(s, math.nan) for s in seeds])
        nfe.append(g["nfe_measured"].mean())
    return np.array(rows, float).reshape(len(rows), len(seeds)), np.array(nfe, float)


def _matched(full: np.ndarray, full_nfe: np.ndarray, ws: np.ndarray, ws_nfe: np.ndarray,
             hib: bool, level: float, idx: np.ndarray) -> np.ndarray:
    """quality_matched_speedup's rule, vectorised over resamples: for each row of seed indices
    ``idx`` (B, n), the largest reference NFE / WS NFE among matching settings, 0 if none.

    Means are resampled; each full-FM budget's interval half-width stays the one of the
    observed seeds (a resample repeating one seed would otherwise have a zero-width interval
    and turn "not worse beyond the interval" into "not worse at all").
    """
    def means(m: np.ndarray) -> np.ndarray:
        x = m[:, idx]
        ok = np.isfinite(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, x, 0.0).sum(-1) / ok.sum(-1)

    half = np.array([(hi - lo) / 2 for _, lo, hi in (mean_ci(row, level) for row in full)])
    fm = means(full)
    b = np.where(np.isfinite(fm), -fm if hib else fm, np.inf).argmin(0)
    best = fm[b, np.arange(fm.shape[1])]
    low, high = best - half[b], best + half[b]
    tol = 1e-12 * np.maximum(1.0, np.abs(best))
    usable = (np.isfinite(full_nfe) & (full_nfe > 0))[:, None]
    within = (fm >= low - tol) & (fm <= high + tol) & usable
    ref = np.where(within, full_nfe[:, None], np.inf).min(0)
    wm = means(ws)
    ok = (wm >= low - tol) if hib else (wm <= high + tol)
    ok &= np.isfinite(wm) & (np.isfinite(ws_nfe) & (ws_nfe > 0))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        speed = np.where(ok, ref / ws_nfe[:, None], 0.0).max(0)
    return np.where(np.isfinite(ref) & np.isfinite(speed), speed, 0.0)


def speedup_interval(
    df: pd.DataFrame, task: str, metric: str, draft: str, method: str = "ws-fm",
    where: Mapping[str, Any] | None = None, reference_solver: str = "euler",
    level: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> dict[str, Any]:
    """The quality-matched speed-up of ``draft``'s settings (those matching ``where``, e.g.
    {"t0": 0.9, "start": "draft", "init": "scratch"}) with a bootstrap interval over seeds.

    Seeds are resampled with replacement, the same seeds for full FM and WS-FM (a seed's
    cells share its data stream: the comparison is paired); each resample reruns
    quality_matched_speedup's rule on the resampled means, with the full model's interval
    widths of the observed seeds, counting "no setting matches" as 0. ``low``/``high`` are
    percentiles of those speed-ups (attained values, never interpolated), ``p_match`` the
    share of resamples in which some setting matched. With 3 seeds there are only 10 distinct
    resamples: the interval is coarse and tends to be narrow; read it with ``n_seeds``.
    """
    d = coerce_numeric(df)
    d = d[(d["task"] == task) & (d["metric"] == metric)]
    full = d[(d["method"] == "full-fm") & (d["solver"] == reference_solver)]
    ws = d[(d["method"] == method) & (d["draft"] == draft)]
    for key, value in (where or {}).items():
        ws = ws[ws[key] == value]
    seeds = sorted(set(full["seed"].dropna()) | set(ws["seed"].dropna()))
    out = {"speedup": math.nan, "low": math.nan, "high": math.nan, "p_match": math.nan,
           "n_seeds": len(seeds), "n_resamples": n_resamples, "level": level}
    if full.empty or ws.empty or not seeds:
        return out
    f, f_nfe = _seed_matrix(full, ["n_steps"], seeds)
    w, w_nfe = _seed_matrix(ws, WS_GROUP, seeds)
    hib = higher_is_better(d)
    point = float(_matched(f, f_nfe, w, w_nfe, hib, level, np.arange(len(seeds))[None])[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(seeds), size=(n_resamples, len(seeds)))
    boot = _matched(f, f_nfe, w, w_nfe, hib, level, idx)
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], method="inverted_cdf")
    out.update(speedup=point if point > 0 else math.nan, low=float(low), high=float(high),
               p_match=float((boot > 0).mean()))
    return out
