"""The one style of the publication figures (harness.report.publish): sizes, the colour of
each role and its shades, markers, line styles, and how a figure is saved (every format, beside
the CSV of its plotted data)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.records import atomic  # noqa: E402
from harness.report.format import missing  # noqa: E402

DPI = 300
ONE_COLUMN, TWO_COLUMN = 3.25, 6.75  # inches: one column / full width of a two-column paper
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
CSV_COLUMNS = ["series", "task", "metric", "method", "variant", "draft", "label", "n_steps", "t0",
               "x", "mean", "ci_low", "ci_high", "n_seeds"]


def set_style() -> None:
    """The one style of every publication figure: seaborn paper theme, fixed font sizes."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", rc={
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
        "ytick.labelsize": 7, "legend.fontsize": 6.5, "legend.title_fontsize": 7,
        "lines.linewidth": 1.1, "lines.markersize": 3.5, "axes.linewidth": 0.6,
        "grid.linewidth": 0.4, "pdf.fonttype": 42, "ps.fonttype": 42,
        "svg.hashsalt": "wsfm-bench", "savefig.bbox": "tight", "savefig.pad_inches": 0.02})


def save_figure(fig: plt.Figure, base: Path, formats: Sequence[str],
                data: pd.DataFrame) -> list[Path]:
    """Write the figure in each format and its plotted data as base.csv, atomically."""
    out = []
    meta = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta.get(fmt))
        out.append(atomic.write_bytes(base.with_suffix(f".{fmt}"), buf.getvalue()))
    plt.close(fig)
    out.append(atomic.write_text(base.with_suffix(".csv"), data.to_csv(index=False)))
    return out


def legend_below(fig: plt.Figure, handles: list[Any], ncol: int = 2) -> None:
    """One figure legend under the axes (figures use the constrained layout)."""
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False,
                   handlelength=2.2, columnspacing=1.2)


def dashes(drafts: Iterable[Any]) -> dict[Any, Any]:
    """Line style per draft (solid, dashed, dash-dot, ...), so drafts differ in grey too."""
    styles = ["-", "--", "-.", (0, (5, 1, 1, 1, 1, 1))]
    names = sorted({str(d) for d in drafts if not missing(d)})
    return {d: styles[i % len(styles)] for i, d in enumerate(names)}


def ylabel(metric: str, hib: bool) -> str:
    return f"{metric} ({'higher' if hib else 'lower'} is better)"
