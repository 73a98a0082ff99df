"""The report's tables: run header, NFE errors, headline, quality-matched speed-up, bound
check, all methods. Each returns a Markdown section computed from the run's records."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness.analysis.speedup import ceil_speedup
from harness.analysis.stats import (
    flag,
    primary_metric,
    summarise,
)
from harness.records.status import RunStatus
from harness.report.format import fmt, fmt_int, md_table, missing, nfe_notes
from harness.roles import Role, role_rank


def status_section(status: RunStatus) -> str:
    """A loud line at the top of the report of a run that is not complete."""
    if status.complete:
        return ""
    return (f"**Unfinished run: {status.why}; {status.counts}. Everything below covers only "
            "the recorded cells; the same command resumes the run.**")


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
    reused, resumes = counts.get("reused"), len(manifest.get("resumed") or [])
    earlier = (f" and reused {reused} finished by {resumes} earlier, interrupted attempt(s)"
               if resumes else "")
    return f"{recorded}; the last invocation ran {counts.get('run')}{earlier}"


def _cache_counts(manifest: Mapping[str, Any]) -> str:
    cache = manifest.get("cache")
    if not isinstance(cache, Mapping):
        return "–"
    return (f"{cache.get('hits')} artefacts loaded, {cache.get('misses')} built, "
            f"{cache.get('discarded', 0)} corrupt entries discarded "
            f"({cache.get('root')})")


def _executor(manifest: Mapping[str, Any], cells: pd.DataFrame) -> str:
    """How cells ran, and whether their timings had neighbours competing for cores."""
    spec = manifest.get("executor")
    if not isinstance(spec, Mapping):
        return "serial (recorded before executors existed)"
    text = str(spec.get("kind"))
    if spec.get("kind") != "serial":
        text += f", {spec.get('workers')} workers x {spec.get('threads')} torch threads"
    most = cells["concurrency"].max() if "concurrency" in cells and len(cells) else None
    if most is not None and not missing(most) and int(most) > 1:
        text += (f"; cells were timed with up to {int(most)} running side by side (they compete "
                 "for cores: for wall-clock claims run with --exclusive-timing)")
    elif spec.get("exclusive_timing"):
        text += "; every cell timed alone (exclusive timing)"
    return text


def header_section(manifest: Mapping[str, Any], cells: pd.DataFrame) -> str:
    suite = manifest.get("suite")
    device = manifest.get("device")
    versions = manifest.get("versions") or {}
    rows = [
        ["run id", manifest.get("run_id")],
        ["suite", suite.get("name") if isinstance(suite, Mapping) else suite],
        ["commit", _commit(manifest.get("git_commit"))],
        ["device", device.get("description") if isinstance(device, Mapping) else device],
        ["executor", _executor(manifest, cells)],
        ["started", manifest.get("started")], ["finished", manifest.get("finished")],
        ["cells", _cell_counts(manifest, cells)],
        ["cache", _cache_counts(manifest)],
        ["seeds", ", ".join(map(str, manifest.get("seeds") or []))],
        ["config hash", manifest.get("config_hash")],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items())],
    ]
    return "## Run\n\n" + md_table(["", ""], [[k, "–" if missing(v) else str(v)] for k, v in rows])


def bound_check_section(cells: pd.DataFrame) -> str:
    """Per warm-start group (task, method, variant): how many cells pass each side of the
    bound check (harness.run.measure.bound_check), and every failing cell by name."""
    warm = cells[cells["role"] == Role.WARM_START]
    head = "## Bound check\n\n"
    if warm.empty:
        return head + "_No warm-start cells in this run._"
    warm = warm.assign(
        theory=[ceil_speedup(t0, n) for t0, n in zip(warm["t0"], warm["n_steps"], strict=True)],
        status=warm["wall_status"].fillna("not recorded") if "wall_status" in warm
        else "not recorded")
    warm = warm.assign(exact=[math.isfinite(th) and abs(m - th) <= 1e-9 * max(1.0, th)
                              for m, th in zip(warm["nfe_speedup"], warm["theory"],
                                               strict=True)])
    rows, failing = [], []
    for (task, method, variant), g in warm.groupby(["task", "method", "variant"], sort=True):
        counts = g["status"].value_counts()
        rows.append([task, method, variant, str(len(g)), f"{int(g['exact'].sum())}/{len(g)}",
                     *(str(int(counts.get(s, 0))) for s in ("ok", "shortfall", "impossible",
                                                             "not judged")),
                     fmt(g["wall_speedup"].median(), 3), fmt(g["wall_bound"].median(), 3),
                     fmt(g["theory"].median(), 3)])
        bad = g[(~g["exact"]) | g["status"].isin(["shortfall", "impossible"])]
        failing += [f"{task} / {method} / {variant} / N={fmt_int(r.n_steps)} / seed "
                    f"{fmt_int(r.seed)}: " + ("NFE ratio inexact; " if not r.exact else "")
                    + f"wall-clock {r.status} (measured {fmt(r.wall_speedup, 3)}, S_wall "
                    f"{fmt(r.wall_bound, 3)}, S_nfe {fmt(r.theory, 3)}, noise "
                    f"{fmt(r.timing_noise, 2)})" for r in bad.itertuples()]
    n, exact = len(warm), int(warm["exact"].sum())
    text = (f"NFE speed-up equals N/ceil((1-t0)N) (recomputed here from N and t0) in {exact} "
            f"of {n} warm-start cells. Wall-clock: S_wall = (F + N s c) / (F + T_d + K s c) "
            "with c the bare network call timed alone, F the reference run's fixed cost and T_d "
            "the draft time; a measured speed-up below S_wall is a shortfall, one above "
            "N / K is impossible (broken timing), each beyond 3 standard errors of the medians "
            "(a seeded bootstrap of the timed repeats); with fewer than 5 timed repeats it is "
            "not judged.")
    table = md_table(["task", "method", "variant", "cells", "NFE exact", "wall ok", "shortfall",
                      "impossible", "not judged", "S_wall measured (median)",
                      "S_wall bound (median)", "N/K (median)"], rows)
    tail = ("\n\nFailing cells:\n\n" + "\n".join(f"- {f}" for f in failing[:100])
            + (f"\n- ... and {len(failing) - 100} more" if len(failing) > 100 else "")
            if failing else "\n\nNo cell fails either side.")
    return head + text + "\n\n" + table + tail


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
                        key=lambda kv: (role_rank(kv[1]["role"].iloc[0]), str(kv[0][0]),
                                        str(kv[0][1]), kv[1]["n_steps"].fillna(-1).iloc[0]))
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
            cached = not missing(r.get("nfe_note"))
            rows.append([method, "–" if missing(variant) else variant, fmt_int(n_steps),
                         fmt_int(r["k_steps"]), *vals, str(sel["n_seeds"].max()),
                         fmt_int(r["nfe_measured"]) + (" †" if cached else ""),
                         fmt(r["time_s"] * 1000, 3)])
        headers = ["method", "variant", "N", "K", *[f"{m} {arrows[m]}" for m in metrics],
                   "seeds", "NFE", "time/batch (ms)"]
        out.append(f"### {task}\n\n" + md_table(headers, rows))
        out += nfe_notes(g)
    return "\n\n".join(out)
