"""A task's configurations and choosing among them (harness.analysis.evidence): one Config per
(method, variant, N) with its per-seed values, times and NFE; the best, the cheapest within a
margin of a target (the selection step), the paired bootstrap of a speed-up, and which seeds
choose settings and which report them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.noninferiority import paired_test
from harness.analysis.stats import first_valid, flag

N_BOOTSTRAP = 10_000


@dataclass
class Config:
    """One configuration of a method on a task: its per-seed values, time and NFE."""

    method: str
    role: str
    title: str
    variant: str
    draft: str | None
    n_steps: float
    values: pd.Series  # by seed
    times: pd.Series  # time per batch, by seed
    nfe: float
    k_steps: float
    t0: float
    control: str | None = None  # its draft is a control (harness.controls)
    targets: pd.Series | None = None  # its training targets' own score, by seed
    flagged: pd.Series | None = None  # 1 for a seed whose cell failed the bound/NFE checks

    def on(self, seeds: list[int]) -> pd.Series:
        return self.values[self.values.index.isin(seeds)]

    def cost(self, seeds: list[int]) -> tuple[float, float]:
        """(NFE, mean time on ``seeds``): what 'cheapest' orders by."""
        t = self.times[self.times.index.isin(seeds)]
        return self.nfe, float(t.mean()) if len(t) else math.inf

    def mean(self, seeds: list[int]) -> float:
        v = self.on(seeds).dropna()
        return float(v.mean()) if len(v) else math.nan

    def label(self) -> dict[str, Any]:
        return {"method": self.method, "title": self.title, "variant": self.variant,
                "n_budget": as_int(self.n_steps), "nfe": as_num(self.nfe)}


def as_float(v: Any) -> float:
    return math.nan if v is None else float(v)


def as_int(v: float) -> int | None:
    return int(v) if v is not None and math.isfinite(v) else None


def as_num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def configs(frame: pd.DataFrame) -> list[Config]:
    """One Config per (method, variant, N) of a task's rows of one metric."""
    out = []
    for (method, variant, n), g in frame.groupby(["method", "variant", "n_steps"],
                                                 dropna=False, sort=True):
        by_seed = g.groupby("seed")
        draft = first_valid(g["draft"])
        control = first_valid(g["control"]) if "control" in g else None
        flagged = (g["wall_status"].isin(["shortfall", "impossible"])
                   | (g["nfe_ok"].map(flag) == False)).astype(float)  # noqa: E712
        out.append(Config(
            str(method), str(first_valid(g["role"])), str(first_valid(g["title"])), str(variant),
            None if draft is None else str(draft), float(n), by_seed["value"].mean(),
            by_seed["time_s"].mean(), float(g["nfe_measured"].mean()),
            float(g["k_steps"].mean()), as_float(first_valid(g["t0"])),
            control=control if isinstance(control, str) else None,
            targets=by_seed["target"].mean() if "target" in g else None,
            flagged=flagged.groupby(g["seed"]).max()))
    return out


def best_of(cands: list[Config], seeds: list[int], hib: bool) -> Config | None:
    scored = [(c.mean(seeds), c) for c in cands if math.isfinite(c.mean(seeds))]
    if not scored:
        return None
    return (max if hib else min)(scored, key=lambda sc: sc[0])[1]


def cheapest_within_margin(cands: list[Config], target: Config, seeds: list[int], hib: bool,
                           margin: float, by_time: bool = False) -> Config | None:
    """The cheapest of ``cands`` whose paired difference from ``target`` on ``seeds`` is within
    the margin (mean of d <= margin): the selection step. It is a choice made on the selection
    seeds, not a claim; the claim is tested on the evaluation seeds. (A test at this step
    would have no power with a few selection seeds and would fall back to the costliest
    configuration, inflating every speed-up.)"""
    passed = [c for c in cands
              if paired_test(c.on(seeds), target.on(seeds), hib, margin).worse <= margin]
    if not passed:
        return None

    def key(c: Config) -> tuple[float, float]:
        nfe, time = c.cost(seeds)
        return (time, nfe) if by_time else (nfe, time)

    return min(passed, key=key)


def bootstrap_ratio(ref: pd.Series, cand: pd.Series, seed: int = 0) -> tuple[float, list]:
    """mean(ref) / mean(cand) over common seeds, and its paired bootstrap 95% interval."""
    both = pd.concat([ref.rename("r"), cand.rename("c")], axis=1).dropna()
    if both.empty:
        return math.nan, [None, None]
    r, c = both["r"].to_numpy(float), both["c"].to_numpy(float)
    point = float(r.mean() / c.mean())
    if len(r) < 2:
        return point, [None, None]
    idx = np.random.default_rng(seed).integers(0, len(r), size=(N_BOOTSTRAP, len(r)))
    ratios = r[idx].mean(axis=1) / c[idx].mean(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return point, [float(low), float(high)]


def seeds_by_role(manifest: Mapping[str, Any], task: str,
                  seeds_in_run: list[int]) -> tuple[list[int], list[int]]:
    """(selection seeds, evaluation seeds) of a task as the manifest records them; a run
    without that record has evaluation seeds only."""
    ev = (manifest.get("evidence") or {}).get("seeds", {}).get(task)
    if not ev:
        return [], sorted(seeds_in_run)
    return [int(s) for s in ev.get("selection", [])], [int(s) for s in ev.get("evaluation", [])]
