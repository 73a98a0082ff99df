"""The report's "Equal wall-clock" section: every method's quality at the same time budgets.

Built from the run's wall-clock cells only (harness.run.budgets; ``read_cells(time_budgets=True)``);
the rest of the report is built from the NFE-budget cells. Per task: a table of method
variant x time budget (the primary metric's mean and 95% interval over seeds, the chosen N
and NFE, the measured time, overruns, and "budget too small (needs X s)" where even the
cheapest setting does not fit), a figure of the metric and the chosen NFE against the
budget, and the plotted data as report/equal_wall_clock.csv.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.analysis.stats import flag  # noqa: E402
from harness.records import atomic  # noqa: E402
from harness.records.store import BUDGET_OK, BUDGET_TOO_SMALL, read_cells  # noqa: E402
from harness.report.format import fmt_ci, md_table, slug  # noqa: E402
from harness.roles import role_rank  # noqa: E402

TITLE = "Equal wall-clock"
# The tidy columns a wall-clock cell's row takes from its record, then its budget section's.
FIELDS = ["task", "method", "role", "variant", "seed", "n_steps", "k_steps", "nfe_measured",
          "nfe_ok", "cell_id"]
BUDGET_FIELDS = ["time_budget_s", "time_batch", "status", "predicted_time_s", "actual_time_s",
                 "actual_time_spread_s", "overrun_s", "overrun", "min_time_s", "capped", "n_max"]


def budget_frame(run_dir: str | Path, primary: Mapping[str, str]) -> pd.DataFrame:
    """One row per wall-clock cell, with its task's primary metric as ``metric``/``value``."""
    rows = []
    for record in read_cells(run_dir, time_budgets=True):
        flat = record.flat()
        row = {k: flat[k] for k in FIELDS}
        row.update({k: getattr(record.budget, k) for k in BUDGET_FIELDS})
        names = list(record.metrics)
        metric = primary.get(record.identity.task) or (names[0] if names else None)
        value = record.metrics.get(metric)
        row.update(metric=metric, value=None if value is None else value.value,
                   higher_is_better=None if value is None else value.higher_is_better)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*FIELDS, *BUDGET_FIELDS, "metric", "value",
                                        "higher_is_better"])
    for col in ("time_budget_s", "n_steps", "nfe_measured", "predicted_time_s", "actual_time_s",
                "actual_time_spread_s", "overrun_s", "min_time_s", "value", "seed", "n_max"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def _seconds(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.3g} s"


def _span(values: pd.Series) -> str:
    """'12', or '10–14' when seeds chose differently."""
    v = values.dropna()
    if v.empty:
        return "–"
    low, high = int(v.min()), int(v.max())
    return f"{low}" if low == high else f"{low}–{high}"


def _entry(g: pd.DataFrame) -> str:
    """One table entry: the seeds of one method variant at one budget."""
    if g.empty:
        return "–"
    ok = g[g["status"] == BUDGET_OK]
    small = g[g["status"] == BUDGET_TOO_SMALL]
    if ok.empty:
        return f"budget too small (needs {_seconds(float(small['min_time_s'].max()))})"
    values = pd.to_numeric(ok["value"], errors="coerce")
    quality = (f"**{fmt_ci(values)}**" if np.isfinite(values).any()
               else "no finite metric value")
    parts = [quality, f"N={_span(ok['n_steps'])}, NFE {_span(ok['nfe_measured'])}",
             f"{_seconds(float(ok['actual_time_s'].median()))}"]
    over = ok[[flag(v) is True for v in ok["overrun"]]]
    if len(over):
        worst = _seconds(float(over["overrun_s"].max()))
        noise = (over["overrun_s"] <= over["actual_time_spread_s"]).all()
        parts.append(f"overrun {len(over)}/{len(ok)} (max +{worst}"
                     f"{', within timing noise' if noise else ''})")
    if any(flag(v) is True for v in ok["capped"]):
        parts.append(f"N capped at {int(ok['n_max'].max())}")
    if len(small):
        parts.append(f"too small on {len(small)}/{len(g)} seeds "
                     f"(needs {_seconds(float(small['min_time_s'].max()))})")
    return "<br>".join(parts)


def _order(frame: pd.DataFrame) -> list[tuple[str, str]]:
    keys = frame[["role", "method", "variant"]].fillna("").drop_duplicates()
    return [(m, v) for _, m, v in sorted(keys.itertuples(index=False),
                                         key=lambda k: (role_rank(k[0]), k[1], k[2]))]


def budget_table(frame: pd.DataFrame) -> str:
    """Method variant x time budget for one task's wall-clock cells."""
    budgets = sorted(frame["time_budget_s"].dropna().unique())
    rows = []
    for method, variant in _order(frame):
        mine = frame[(frame["method"] == method) & (frame["variant"].fillna("") == variant)]
        rows.append([method, variant or "–"] +
                    [_entry(mine[mine["time_budget_s"] == b]) for b in budgets])
    return md_table(["method", "variant", *[f"{b:g} s" for b in budgets]], rows)


def _figure(frame: pd.DataFrame, path: Path, task: str, metric: str) -> Path | None:
    """Left: the metric against the time budget (95% CI over seeds); right: the NFE chosen."""
    d = frame[(frame["status"] == BUDGET_OK) & np.isfinite(frame["value"])].copy()
    if d.empty:
        return None
    d["label"] = [f"{m} {v}".strip() for m, v in zip(d["method"], d["variant"].fillna(""),
                                                      strict=True)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    # Markers per label too: curves that coincide (a warm start on its draft) stay visible.
    style = dict(hue="label", style="label", markers=True, dashes=False)
    sns.lineplot(data=d, x="time_budget_s", y="value", errorbar=("ci", 95), seed=0, ax=left,
                 legend=False, **style)
    sns.lineplot(data=d, x="time_budget_s", y="nfe_measured", errorbar=None, ax=right,
                 **style)
    left.set(xscale="log", title=f"{task}: {metric} at equal wall-clock",
             xlabel="time budget per batch, s (log)", ylabel=metric)
    right.set_yscale("symlog", linthresh=1)  # NFE 0 (draft only) stays on the axis
    right.set(xscale="log", ylim=(0, None), title="NFE chosen within the budget",
              xlabel="time budget per batch, s (log)", ylabel="NFE measured (mean over seeds)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    legend = right.get_legend()
    if legend is not None:
        legend.set_bbox_to_anchor((1.02, 1))
        legend.set_loc("upper left")
        legend.set_frame_on(False)
        for text in legend.texts:
            text.set_fontsize(7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def equal_wall_clock_section(run_dir: str | Path, manifest: Mapping[str, Any],
                             out: Path) -> str:
    """The section's markdown ("" when the run has no wall-clock cells); writes its figures
    under out/figures and its data as out/equal_wall_clock.csv."""
    frame = budget_frame(run_dir, manifest.get("primary_metrics") or {})
    if frame.empty:
        return ""
    atomic.write_text(Path(out) / "equal_wall_clock.csv", frame.to_csv(index=False))
    batch = _span(frame["time_batch"].astype(float))
    parts = [
        f"## {TITLE}",
        "Every method at the same time budgets (seconds per batch of "
        f"{batch} samples, on this run's device). In each cell the runner measured the "
        "method's fixed cost T_d (drawing the start: draft and source), its time per network "
        "call c and the integration's fixed cost f at that batch size, then ran the largest N "
        "whose predicted time T_d + f + NFE(N) c fits the budget (for a warm start, the "
        "largest N whose K = ceil((1 - t0) N) steps fit); N is searched up to "
        f"{_span(frame['n_max'])}. Entries: the primary metric's mean [95% CI over seeds], "
        "the chosen N and "
        "NFE (a range when seeds chose differently), the measured median time per batch, "
        "and overruns (seeds whose measured time exceeded the budget, with the largest "
        "excess; 'within timing noise' when no excess is larger than the spread of that "
        "cell's timed repeats). 'budget too small' means even the cheapest setting (N = 1, "
        "or the method's one setting) is predicted to need more: such cells ran nothing and "
        "have no metrics.",
    ]
    bad = frame[[flag(v) is False for v in frame["nfe_ok"]]]
    if len(bad):
        parts.append(f"**{bad['cell_id'].nunique()} wall-clock cell(s) made a different number "
                     "of network calls than their plan declares (nfe_ok = False): a bug; their "
                     "entries are not trustworthy.**")
    for task in sorted(frame["task"].dropna().unique()):
        tf = frame[frame["task"] == task]
        metric = tf["metric"].dropna().iloc[0] if tf["metric"].notna().any() else None
        hib = tf["higher_is_better"].dropna()
        direction = "" if hib.empty else (" (higher is better)" if flag(hib.iloc[0])
                                          else " (lower is better)")
        parts.append(f"### {TITLE}: {task}\n\nPrimary metric: **{metric}**{direction}.\n\n"
                     + budget_table(tf))
        small = tf[tf["status"] == BUDGET_TOO_SMALL]
        if len(small):
            parts.append(f"{len(small)} cell(s) of {task} recorded as 'budget too small'.")
        if metric is not None:
            path = _figure(tf, Path(out) / "figures" / f"{slug(task)}_equal_wall_clock.png",
                           task, metric)
            if path is not None:
                parts.append(f"![{TITLE}: {task}]({path.relative_to(out).as_posix()})")
    return "\n\n".join(parts)
