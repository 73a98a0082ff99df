"""The report's evidence sections (issue 5, parts 4 and 5), from the run's records alone:

- quality-matched speed-up per task, draft and setting (t0, start, init, solver) with a
  bootstrap interval over seeds (harness.analysis.resample.speedup_interval);
- the t0 advisor's pick (run_dir/advisor.json, written by wsfm.advisor before training)
  beside the sweep's best t0, with a t0 sweep figure per task and draft;
- parity: WS-FM with K steps against full FM with N steps, paired by seed
  (harness.analysis.resample.parity_test, tolerances from harness/suites/tolerances.toml);
- per-seed values of every group (report/per_seed.csv; the primary metric as a table).

``evidence_sections`` is the one entry point the report calls. No torch is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.resample import SMALL_N, parity_test, speedup_interval
from harness.analysis.stats import (
    GROUP,
    WARM,
    WS_GROUP,
    coerce_numeric,
    first_valid,
    higher_is_better,
    primary_metric,
    quality_matched_speedup,
)
from harness.analysis.tolerances import Tolerances
from harness.records import atomic
from harness.records.store import advised_t0, read_advice
from harness.report import figures
from harness.report.format import fmt, fmt_int, md_table, missing, slug

SETTING = ["t0", "start", "init", "solver"]


def _x(v: float) -> str:
    return "none" if missing(v) or not math.isfinite(v) or v <= 0 else f"{v:.3g}x"


def speedup_sweep_table(df: pd.DataFrame, primary: Mapping[str, str],
                        methods: tuple[str, ...] = WARM,
                        reference_solver: str = "euler", level: float = 0.95) -> pd.DataFrame:
    """Per task (primary metric), method and draft: one row over all the draft's settings
    (``setting`` = "all") and one per (t0, start, init, solver), each with the point
    quality-matched speed-up, its bootstrap interval over seeds and where it matched."""
    rows = []
    d = coerce_numeric(df)
    for task in sorted(d["task"].dropna().unique()):
        metric = primary_metric(d, task, primary)
        if metric is None:
            continue
        for method in methods:
            sel = d[(d["task"] == task) & (d["method"] == method) & (d["metric"] == metric)]
            for draft in sorted(sel["draft"].dropna().unique()):
                ws = sel[sel["draft"] == draft]
                settings = [None] + [dict(zip(SETTING, k, strict=True)) for k, _ in
                                     ws.groupby(SETTING, dropna=False, sort=True)]
                for where in settings:
                    keep = ws if where is None else ws[np.logical_and.reduce(
                        [(ws[c] == v) | (ws[c].isna() & missing(v)) for c, v in where.items()])]
                    other = d[(d["task"] == task) & (d["method"] != method)]
                    point = quality_matched_speedup(pd.concat([other, keep]), task, metric,
                                                    draft, reference_solver, method, level)
                    where_ok = {k: v for k, v in (where or {}).items() if not missing(v)}
                    ci = speedup_interval(d, task, metric, draft, method, where_ok,
                                          reference_solver, level)
                    rows.append({**point, "setting": "all" if where is None else "one",
                                 **{f"s_{c}": (where or {}).get(c) for c in SETTING},
                                 "low": ci["low"], "high": ci["high"],
                                 "p_match": ci["p_match"], "n_boot_seeds": ci["n_seeds"]})
    return pd.DataFrame(rows)


def best_sweep_t0(table: pd.DataFrame, task: str, draft: str,
                  method: str = "ws-fm") -> dict[str, Any] | None:
    """The sweep's answer for (task, draft): the setting with the largest quality-matched
    speed-up (ties: the larger share of matching resamples, then the larger t0); None when
    no setting matched."""
    if table.empty:
        return None
    one = table[(table["task"] == task) & (table["draft"] == draft)
                & (table["method"] == method) & (table["setting"] == "one")]
    one = one[np.isfinite(one["speedup"].astype(float))]
    if one.empty:
        return None
    one = one.sort_values(["speedup", "p_match", "s_t0"], ascending=False, kind="stable")
    return one.iloc[0].to_dict()


def _speedup_section(table: pd.DataFrame) -> str:
    head = ("## Quality-matched speed-up per draft and t0, with intervals\n\n"
            "Per task (primary metric) and draft: first the speed-up over all of the draft's "
            "settings, then each setting (t0 / start / init / solver) on its own, by the rule "
            "of the section above. Interval: 95% bootstrap percentile interval over seeds "
            "(10,000 resamples of the seeds, the same seeds for full FM and the warm start; "
            "means resampled, the full model's interval widths those of the observed seeds; "
            "'none' where the resampled quality matched nowhere); P(match): the share of "
            "resamples in which some budget matched. With 3 seeds only 10 distinct resamples "
            "exist: these intervals are coarse and undercover, read them with the seed count."
            "\n\n")
    if table.empty:
        return head + "_No warm-start cells: nothing to compare._"
    rows = []
    for r in table.itertuples():
        setting = ("**all settings**" if r.setting == "all" else
                   " / ".join(fmt(getattr(r, f"s_{c}")) for c in SETTING))
        matched = ("–" if not math.isfinite(r.speedup) else
                   f"N={fmt_int(r.n_steps)}, K={fmt_int(r.k_steps)}: {fmt(r.mean)} "
                   f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]")
        rows.append([r.task, r.method, r.draft, setting, matched, _x(r.speedup),
                     f"[{_x(r.low)}, {_x(r.high)}]", fmt(r.p_match, 3),
                     fmt_int(r.n_boot_seeds)])
    out = head + md_table(["task", "method", "draft", "setting (t0 / start / init / solver)",
                           "matched at: quality [95% CI]", "speed-up", "95% interval",
                           "P(match)", "seeds"], rows)
    lines = []
    allrows = table[(table["setting"] == "all") & (table["method"] == "ws-fm")]
    for task, g in allrows.groupby("task", sort=True):
        by = {r.draft: r for r in g.itertuples()}
        if "good" in by and "poor" in by:
            good, poor = by["good"], by["poor"]
            gv = good.speedup if math.isfinite(good.speedup) else 0.0
            pv = poor.speedup if math.isfinite(poor.speedup) else 0.0
            verdict = ("higher than" if gv > pv else "lower than" if gv < pv else "equal to")
            sure = (" (the intervals do not overlap)" if good.low > poor.high
                    else " (the intervals overlap)")
            lines.append(f"**{task}**: WS-FM's quality-matched speed-up with the good draft, "
                         f"{_x(good.speedup)} [{_x(good.low)}, {_x(good.high)}], is {verdict} "
                         f"the poor draft's, {_x(poor.speedup)} [{_x(poor.low)}, "
                         f"{_x(poor.high)}]{sure if gv != pv else ''}.")
    return out + ("\n\n" + "\n\n".join(lines) if lines else "")


def _tolerance_for(tolerances: Tolerances) -> Callable[[str, float], float]:
    return lambda metric, base: tolerances.for_metric(metric).allowed(base)


def parity_table(df: pd.DataFrame, primary: Mapping[str, str],
                 tolerance_for: Callable[[str, float], float] | None = None,
                 methods: tuple[str, ...] = ("ws-fm",), level: float = 0.95) -> pd.DataFrame:
    """Per task (primary metric), warm-start setting and N: parity_test of the setting with
    K steps against full FM with N steps (same solver when full FM ran it, else Euler),
    paired by seed; ``tolerance_for(metric, full FM's mean)`` gives the tolerance."""
    tolerance_for = tolerance_for or _tolerance_for(Tolerances.default())
    d = coerce_numeric(df)
    rows = []
    for task in sorted(d["task"].dropna().unique()):
        metric = primary_metric(d, task, primary)
        sel = d[(d["task"] == task) & (d["metric"] == metric)]
        hib, full = higher_is_better(sel), sel[sel["method"] == "full-fm"]
        keys = ["method"] + WS_GROUP
        for key, g in sel[sel["method"].isin(methods)].groupby(keys, dropna=False, sort=True):
            setting = dict(zip(keys, key, strict=True))
            solver = setting["solver"] if (full["solver"] == setting["solver"]).any() else "euler"
            f = full[(full["solver"] == solver) & (full["n_steps"] == setting["n_steps"])]
            if f.empty:
                continue
            fm, wm = f.groupby("seed")["value"].mean(), g.groupby("seed")["value"].mean()
            test = parity_test(wm.to_dict(), fm.to_dict(), hib,
                               tolerance_for(metric, float(fm.mean())), level)
            rows.append({"task": task, "metric": metric, "higher_is_better": hib, **setting,
                         "variant": first_valid(g["variant"]), "k_steps": g["k_steps"].mean(),
                         "full_solver": solver, "ws_mean": wm.mean(), "full_mean": fm.mean(),
                         **test})
    return pd.DataFrame(rows)


def _parity_section(table: pd.DataFrame) -> str:
    head = ("## Parity: WS-FM with K steps against full FM with N steps\n\n"
            "Paired by seed (the same seed's data, draft and networks), on the primary metric, "
            "full FM with the same solver. diff = WS-FM - full FM; its 95% interval is "
            f"Student-t over the paired seeds (BCa bootstrap from {SMALL_N} pairs on). "
            "Tolerance: how much worse is still parity, max(rel x |full FM mean|, abs) from "
            "harness/suites/tolerances.toml. Verdict: **not worse** when the whole interval "
            "of how much worse WS-FM is lies below the tolerance, **worse** when it lies "
            "above it, inconclusive otherwise (always with fewer than 2 seeds). p: one-sided "
            "paired t-test of H0 'WS-FM is worse by at least the tolerance'.\n\n")
    if table.empty:
        return head + "_No WS-FM cells with a full FM cell at the same N._"
    rows = [[r.task, r.metric, r.variant, fmt_int(r.n_steps), fmt_int(r.k_steps),
             fmt(r.full_mean), fmt(r.ws_mean),
             f"{fmt(r.diff, 3)} [{fmt(r.diff_low, 3)}, {fmt(r.diff_high, 3)}]",
             fmt(r.tolerance, 3), fmt(r.p, 3), str(r.n_pairs),
             f"**{r.verdict}**" if r.verdict != "inconclusive" else r.verdict]
            for r in table.itertuples()]
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("not worse", "worse",
                                                             "inconclusive"))
    return head + f"{len(table)} comparisons: {summary}.\n\n" + md_table(
        ["task", "metric", "WS-FM setting", "N", "K", "full FM (N)", "WS-FM (K)",
         "diff [95% CI]", "tolerance", "p", "seeds", "verdict"], rows)


def per_seed_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method, variant, N, metric): K, each seed's value ("seed <s>"
    columns, NaN where that seed has none), their mean and sample standard deviation."""
    if df.empty:
        return pd.DataFrame(columns=GROUP + ["k_steps", "mean", "sd"])
    d = coerce_numeric(df)
    seeds = sorted(int(s) for s in d["seed"].dropna().unique())
    rows = []
    for key, g in d.groupby(GROUP, dropna=False, sort=False):
        by_seed = g.groupby("seed")["value"].mean()
        x = g["value"].dropna().to_numpy(float)
        rows.append({**dict(zip(GROUP, key, strict=True)), "k_steps": g["k_steps"].mean(),
                     **{f"seed {s}": by_seed.get(float(s), math.nan) for s in seeds},
                     "mean": x.mean() if x.size else math.nan,
                     "sd": x.std(ddof=1) if x.size > 1 else math.nan})
    order = pd.DataFrame(rows).sort_values(
        GROUP, key=lambda c: c if c.name == "n_steps" else c.astype(str))
    return order.reset_index(drop=True)


def _per_seed_section(df: pd.DataFrame, primary: Mapping[str, str], out: Path) -> str:
    table = per_seed_table(df)
    path = atomic.write_text(out / "per_seed.csv", table.to_csv(index=False))
    head = (f"## Per-seed values\n\nEvery metric of every group, one column per seed: "
            f"[{path.name}]({path.name}). The primary metric:\n\n")
    if table.empty:
        return head + "_No values._"
    seeds = [c for c in table.columns if c.startswith("seed ")]
    parts = [head.rstrip()]
    for task, g in table.groupby("task", sort=True):
        metric = primary_metric(df, task, primary)
        g = g[g["metric"] == metric]
        rows = [[r["method"], fmt(r["variant"]), fmt_int(r["n_steps"]), fmt_int(r["k_steps"]),
                 *(fmt(r[s]) for s in seeds), fmt(r["mean"]), fmt(r["sd"], 2)]
                for _, r in g.iterrows()]
        parts.append(f"### {task}: {metric}\n\n" + md_table(
            ["method", "variant", "N", "K", *seeds, "mean", "sd"], rows))
    return "\n\n".join(parts)


def _advisor_section(run_dir: Path, df: pd.DataFrame, primary: Mapping[str, str],
                     table: pd.DataFrame, out: Path) -> str:
    advice = read_advice(run_dir)
    head = ("## t0 advisor\n\nBefore training, wsfm.advisor noised draft samples and "
            "training data on the same path (t x + (1-t) eps; tokens masked with probability "
            "1-t) at t = 0.05, 0.10, ..., 0.95 and trained a small classifier to tell them "
            "apart. Its pick: the last t before the held-out accuracy (isotonic fit over t) "
            "exceeds chance by more than a Bonferroni-corrected binomial bound, i.e. the "
            "latest start at which the noised draft still looks like noised data (what the full "
            "model's own path accepts; WS-FM, trained on refined pairs, may tolerate a later "
            "t0). Sweep's best "
            "t0: the WS-FM setting with the largest quality-matched speed-up (section above)."
            "\n\n")
    d = coerce_numeric(df)
    ws = d[d["method"] == "ws-fm"]
    pairs = sorted({(t, dr) for t, drafts in advice.items() for dr in drafts}
                   | set(map(tuple, ws[["task", "draft"]].dropna().drop_duplicates().values)))
    if not pairs:
        return head + "_No warm-start drafts in this run._"
    rows, figs = [], []
    for task, draft in pairs:
        entry = advice.get(task, {}).get(draft)
        t0 = advised_t0(entry)
        best = best_sweep_t0(table, task, draft)
        run_t0 = sorted(ws.loc[(ws["task"] == task) & (ws["draft"] == draft), "t0"].dropna()
                        .unique())
        pick = ("not computed (run predates the advisor)" if entry is None else fmt(t0)
                if t0 is not None else "none (distinguishable at every t)")
        sweep = ("no quality-matched setting" if best is None else
                 f"{fmt(best['s_t0'])} ({fmt(best['s_start'])}, {fmt(best['s_init'])}; "
                 f"{_x(best['speedup'])})")
        rows.append([task, draft, pick, sweep, ", ".join(fmt(t) for t in run_t0) or "–",
                     "–" if entry is None else f"{fmt(entry.get('threshold'), 3)} "
                     f"(n={fmt_int(entry.get('n_test'))})"])
        metric = primary_metric(d, task, primary)
        frame = d[(d["task"] == task) & (d["metric"] == metric)]
        path = figures.t0_sweep(frame, draft, out / "figures" /
                                f"{slug(task)}_{slug(draft)}_t0_sweep.png",
                                f"{task}, {draft} draft: {metric} vs t0", entry,
                                None if best is None else best["s_t0"])
        if path is not None:
            figs.append(f"### t0 sweep: {task}, {draft} draft\n\n"
                        f"![t0 sweep {task} {draft}]({path.relative_to(out).as_posix()})")
    return head + md_table(["task", "draft", "advisor's t0", "sweep's best t0 (start, init; "
                            "speed-up)", "t0 run", "accuracy threshold"], rows) + (
        "\n\n" + "\n\n".join(figs) if figs else "")


def evidence_sections(run_dir: str | Path, df: pd.DataFrame, primary: Mapping[str, str],
                      out: str | Path) -> str:
    """The evidence sections as Markdown (figures under out/figures, per_seed.csv in out)."""
    run_dir, out = Path(run_dir), Path(out)
    table = speedup_sweep_table(df, primary) if not df.empty else pd.DataFrame()
    parts = [_speedup_section(table), _advisor_section(run_dir, df, primary, table, out),
             _parity_section(parity_table(df, primary) if not df.empty else pd.DataFrame()),
             _per_seed_section(df, primary, out)]
    return "\n\n".join(parts)
