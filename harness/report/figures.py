"""Report figures (seaborn + matplotlib, Agg backend): quality vs cost, speed-up vs t0, samples.

Each function writes one PNG, closes its figure and returns the path, or returns None when
there is nothing to draw (the report then says so instead of showing an empty plot).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from harness.analysis.speedup import ceil_speedup  # noqa: E402
from harness.report.colours import draft_hues, log_if_wide, palette  # noqa: E402
from harness.roles import Role  # noqa: E402

DPI = 110


def label(method: object, variant: object) -> str:
    """The legend label of a method variant: "ws-fm good t0=0.9 ..."."""
    v = "" if variant is None or (isinstance(variant, float) and math.isnan(variant)) else variant
    return f"{method} {v}".strip()


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _BACKGROUND:
        _write(fig, path)
        return path
    pool, pending = _BACKGROUND[-1]  # drawn by the pool of ``drawn_in_parallel``
    pending.append(pool.submit(_draw, pickle.dumps(fig), path))
    plt.close(fig)
    return path


def _write(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _draw(figure: bytes, path: Path) -> None:
    _write(pickle.loads(figure), path)


_BACKGROUND: list[tuple[ProcessPoolExecutor, list[Future]]] = []


@contextmanager
def drawn_in_parallel(workers: int | None = None) -> Iterator[None]:
    """Inside, the figures above are rasterised by a pool of forked processes (drawing is most
    of a report's time, and figures are independent); on leaving, every PNG is written (the
    first failure raised). Where processes cannot be forked, or Ray runs in this process
    (whose threads a fork must not copy), they are drawn in turn."""
    workers = workers or min(2, os.cpu_count() or 1)
    ray = sys.modules.get("ray")
    if (workers < 2 or "fork" not in multiprocessing.get_all_start_methods()
            or (ray is not None and ray.is_initialized())):
        yield
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    pending: list[Future] = []
    _BACKGROUND.append((pool, pending))
    try:
        yield
        for future in pending:
            future.result()
    finally:
        _BACKGROUND.pop()
        pool.shutdown(wait=True, cancel_futures=True)


def quality_vs_cost(
    frame: pd.DataFrame, x: str, path: Path, title: str, xlabel: str, ylabel: str
) -> Path | None:
    """Lines of ``value`` against the mean of column ``x`` per (variant, N), 95% CI bands.

    ``frame`` holds one metric of one task. The drafts alone (in their warm starts' colour)
    and the data floor (black) are dashed horizontal lines; a metric spanning more than ten
    times is drawn on a log axis.
    """
    d = frame.copy()
    d["label"] = [label(m, v) for m, v in zip(d["method"], d["variant"], strict=True)]
    level = d["role"].isin([Role.FLOOR, Role.DATA])
    drafts = d[level & np.isfinite(d["value"])]
    curves = d[~level & np.isfinite(d["value"])].copy()
    curves = curves[np.isfinite(curves[x]) & (curves[x] > 0)]
    if curves.empty and drafts.empty:
        return None
    colours = palette(zip(d["role"], d["draft"], d["label"], strict=True))
    # Seeds differ slightly in time (and could in NFE): plot each setting at its mean cost.
    curves["cost"] = curves.groupby(["label", "n_steps"], dropna=False)[x].transform("mean")
    fig, ax = plt.subplots(figsize=(11, 5.5))
    handles, labels = [], []
    if not curves.empty:
        sns.lineplot(data=curves, x="cost", y="value", hue="label", style="label",
                     palette={k: colours[k] for k in curves["label"].unique()},
                     markers=True, dashes=False, errorbar=("ci", 95), seed=0, ax=ax)
        ax.set_xscale("log")
        legend = ax.get_legend()
        if legend is not None:
            handles = list(legend.legend_handles)
            labels = [t.get_text() for t in legend.texts]
            legend.remove()
    for name, g in drafts.groupby("label"):
        line = ax.axhline(g["value"].mean(), ls="--", lw=1.5, color=colours[name])
        handles.append(line)
        labels.append("data floor (mean)" if (g["role"] == Role.DATA).all()
                      else f"{g['draft'].iloc[0]} draft alone (mean)")
    log_if_wide(ax, d["value"])
    if handles:
        ax.legend(handles, labels, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7,
                  frameon=False)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def speedup_vs_t0(cells: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Measured NFE and wall-clock speed-ups of warm-start cells against t0, with the bounds.

    Left: measured NFE speed-up, 1/(1-t0) and the ceil-rounded N/ceil((1-t0)N) per N.
    Right: measured wall-clock speed-up (points) beside each cell's bound S_wall (bars).
    """
    d = cells[np.isfinite(cells["t0"]) & (cells["t0"] > 0)]
    if d.empty:
        return None
    ns = sorted(int(n) for n in d["n_steps"].dropna().unique())
    colours = dict(zip(ns, sns.color_palette("viridis", max(len(ns), 1)), strict=False))
    methods = sorted(d["method"].unique())
    markers = dict(zip(methods, ["o", "s", "^", "D", "v", "P"] * len(methods), strict=False))
    tmax = min(0.995, float(d["t0"].max()) + 0.05)
    grid = np.linspace(0.0, tmax, 2000)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax in (left, right):
        ax.plot(grid, 1 / (1 - grid), "k--", lw=1.2, label="1/(1-t0)")
    for n in ns:
        bound = [ceil_speedup(t, n) for t in grid]
        left.plot(grid, bound, color=colours[n], lw=1, alpha=0.7)
    left.plot([], [], color="gray", lw=1, label="N/ceil((1-t0)N), per N")
    width = 0.006  # points of different N side by side at the same t0
    for (method, n), g in d.groupby(["method", "n_steps"]):
        colour, marker = colours.get(int(n), "gray"), markers.get(method, "^")
        t = g["t0"] + (ns.index(int(n)) - (len(ns) - 1) / 2) * width
        style = dict(color=colour, marker=marker, s=40, edgecolor="black", linewidth=0.5,
                     zorder=3)
        left.scatter(t, g["nfe_speedup"], **style)
        right.scatter(t, g["wall_speedup"], **style)
        right.scatter(t, g["wall_bound"], color=colour, marker="_", s=250, zorder=2)
    keys = [Line2D([], [], color=colours[n], lw=6, label=f"N={n}") for n in ns]
    keys += [Line2D([], [], ls="", marker=markers.get(m, "^"), color="gray", mec="black",
                    label=f"{m} (measured)") for m in sorted(d["method"].unique())]
    right_keys = keys + [Line2D([], [], ls="", marker="_", ms=14, mew=2, color="gray",
                                label="bound S_wall of the cell")]
    left.set(title="NFE speed-up (measured)", xlabel="t0", ylabel="speed-up (x)")
    right.set(title="wall-clock speed-up (measured vs bound)", xlabel="t0")
    for ax, extra in ((left, keys), (right, right_keys)):
        ax.grid(True, alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + extra, fontsize=7, loc="upper left", frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def sample_scatter(panels: Sequence[tuple[str, np.ndarray]], path: Path, title: str) -> Path | None:
    """One scatter panel per (title, (n, 2) samples), on shared axes limits."""
    panels = [(t, np.asarray(a, float)) for t, a in panels]
    panels = [(t, a[np.isfinite(a).all(axis=1)]) for t, a in panels if a.ndim == 2
              and a.shape[1] >= 2 and len(a)]
    if not panels:
        return None
    pts = np.concatenate([a[:, :2] for _, a in panels])
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    pad = 0.1 * (hi - lo) + 1e-9
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), squeeze=False)
    for ax, (name, a) in zip(axes[0], panels, strict=True):
        ax.scatter(a[:, 0], a[:, 1], s=3, alpha=0.5, linewidths=0)
        ax.set(xlim=(lo[0] - pad[0], hi[0] + pad[0]), ylim=(lo[1] - pad[1], hi[1] + pad[1]))
        ax.set_title(name, fontsize=8)
        ax.set_aspect("equal", adjustable="box")
        ax.tick_params(labelsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def _mosaic(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """(n, C, H, W) in [-1, 1] -> one (rows*H, columns*W[, C]) image in [0, 1], 1-px gaps."""
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    out = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1, c))
    for i, img in enumerate(np.clip((images + 1) / 2, 0, 1)):
        r, col = divmod(i, columns)
        out[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = img.transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def sample_grid(panels: Sequence[tuple[str, np.ndarray]], path: Path, title: str,
                n: int = 64) -> Path | None:
    """One panel per (title, (n, C, H, W) images): the first ``n`` images as a mosaic."""
    panels = [(t, np.asarray(a, float)[:n]) for t, a in panels if np.asarray(a).ndim == 4
              and len(a)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
    for ax, (name, images) in zip(axes[0], panels, strict=True):
        ax.imshow(_mosaic(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def t0_sweep(frame: pd.DataFrame, draft: str, path: Path, title: str,
             advice: dict | None = None, best_t0: float | None = None) -> Path | None:
    """One task's primary metric against t0 for one draft, beside the t0 advisor's evidence.

    Left: the warm starts' means with 95% t-intervals over seeds, one line per (method,
    start, init, solver, N); full FM's best configuration (the reference methods', any solver)
    as a band with its interval; the advisor's t0 (dashed) and the sweep's best t0 (dotted).
    Right: the advisor's held-out classifier accuracy against t with its threshold.
    ``frame``: tidy rows of one task and metric (harness.records.store.load_run); ``advice``:
    that draft's advisor.json entry.
    """
    from harness.analysis.stats import mean_ci

    warm = frame[(frame["role"] == Role.WARM_START) & (frame["draft"] == draft)
                 & np.isfinite(frame["t0"]) & np.isfinite(frame["value"])]
    if warm.empty and not advice:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    full = frame[frame["role"] == Role.REFERENCE]
    hib = bool(pd.to_numeric(frame["higher_is_better"], errors="coerce").mean() >= 0.5)
    stats = [(f"{v}, N={n:g}", *mean_ci(g["value"]))
             for (v, n), g in full.groupby(["variant", "n_steps"])]
    stats = [s for s in stats if np.isfinite(s[1])]
    if stats:
        name, m, lo, hi = (max if hib else min)(stats, key=lambda s: s[1])
        left.axhspan(lo, hi, color="tab:blue", alpha=0.15, lw=0)
        left.axhline(m, color="tab:blue", lw=1.2, label=f"full FM best ({name}), 95% CI")
    keys = ["method", "start", "init", "solver", "n_steps"]
    first = min(warm["method"], default=None)  # the other warm starts dotted
    for i, (key, g) in enumerate(warm.groupby(keys, dropna=False, sort=True)):
        pts = sorted((t, *mean_ci(h["value"])) for t, h in g.groupby("t0"))
        t, m, lo, hi = (np.array(v, float) for v in zip(*pts, strict=True))
        name = " ".join(str(v) if not isinstance(v, float) else f"N={v:g}" for v in key
                        if v is not None and not (isinstance(v, float) and math.isnan(v)))
        left.errorbar(t, m, yerr=[m - lo, hi - m], marker="os^Dv"[i % 5], capsize=2,
                      ls="-" if key[0] == first else ":", label=name)
    t_adv = (advice or {}).get("t0")
    for ax in (left, right):
        if t_adv is not None:
            ax.axvline(t_adv, color="tab:red", ls="--", lw=1.2, label=f"advisor t0={t_adv:g}")
        if best_t0 is not None and np.isfinite(best_t0):
            ax.axvline(best_t0, color="tab:green", ls=":", lw=1.5,
                       label=f"sweep's best t0={best_t0:g}")
    if advice and advice.get("accuracy"):
        right.plot(advice["grid"], advice["accuracy"], "o-", color="black", ms=3,
                   label="held-out accuracy (noised draft vs noised data)")
        right.axhline(advice["threshold"], color="gray", ls="-.", lw=1,
                      label=f"threshold {advice['threshold']:.3f}")
        right.axhline(0.5, color="gray", lw=0.6)
    left.set(title=title, xlabel="t0", xlim=(0, 1),
             ylabel=f"metric ({'higher' if hib else 'lower'} is better)")
    right.set(title="t0 advisor: classifier two-sample test", xlabel="t",
              ylabel="accuracy", xlim=(0, 1))
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    return _save(fig, path)


def frontier(frame: pd.DataFrame, rows: Sequence[dict], path: Path, title: str) -> Path | None:
    """The headline's figure for one task: its primary metric against wall-clock time per
    batch (means over seeds), full FM's configurations as one line per solver (the reference
    starred, its margin shaded), the data floor, each draft alone and every warm-start setting
    from it in the draft's colour (the chosen one of each headline row ringed)."""
    d = frame[np.isfinite(frame["value"]) & np.isfinite(frame["time_s"])]
    if d.empty:
        return None
    means = d.groupby(["method", "title", "variant", "n_steps", "draft", "role"],
                      dropna=False)[["value", "time_s"]].mean().reset_index()
    hues = draft_hues(means.loc[means["role"].isin([Role.FLOOR, Role.WARM_START]), "draft"])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    full = means[means["role"] == Role.REFERENCE].sort_values("n_steps")
    for (name, variant), g in full.groupby(["title", "variant"]):
        ax.plot(g["time_s"], g["value"], "-o", ms=3, lw=1.2, label=f"{name} {variant}")
    for _, g in means[means["role"] == Role.DATA].groupby("method"):
        ax.axhline(float(g["value"].mean()), color="black", ls=":", lw=1.2, label="data floor")
    ref = rows[0].get("reference") if rows else None
    if ref:
        r = full[(full["method"] == ref["method"]) & (full["variant"] == ref["variant"])
                 & (full["n_steps"] == ref["n_budget"])]
        if len(r):
            ax.plot(r["time_s"], r["value"], "*", ms=15, color="black", label="reference")
            margin = rows[0].get("margin") or 0.0
            best = float(r["value"].iloc[0])
            ax.axhspan(best - margin, best + margin, color="grey", alpha=0.15,
                       label="reference ± margin")
    for draft, g in means[means["role"] == Role.FLOOR].groupby("draft"):
        ax.plot(g["time_s"], g["value"], "D", ms=8, mfc="none", color=hues[str(draft)],
                label=f"{draft} draft alone")
    warm = means[means["role"] == Role.WARM_START]
    for i, ((method, name, draft), g) in enumerate(warm.groupby(["method", "title", "draft"])):
        pts = ax.scatter(g["time_s"], g["value"], s=14, alpha=0.7, color=hues[str(draft)],
                         marker="os^vP"[i % 5], label=f"{name} {draft}")
        for row in rows:
            if (row["method"], row["draft"]) == (method, draft) and row["variant"] is not None:
                c = g[(g["variant"] == row["variant"]) & (g["n_steps"] == row["n_budget"])]
                ax.scatter(c["time_s"], c["value"], s=110, facecolors="none",
                           edgecolors=pts.get_facecolor()[:1], linewidths=1.8)
    ax.set_xscale("log")
    log_if_wide(ax, means["value"])
    ax.set(title=title, xlabel="wall-clock seconds per batch (draft included)",
           ylabel=str(d["metric"].iloc[0]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7, frameon=False)
    return _save(fig, path)
