"""Publication figures and LaTeX tables from a finished run folder (stored results only).

``write_figures(run_dir)`` reads the run through harness.records.store, summarises seeds with
harness.analysis.stats and writes, into run_dir/figures/ (or ``out_dir``), per task:

    <task>_metric_vs_nfe    primary metric vs measured NFE (mean, 95% CI over seeds)
    <task>_metric_vs_time   primary metric vs wall-clock time per batch
    <task>_speedup_vs_t0    measured NFE / wall-clock speed-ups with 1/(1-t0), N/ceil((1-t0)N)
    <task>_t0_sweep         WS-FM primary metric vs t0 per draft, full FM's best as a band
    <task>_t0_sweep_<draft> the same for one draft, with the t0 advisor's pick (advisor.json)
    <task>_main.tex         main comparison table

each figure as PDF, SVG and PNG (300 dpi) beside a CSV of exactly the plotted data, plus
headline.tex, bound_check.tex and index.md. Nothing is recomputed from models.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from harness.analysis.evidence import headline  # noqa: E402
from harness.analysis.speedup import ceil_speedup  # noqa: E402
from harness.analysis.stats import (  # noqa: E402
    higher_is_better,
    mean_ci,
    primary_metric,
    summarise,
)
from harness.errors import ConfigError  # noqa: E402
from harness.records import atomic  # noqa: E402
from harness.records.status import RunStatus  # noqa: E402
from harness.records.store import (  # noqa: E402
    advised_t0,
    read_advice,
    read_manifest,
)
from harness.report.colours import ROLE_BASE, log_if_wide, palette  # noqa: E402
from harness.report.format import display, missing, ordered, slug  # noqa: E402
from harness.report.latex import bound_check_tex, headline_tex, main_table  # noqa: E402
from harness.report.loading import load_for_report  # noqa: E402
from harness.report.paper_style import (  # noqa: E402
    CSV_COLUMNS,
    DPI,
    MARKERS,
    ONE_COLUMN,
    TWO_COLUMN,
    dashes,
    legend_below,
    save_figure,
    set_style,
    ylabel,
)
from harness.roles import Role  # noqa: E402

FORMATS = ("pdf", "svg", "png")
def quality_figure(summ: pd.DataFrame, task: str, metric: str, x: str, base: Path,
                   formats: Sequence[str]) -> list[Path]:
    """Primary metric vs ``x`` ("nfe_measured" or "time_s"): one curve per (method, variant)
    over N with 95% CI error bars; the drafts alone as dashed horizontal lines with a CI band."""
    d = summ[(summ["task"] == task) & (summ["metric"] == metric) & np.isfinite(summ["mean"])]
    scale = 1000.0 if x == "time_s" else 1.0
    floor = d["role"].isin([Role.FLOOR, Role.DATA])  # horizontal lines: no cost to plot at
    drafts = ordered(d[floor])
    curves = ordered(d[~floor & np.isfinite(d[x]) & (d[x] > 0)])
    if curves.empty and drafts.empty:
        return []
    rows = pd.concat([curves.assign(series="curve"), drafts.assign(series="draft alone")])
    rows = rows.assign(label=[display(t, v) for t, v in zip(rows["title"], rows["variant"],
                                                             strict=True)],
                       x=np.where(rows["series"] == "curve", rows[x] * scale, np.nan))
    colours = palette(zip(rows["role"], rows["draft"], rows["label"], strict=True))
    dash = dashes(curves["draft"])
    fig, ax = plt.subplots(figsize=(TWO_COLUMN, 4.2), layout="constrained")
    handles = []
    for i, (lab, g) in enumerate(rows[rows["series"] == "curve"].groupby("label", sort=False)):
        g = g.sort_values("x")
        err = np.nan_to_num([g["mean"] - g["ci_low"], g["ci_high"] - g["mean"]])
        h = ax.errorbar(g["x"], g["mean"], yerr=err, color=colours[lab], capsize=1.5,
                        marker=MARKERS[i % len(MARKERS)], label=lab, elinewidth=0.7,
                        ls=dash.get(str(g["draft"].iloc[0]), "-"))
        handles.append(h)
    for r in rows[rows["series"] == "draft alone"].itertuples():
        c = colours[r.label]
        name = "data floor" if r.role == Role.DATA else f"{r.label} (draft)"
        handles.append(ax.axhline(r.mean, ls=":", lw=1.3, color=c, label=name))
        if np.isfinite(r.ci_low) and r.ci_high > r.ci_low:
            ax.axhspan(r.ci_low, r.ci_high, color=c, alpha=0.12, lw=0)
    ax.set_xscale("log")
    log_if_wide(ax, rows["mean"])
    ax.set(xlabel="NFE (measured)" if x == "nfe_measured" else "time per batch (ms)",
           ylabel=ylabel(metric, higher_is_better(d)), title=task)
    legend_below(fig, handles, ncol=3)
    return save_figure(fig, base, formats, rows.assign(task=task, metric=metric)[CSV_COLUMNS])


def speedup_figure(cells: pd.DataFrame, task: str, base: Path,
                   formats: Sequence[str]) -> list[Path]:
    """Measured NFE (left) and wall-clock (right) speed-ups of warm starts against t0, mean
    and 95% CI over seeds per (method, variant, N); 1/(1-t0), N/ceil((1-t0)N) and S_wall."""
    w = cells[(cells["task"] == task) & (cells["role"] == Role.WARM_START) & (cells["t0"] > 0)]
    if w.empty:
        return []
    rows = []
    for (method, variant, n), g in w.groupby(["method", "variant", "n_steps"], sort=True):
        common = {"task": task, "method": method, "variant": variant, "n_steps": n,
                  "draft": g["draft"].iloc[0], "t0": g["t0"].iloc[0],
                  "label": display(g["title"].iloc[0], variant)}
        for series, col in (("nfe measured", "nfe_speedup"), ("wall-clock bound S_wall",
                            "wall_bound"), ("wall-clock measured", "wall_speedup")):
            mean, low, high = mean_ci(g[col])
            rows.append({**common, "series": series, "mean": mean, "ci_low": low,
                         "ci_high": high, "n_seeds": int(np.isfinite(g[col]).sum())})
    ns = sorted(int(n) for n in w["n_steps"].dropna().unique())
    grid = np.linspace(0.0, min(0.99, float(w["t0"].max()) + 0.05), 200)
    rows += [{"task": task, "series": "1/(1-t0)", "t0": t, "mean": 1 / (1 - t)} for t in grid]
    rows += [{"task": task, "series": "N/ceil((1-t0)N)", "n_steps": n, "t0": t,
              "mean": ceil_speedup(t, n)} for n in ns for t in grid]
    data = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    meas = data[data["method"].notna()]
    colours = palette((Role.WARM_START, dr, lab) for dr, lab in zip(
        meas["draft"], meas["label"], strict=True))
    marker = {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(ns)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(TWO_COLUMN, 3.8), sharey=True,
                                      layout="constrained")
    ideal = data[data["series"] == "1/(1-t0)"]
    for ax in (left, right):
        ax.plot(ideal["t0"], ideal["mean"], "k--", lw=1)
    styles = ["-", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1))]
    for i, n in enumerate(ns):
        b = data[(data["series"] == "N/ceil((1-t0)N)") & (data["n_steps"] == n)]
        left.plot(b["t0"], b["mean"], color="0.45", lw=0.8, ls=styles[i % len(styles)])
    for r in meas.itertuples():
        ax = left if r.series == "nfe measured" else right
        t = r.t0 + (ns.index(int(r.n_steps)) - (len(ns) - 1) / 2) * 0.006  # N side by side
        if r.series.endswith("S_wall"):
            ax.scatter([t], [r.mean], color=colours[r.label], marker="_", s=60, zorder=2)
            continue
        err = np.nan_to_num([[r.mean - r.ci_low], [r.ci_high - r.mean]])
        ax.errorbar([t], [r.mean], yerr=err, color=colours[r.label], ls="none", zorder=3,
                    marker=marker[int(r.n_steps)], mec="black", mew=0.3, elinewidth=0.7)
    left.set(title="NFE speed-up", xlabel="$t_0$", ylabel="speed-up (x)")
    right.set(title="wall-clock speed-up", xlabel="$t_0$")
    handles = [Line2D([], [], color=c, marker="o", ls="none", label=lab)
               for lab, c in colours.items()]
    handles += [Line2D([], [], color="0.45", marker=marker[n], ls=styles[i % len(styles)],
                       label=f"N={n}: N/ceil((1-t0)N)") for i, n in enumerate(ns)]
    handles += [Line2D([], [], color="k", ls="--", label="1/(1-t0)"),
                Line2D([], [], color="0.3", marker="_", ms=8, ls="none",
                       label="S_wall bound (mean)")]
    fig.suptitle(task)
    legend_below(fig, handles, ncol=3)
    return save_figure(fig, base, formats, data)


def _full_best(summ: pd.DataFrame, task: str, metric: str) -> pd.Series | None:
    """Full FM's best mean (over the reference methods' solvers and N) with its interval."""
    f = summ[(summ["task"] == task) & (summ["metric"] == metric)
             & (summ["role"] == Role.REFERENCE) & np.isfinite(summ["mean"])]
    if f.empty:
        return None
    return f.loc[f["mean"].idxmax() if higher_is_better(f) else f["mean"].idxmin()]


def sweep_figure(summ: pd.DataFrame, task: str, metric: str, base: Path,
                 formats: Sequence[str], draft: str | None = None,
                 advised: float | None = None) -> list[Path]:
    """The warm starts' primary metric vs t0, one panel per N, one line per method, draft (and
    start/init/solver setting), 95% CI error bars; full FM's best mean and interval as a band.
    With ``draft``: that draft only, and the t0 advisor's pick ``advised`` as a vertical
    line."""
    d = summ[(summ["task"] == task) & (summ["metric"] == metric)
             & (summ["role"] == Role.WARM_START) & np.isfinite(summ["mean"])
             & np.isfinite(summ["t0"])]
    if draft is not None:
        d = d[d["draft"] == draft]
    if d.empty:
        return []
    keys = ["title", "draft", "start", "init", "solver"]
    d = d.assign(label=[" ".join(str(v) for v in vals if not missing(v))
                        for vals in d[keys].itertuples(index=False)])
    rows = d.assign(series="warm start", x=d["t0"]).sort_values(["n_steps", "label", "t0"])
    best = _full_best(summ, task, metric)
    if best is not None:
        label = f"Full FM best ({best['variant']}, N={best['n_steps']:g}), 95% CI"
        rows = pd.concat([rows, pd.DataFrame([{**best.to_dict(), "series": "full FM best",
                                               "label": label, "t0": np.nan}])])
    ns = sorted(d["n_steps"].unique())
    cols = min(len(ns), 4)
    nrows = math.ceil(len(ns) / cols)
    fig, axes = plt.subplots(nrows, cols, sharey=True, squeeze=False, layout="constrained",
                             figsize=(ONE_COLUMN if cols == 1 else TWO_COLUMN, 1.4 + 1.9 * nrows))
    dash = dashes(d["draft"])
    colours = palette((Role.WARM_START, dr, lab) for lab, dr in sorted(
        zip(d["label"], d["draft"], strict=True)))
    handles: dict[str, Any] = {}
    for ax, n in zip(axes.flat, ns, strict=False):
        if best is not None:
            c = ROLE_BASE[Role.REFERENCE]
            ax.axhspan(best["ci_low"], best["ci_high"], color=c, alpha=0.18, lw=0)
            handles[label] = ax.axhline(best["mean"], color=c, lw=1, label=label)
        sel = rows[(rows["series"] == "warm start") & (rows["n_steps"] == n)]
        for i, (lab, g) in enumerate(sel.groupby("label", sort=True)):
            err = np.nan_to_num([g["mean"] - g["ci_low"], g["ci_high"] - g["mean"]])
            handles[lab] = ax.errorbar(g["t0"], g["mean"], yerr=err, color=colours[lab],
                                       marker=MARKERS[i % len(MARKERS)], capsize=1.5,
                                       elinewidth=0.7, label=lab,
                                       ls=dash.get(str(g["draft"].iloc[0]), "-"))
        if advised is not None:
            handles["advisor"] = ax.axvline(advised, color="0.25", ls="--", lw=0.8,
                                            label=f"t0 advisor: {advised:g}")
        ax.set(title=f"N = {n:g}", xlabel="$t_0$")
    if advised is not None:
        rows = pd.concat([rows, pd.DataFrame([{"series": "advisor t0", "t0": advised,
                                               "draft": draft, "label": "t0 advisor"}])])
    for ax in axes.flat[len(ns):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel(ylabel(metric, higher_is_better(d)))
    fig.suptitle(task if draft is None else f"{task}, {draft} draft")
    legend_below(fig, list(handles.values()), ncol=2)
    return save_figure(fig, base, formats, rows.assign(task=task, metric=metric)[CSV_COLUMNS])


# ---------------------------------------------------------------------------------- tables

def write_figures(run_dir: str | Path, out_dir: str | Path | None = None,
                  formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write every figure (in ``formats``, each with its CSV), the .tex tables and index.md
    into ``out_dir`` (default run_dir/figures); return the written paths.

    The folder is drawn anew and swapped in whole when complete (an interrupted or failing
    call leaves the previous one as it was), so ``out_dir`` must be new, empty or an earlier
    output of this command. Raises harness.errors.RunDirError when ``run_dir`` is not a run
    folder or has no finished cell."""
    run_dir = Path(run_dir)
    target = Path(out_dir) if out_dir is not None else run_dir / "figures"
    _check_out(target)
    run = load_for_report(run_dir, "draw figures or tables of")
    manifest, df, cells, status = run.manifest, run.df, run.cells, run.status
    with atomic.staged_dir(target) as out:
        written = _task_figures(run_dir, manifest, df, cells, out, formats)
        rows, _ = headline(df, manifest) if not df.empty else ([], {})
        written.append(atomic.write_text(out / "headline.tex", headline_tex(rows)))
        written.append(atomic.write_text(out / "bound_check.tex", bound_check_tex(cells)))
        lines = [f"{INDEX_TITLE}{manifest.get('run_id', run_dir.name)}", ""]
        lines += [f"**{status.line()}**", ""] if not status.complete else []
        lines += [f"Figures as {', '.join(f.upper() for f in formats)} (PNG at {DPI} dpi), "
                  "each beside a CSV of exactly the plotted data; the LaTeX tables need "
                  "booktabs.", ""]
        lines += [f"- [{p.name}]({p.name})" for p in written]
        written.append(atomic.write_text(out / "index.md", "\n".join(lines) + "\n"))
        written = [target / p.relative_to(out) for p in written]
    return written


INDEX_TITLE = "# Publication figures: "


def _check_out(target: Path) -> None:
    """Refuse an output folder holding anything but an earlier output of this command: the
    whole folder is replaced."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target} is a file, not a folder; give a new folder")
    index = target / "index.md"
    if target.is_dir() and any(target.iterdir()) and not (
            index.is_file() and index.read_text(errors="replace").startswith(INDEX_TITLE)):
        raise ConfigError(f"--out {target} holds files `wsfm-bench figures` did not write (no "
                          "index.md of its own); the folder is replaced whole, so give a new or "
                          "empty folder")


def _task_figures(run_dir: Path, manifest: dict[str, Any], df: pd.DataFrame,
                  cells: pd.DataFrame, out: Path, formats: Sequence[str]) -> list[Path]:
    """Each task's figures and main table, written under ``out``."""
    primary = manifest.get("primary_metrics") or {}
    summ = summarise(df)
    written: list[Path] = []
    with matplotlib.rc_context():
        set_style()
        for task in sorted(df["task"].dropna().unique()):
            metric = primary_metric(df, task, primary)
            s = slug(task)
            if metric is not None:
                written += quality_figure(summ, task, metric, "nfe_measured",
                                          out / f"{s}_metric_vs_nfe", formats)
                written += quality_figure(summ, task, metric, "time_s",
                                          out / f"{s}_metric_vs_time", formats)
            written += speedup_figure(cells, task, out / f"{s}_speedup_vs_t0", formats)
            if metric is not None:
                written += sweep_figure(summ, task, metric, out / f"{s}_t0_sweep", formats)
                advice = read_advice(run_dir).get(task, {})
                ws = summ[(summ["task"] == task) & (summ["role"] == Role.WARM_START)]
                for draft in sorted(set(ws["draft"].dropna()) | set(advice)):
                    written += sweep_figure(summ, task, metric, out / f"{s}_t0_sweep_{slug(draft)}",
                                            formats, draft, advised_t0(advice.get(draft)))
                written.append(atomic.write_text(out / f"{s}_main.tex",
                                                 main_table(summ, cells, task, metric)))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of `publish`: RUN_DIR, --out DIR, --formats pdf,svg,png."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder under results/")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: RUN_DIR/figures)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help="comma-separated figure formats among pdf,svg,png (default: all)")


def run(args: argparse.Namespace) -> int:
    """Write the publication figures and tables, print each written path; return 0."""
    formats = [f.strip().lower() for f in str(args.formats).split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ConfigError(f"--formats {args.formats!r}: choose among {','.join(FORMATS)}")
    for path in write_figures(args.run_dir, args.out, formats):
        print(path)
    status = RunStatus.of(args.run_dir, read_manifest(args.run_dir))
    if not status.complete:
        print(f"wsfm-bench: warning: {status.line()}", file=sys.stderr)
    return 0
