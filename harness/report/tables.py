"""The report's tables: run header, NFE errors, headline, quality-matched speed-up, bound
check, all methods. Each returns a Markdown section computed from the run's records."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness.analysis.speedup import ceil_speedup
from harness.analysis.stats import (
    WARM,
    coerce_numeric,
    flag,
    mean_ci,
    primary_metric,
    quality_matched_table,
    summarise,
)
from harness.report.format import fmt, fmt_int, md_table, method_rank, missing


def errors_section(cells: pd.DataFrame) -> str:
    bad = cells[[flag(v) is False for v in cells["nfe_ok"]]]
    if bad.empty:
        return ""
    rows = [[r.task, r.method, r.variant, fmt_int(r.seed), fmt_int(r.n_steps),
             fmt_int(r.nfe_expected), fmt_int(r.nfe_measured), f"`{r.cell_id}`"]
            for r in bad.itertuples()]
    return ("## Errors: NFE mismatch\n\n"
            f"**{len(bad)} cell(s) executed a different number of network calls than their "
            "method declares (nfe_ok = False). Their NFE and speed-up figures are not "
            "trustworthy: this is a bug to fix before reading the rest of the report.**\n\n"
            + md_table(["task", "method", "variant", "seed", "N", "NFE expected", "NFE measured",
                      "cell"], rows))


def _commit(info: Any) -> str:
    if not isinstance(info, Mapping):
        return "–" if missing(info) else str(info)
    commit = info.get("commit") or "unknown (not a git checkout)"
    return f"{commit} (uncommitted changes)" if info.get("dirty") else commit


def _cell_counts(manifest: Mapping[str, Any], cells: pd.DataFrame) -> str:
    counts = manifest.get("cells")
    if not isinstance(counts, Mapping):
        return str(len(cells))
    # ``cells`` holds the NFE-budget cells; time-budget cells are counted by the manifest only.
    recorded = (f"{len(cells)} NFE-budget cells recorded; {counts.get('total')} cells in all "
                "(with the wall-clock-budget cells)")
    return (f"{recorded}; this invocation ran "
            f"{counts.get('run')} and reused {counts.get('reused')} finished by an earlier, "
            f"interrupted attempt ({len(manifest.get('resumed') or [])} resume(s))")


def _cache_counts(manifest: Mapping[str, Any]) -> str:
    cache = manifest.get("cache")
    if not isinstance(cache, Mapping):
        return "–"
    return (f"{cache.get('hits')} artefacts loaded, {cache.get('misses')} built, "
            f"{cache.get('discarded', 0)} corrupt entries discarded "
            f"({cache.get('root')})")


def header_section(manifest: Mapping[str, Any], cells: pd.DataFrame) -> str:
    suite = manifest.get("suite")
    device = manifest.get("device")
    versions = manifest.get("versions") or {}
    rows = [
        ["run id", manifest.get("run_id")],
        ["suite", suite.get("name") if isinstance(suite, Mapping) else suite],
        ["commit", _commit(manifest.get("git_commit"))],
        ["device", device.get("description") if isinstance(device, Mapping) else device],
        ["started", manifest.get("started")], ["finished", manifest.get("finished")],
        ["cells", _cell_counts(manifest, cells)],
        ["cache", _cache_counts(manifest)],
        ["seeds", ", ".join(map(str, manifest.get("seeds") or []))],
        ["config hash", manifest.get("config_hash")],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items())],
    ]
    return "## Run\n\n" + md_table(["", ""], [[k, "–" if missing(v) else str(v)] for k, v in rows])


def _qm_sentence(task: str, rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    hib = "higher" if first["higher_is_better"] else "lower"
    intro = f"**{task}** ({first['metric']}, {hib} is better"
    if math.isfinite(first["reference_nfe"]):
        intro += (f"; full FM's best mean {fmt(first['full_best_mean'])} "
                  f"[{fmt(first['full_best_ci_low'])}, {fmt(first['full_best_ci_high'])}] at "
                  f"N={fmt_int(first['full_best_n_steps'])}, cheapest budget within its interval "
                  f"N={fmt_int(first['reference_n_steps'])}, NFE {fmt_int(first['reference_nfe'])}")
    parts = []
    for r in rows.itertuples():
        if math.isfinite(r.speedup):
            parts.append(f"with the {r.draft} draft WS-FM matched it at {r.speedup:.3g}x fewer "
                         f"network calls ({r.best_variant}, K={fmt_int(r.k_steps)})")
        else:
            parts.append(f"with the {r.draft} draft no speed-up was measured ({r.reason})")
    text = intro + "): " + "; ".join(parts) + "."
    by = {r.draft: r.speedup for r in rows.itertuples()}
    if "good" in by and "poor" in by:
        g, p = (0.0 if not math.isfinite(by[k]) else by[k] for k in ("good", "poor"))
        if g > p:
            text += " The good draft allowed the larger quality-matched speed-up, as expected."
        elif g < p:
            text += (" The poor draft allowed the LARGER quality-matched speed-up: the good draft "
                     "did not help here (the opposite of what the paper reports).")
        elif g == 0:
            text += " Neither draft reached the full model's best quality."
        else:
            text += " Both drafts allowed the same quality-matched speed-up."
    return text


def quality_matched_section(df: pd.DataFrame, primary: Mapping[str, str]) -> str:
    head = ("## Quality-matched speed-up\n\nReference: full FM (Euler) at the cheapest budget "
            "whose mean lies within the 95% interval of its best mean over budgets (a larger, "
            "over-spent N would inflate the figure). A warm-start setting matches when its mean "
            "over seeds is not worse than that interval's bound; the speed-up is reference NFE / "
            "its measured NFE, the largest over matching settings.\n\n")
    table = quality_matched_table(df, primary) if not df.empty else pd.DataFrame()
    if table.empty:
        return head + "_No warm-start cells: nothing to compare._"
    rows = [[r.task, r.method, r.draft, r.metric,
             f"{fmt(r.full_best_mean)} [{fmt(r.full_best_ci_low)}, {fmt(r.full_best_ci_high)}]",
             f"{fmt_int(r.reference_nfe)} (N={fmt_int(r.reference_n_steps)})",
             fmt(r.best_variant), fmt_int(r.k_steps),
             "–" if missing(r.best_variant) else f"{fmt(r.mean)} [{fmt(r.ci_low)}, "
             f"{fmt(r.ci_high)}]",
             fmt_int(r.nfe_measured), f"{r.speedup:.3g}x" if math.isfinite(r.speedup) else "none",
             "" if missing(r.reason) else r.reason] for r in table.itertuples()]
    out = head + md_table(["task", "method", "draft", "metric", "full FM best [95% CI]",
                         "reference NFE", "matched setting", "K", "its quality [95% CI]", "NFE",
                         "speed-up", "note"], rows)
    ws = table[table["method"] == "ws-fm"]
    sentences = [_qm_sentence(t, g) for t, g in ws.groupby("task", sort=True)]
    return out + ("\n\n" + "\n\n".join(sentences) if sentences else "")


def headline_section(df: pd.DataFrame, primary: Mapping[str, str]) -> str:
    """Per task: WS-FM (good draft, largest t0, draft start, from scratch) with K steps beside
    full FM (Euler) with N steps, on the primary metric, with intervals over seeds."""
    out = ["## Headline: WS-FM with K steps against full FM with N steps"]
    frame = coerce_numeric(df)
    for task in sorted(frame["task"].dropna().unique()):
        metric = primary_metric(frame, task, primary)
        sel = frame[(frame["task"] == task) & (frame["metric"] == metric)]
        full = sel[(sel["method"] == "full-fm") & (sel["solver"] == "euler")]
        ws = sel[(sel["method"] == "ws-fm") & (sel["draft"] == "good") & (sel["start"] == "draft")
                 & (sel["init"] == "scratch") & (sel["solver"] == "euler")]
        if full.empty or ws.empty:
            continue
        t0 = ws["t0"].max()
        ws = ws[ws["t0"] == t0]
        rows = []
        for n in sorted(set(full["n_steps"]) & set(ws["n_steps"])):
            f, w = full[full["n_steps"] == n], ws[ws["n_steps"] == n]
            fm, flo, fhi = mean_ci(f["value"])
            wm, wlo, whi = mean_ci(w["value"])
            rows.append([fmt_int(n), f"{fmt(fm)} [{fmt(flo)}, {fmt(fhi)}]",
                         fmt_int(w["k_steps"].iloc[0]), f"{fmt(wm)} [{fmt(wlo)}, {fmt(whi)}]",
                         str(w["seed"].nunique()),
                         fmt(w["nfe_speedup"].median()), fmt(w["wall_speedup"].median(), 3)])
        out.append(f"### {task}: {metric}, good draft, t0 = {fmt(t0)}\n\n" + md_table(
            ["N", "full FM, N steps [95% CI]", "K", "WS-FM, K steps [95% CI]", "seeds",
             "NFE speed-up", "wall-clock speed-up (median)"], rows))
    return "\n\n".join(out) if len(out) > 1 else ""


def bound_check_section(cells: pd.DataFrame) -> str:
    warm = cells[cells["method"].isin(WARM)].sort_values(["task", "method", "variant",
                                                          "n_steps", "seed"])
    head = "## Bound check\n\n"
    if warm.empty:
        return head + "_No warm-start cells in this run._"
    rows, fails, nfe_exact, why = [], 0, 0, {"NFE": 0, "wall-clock": 0}
    for r in warm.itertuples():
        theory = ceil_speedup(r.t0, r.n_steps)
        measured = r.nfe_speedup
        if not math.isfinite(measured) and r.nfe_measured > 0:
            measured = r.ref_nfe / r.nfe_measured
        exact = math.isfinite(theory) and abs(measured - theory) <= 1e-9 * max(1.0, theory)
        nfe_exact += exact
        noise = r.timing_noise if math.isfinite(r.timing_noise) else 0.0
        wall_ok = r.wall_speedup >= r.wall_bound * (1 - noise)
        ok = flag(r.bound_ok)
        if ok is None and math.isfinite(r.wall_speedup) and math.isfinite(r.wall_bound):
            ok = exact and wall_ok
        verdict = "n/a" if ok is None else "OK" if ok else "FAIL"
        if ok is False:
            fails += 1
            reasons = [k for k, bad in (("NFE", not exact), ("wall-clock", not wall_ok)) if bad]
            for k in reasons:
                why[k] += 1
            verdict = f"**FAIL** ({', '.join(reasons)})" if reasons else "**FAIL**"
        rows.append([r.task, r.method, r.variant, fmt_int(r.seed), fmt_int(r.n_steps),
                     fmt_int(r.k_steps),
                     fmt(r.t0), fmt_int(r.nfe_measured), fmt(measured), fmt(theory),
                     fmt(r.ideal_speedup), fmt(r.wall_speedup), fmt(r.wall_bound),
                     fmt(r.timing_noise, 2), verdict])
    n = len(warm)
    summary = (f"**{fails} of {n} warm-start cells FAIL the bound check** "
               f"(NFE ratio inexact: {why['NFE']}; wall-clock short of S_wall by more than the "
               f"timing noise: {why['wall-clock']})." if fails else
               f"All {n} warm-start cells pass the bound check.")
    nfe_line = (f"NFE speed-up equals N/ceil((1-t0)N) in {nfe_exact} of {n} warm-start cells "
                "(recomputed here from N and t0 in exact decimal arithmetic).")
    return (head + summary + "\n\n" + nfe_line + "\n\n"
            + "Verdict: the harness's bound_ok (NFE ratio exact and measured wall-clock "
              "speed-up not short of S_wall = N s c / (T_d + K s c) by more than the run's "
              "timing noise).\n\n"
            + md_table(["task", "method", "variant", "seed", "N", "K", "t0", "NFE",
                      "S_nfe measured", "N/ceil((1-t0)N)", "1/(1-t0)", "S_wall measured",
                      "S_wall bound", "noise", "verdict"], rows))


def all_methods_section(df: pd.DataFrame, primary: Mapping[str, str]) -> str:
    head = ("## All methods\n\nMean ± 95% Student-t half-width over seeds (n = seeds); "
            "↓ lower is better, ↑ higher is better. Time: median wall-clock per batch.\n\n")
    summ = summarise(df)
    if summ.empty:
        return head + "_No finished cells._"
    out = [head.rstrip()]
    for task, g in summ.groupby("task", sort=True):
        metrics = sorted(g["metric"].dropna().unique())
        pm = primary_metric(df, task, primary)
        metrics = [pm] + [m for m in metrics if m != pm] if pm in metrics else metrics
        arrows = {m: "↑" if (g.loc[g["metric"] == m, "higher_is_better"] >= 0.5).any() else "↓"
                  for m in metrics}
        rows = []
        groups = sorted(g.groupby(["method", "variant", "n_steps"], dropna=False, sort=False),
                        key=lambda kv: (method_rank(kv[0][0]), str(kv[0][0]), str(kv[0][1]),
                                        kv[1]["n_steps"].fillna(-1).iloc[0]))
        for (method, variant, n_steps), sel in groups:
            by_metric = {r.metric: r for r in sel.itertuples()}
            vals = []
            for m in metrics:
                s = by_metric.get(m)
                if s is None or missing(s.mean):
                    vals.append("–")
                elif s.n_seeds < 2:
                    vals.append(f"{fmt(s.mean)} (n={s.n_seeds})")
                else:
                    vals.append(f"{fmt(s.mean)} ± {fmt((s.ci_high - s.ci_low) / 2, 2)}")
            r = sel.iloc[0]
            rows.append([method, "–" if missing(variant) else variant, fmt_int(n_steps),
                         fmt_int(r["k_steps"]), *vals, str(sel["n_seeds"].max()),
                         fmt_int(r["nfe_measured"]), fmt(r["time_s"] * 1000, 3)])
        headers = ["method", "variant", "N", "K", *[f"{m} {arrows[m]}" for m in metrics],
                   "seeds", "NFE", "time/batch (ms)"]
        out.append(f"### {task}\n\n" + md_table(headers, rows))
    return "\n\n".join(out)
