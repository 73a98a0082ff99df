"""The report's evidence beside the headline, from the run's records alone:

- the t0 advisor's pick (run_dir/advisor.json, written before training by the warm starts'
  advice, wsfm.advisor) beside the t0 the headline chose, with a t0 sweep figure per task
  and draft;
- per-seed values of every group (report/per_seed.csv; the primary metric as a table).

``evidence_sections`` is the one entry point the report calls. No torch is imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.stats import (
    GROUP,
    coerce_numeric,
    primary_metric,
)
from harness.records import atomic
from harness.records.store import advised_t0, read_advice
from harness.report import figures
from harness.report.format import fmt, fmt_int, md_table, slug
from harness.roles import Role


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


def _chosen(rows: list[dict[str, Any]], task: str, draft: str) -> list[dict[str, Any]]:
    """The headline's warm-start rows for (task, draft) that chose a t0."""
    return [r for r in rows if (r["task"], r["draft"]) == (task, draft) and r["t0"] is not None]


def _advisor_section(run_dir: Path, df: pd.DataFrame, primary: Mapping[str, str],
                     rows_in: list[dict[str, Any]], out: Path) -> str:
    advice = read_advice(run_dir)
    head = ("## t0 advisor\n\nBefore training, wsfm.advisor noised draft samples and "
            "training data on the same path (t x + (1-t) eps; tokens masked with probability "
            "1-t) at t = 0.05, 0.10, ..., 0.95 and trained a small classifier to tell them "
            "apart. Its pick: the last t before the held-out accuracy (isotonic fit over t) "
            "exceeds chance by more than a Bonferroni-corrected binomial bound, i.e. the "
            "latest start at which the noised draft still looks like noised data (what the full "
            "model's own path accepts; a warm start trained on refined pairs may tolerate a "
            "later t0). Headline's t0: the t0 of each warm start's setting the headline chose "
            "on the selection seeds, with its verdict.\n\n")
    d = coerce_numeric(df)
    ws = d[d["role"] == Role.WARM_START]
    pairs = sorted({(t, dr) for t, drafts in advice.items() for dr in drafts}
                   | set(map(tuple, ws[["task", "draft"]].dropna().drop_duplicates().values)))
    if not pairs:
        return head + "_No warm-start drafts in this run._"
    rows, figs = [], []
    for task, draft in pairs:
        entry = advice.get(task, {}).get(draft)
        t0 = advised_t0(entry)
        best = _chosen(rows_in, task, draft)
        run_t0 = sorted(ws.loc[(ws["task"] == task) & (ws["draft"] == draft), "t0"].dropna()
                        .unique())
        pick = ("not computed (run predates the advisor)" if entry is None else fmt(t0)
                if t0 is not None else "none (distinguishable at every t)")
        sweep = "; ".join(f"{fmt(r['t0'])} ({r['title']}: {r['verdict']})" for r in best) \
            or "no warm-start row"
        rows.append([task, draft, pick, sweep, ", ".join(fmt(t) for t in run_t0) or "–",
                     "–" if entry is None else f"{fmt(entry.get('threshold'), 3)} "
                     f"(n={fmt_int(entry.get('n_test'))})"])
        metric = primary_metric(d, task, primary)
        frame = d[(d["task"] == task) & (d["metric"] == metric)]
        path = figures.t0_sweep(frame, draft, out / "figures" /
                                f"{slug(task)}_{slug(draft)}_t0_sweep.png",
                                f"{task}, {draft} draft: {metric} vs t0", entry,
                                best[0]["t0"] if best else None)
        if path is not None:
            figs.append(f"### t0 sweep: {task}, {draft} draft\n\n"
                        f"![t0 sweep {task} {draft}]({path.relative_to(out).as_posix()})")
    return head + md_table(["task", "draft", "advisor's t0", "headline's t0 (verdict)",
                            "t0 run", "accuracy threshold"], rows) + (
        "\n\n" + "\n\n".join(figs) if figs else "")


def evidence_sections(run_dir: str | Path, df: pd.DataFrame, primary: Mapping[str, str],
                      out: str | Path, rows: list[dict[str, Any]]) -> str:
    """The t0 advisor beside the headline's choices, and per-seed values, as Markdown
    (figures under out/figures, per_seed.csv in out)."""
    run_dir, out = Path(run_dir), Path(out)
    return "\n\n".join([_advisor_section(run_dir, df, primary, rows, out),
                        _per_seed_section(df, primary, out)])
