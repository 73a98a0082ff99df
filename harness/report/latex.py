"""The LaTeX tables of the publication output (booktabs): the main comparison per task,
the quality-matched speed-up and the bound-check summary, from stored results only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.speedup import ceil_speedup
from harness.analysis.stats import flag, higher_is_better
from harness.report.format import missing, ordered
from harness.roles import Role


def tex_escape(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped (for labels, never for math)."""
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}"}
    return "".join(repl.get(ch, ch) for ch in ("--" if missing(text) else str(text)))


def _num(v: Any, fmt: str = "sig") -> str:
    """``v`` formatted ("sig": three significant digits, trailing zeros kept), "--" if missing."""
    if missing(v) or not np.isfinite(float(v)):
        return "--"
    v = float(v)
    if fmt != "sig":
        return f"{v:{fmt}}"
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f}" if v else "0"


def pm(mean: float, low: float, high: float) -> str:
    """"$m \\pm h$" with h the CI half-width, both rounded to h's second significant digit."""
    if missing(mean) or not np.isfinite(mean):
        return "--"
    half = (high - low) / 2 if np.isfinite(low) and np.isfinite(high) else math.nan
    if not np.isfinite(half) or half <= 0:
        return f"${mean:.4g}$"
    dec = max(0, 1 - math.floor(math.log10(half)))
    return f"${mean:.{dec}f} \\pm {half:.{dec}f}$"


def tabular(headers: Sequence[str], rows: Sequence[Sequence[str] | None], align: str,
            comment: str = "") -> str:
    """A booktabs tabular (no vertical rules); a None row is a \\midrule between groups."""
    lines = [f"% {c}" for c in comment.splitlines()] + ["% requires \\usepackage{booktabs}",
                                                        f"\\begin{{tabular}}{{{align}}}",
                                                        "\\toprule", " & ".join(headers) + r" \\",
                                                        "\\midrule"]
    lines += ["\\midrule" if r is None else " & ".join(r) + r" \\" for r in rows]
    while lines[-1] == "\\midrule":
        lines.pop()
    return "\n".join(lines + ["\\bottomrule", "\\end{tabular}", ""])


def main_table(summ: pd.DataFrame, cells: pd.DataFrame, task: str, metric: str) -> str:
    """The drafts alone, the reference methods at each N (Euler, or their first solver), the
    warm starts at t0 with K, the other baselines."""
    d = summ[(summ["task"] == task) & (summ["metric"] == metric)]
    ref = d["role"] == Role.REFERENCE
    solvers = set(d.loc[ref, "solver"].dropna())
    shown = "euler" if "euler" in solvers else min(solvers, default=None)
    d = ordered(d[~ref | (d["solver"] == shown)])
    speed = cells[cells["task"] == task].groupby(["method", "variant", "n_steps"])[
        "nfe_speedup"].mean()
    rows: list[list[str] | None] = []
    prev = None
    for r in d.itertuples():
        if prev is not None and r.method != prev:
            rows.append(None)
        prev = r.method
        draft = r.role == Role.FLOOR
        rows.append([tex_escape(r.title), tex_escape(r.variant),
                     _num(r.t0, "g") if r.role == Role.WARM_START else "--",
                     "--" if draft else _num(r.n_steps, "g"),
                     "--" if draft else _num(r.k_steps, "g"),
                     pm(r.mean, r.ci_low, r.ci_high), _num(r.nfe_measured, "g"),
                     _num(r.time_s * 1000), _num(speed.get((r.method, r.variant, r.n_steps)))])
    arrow = r"$\uparrow$" if higher_is_better(d) else r"$\downarrow$"
    headers = ["Method", "Variant", "$t_0$", "$N$", "$K$", f"{tex_escape(metric)} {arrow}", "NFE",
               "Time (ms)", "NFE speed-up"]
    return tabular(headers, rows, "llrrrrrrr", f"{task}: {metric}, mean +- 95% CI half-width "
                   "over seeds; time = median wall-clock per batch")


def headline_tex(rows: list[dict[str, Any]]) -> str:
    """The headline (harness.analysis.evidence): per task, method and draft, the verdict and,
    for non-inferior rows only, the NFE and wall-clock speed-ups with the latter's interval."""
    body: list[list[str] | None] = []
    last = None
    for r in rows:
        if last is not None and r["task"] != last:
            body.append(None)
        last = r["task"]
        backed = r["verdict"] == "non-inferior"
        ref = r["reference"] or {}
        low, high = r["interval"]
        body.append([
            tex_escape(f"{r['task']} ({r['metric']})"), tex_escape(r["title"]),
            tex_escape(r["draft"]),
            f"{tex_escape(ref.get('variant'))}, $N$={_num(ref.get('n_budget'), 'g')}",
            "--" if r["variant"] is None else
            f"{_num(r['t0'], 'g')} / {_num(r['n_budget'], 'g')} / {_num(r['k_steps'], 'g')}",
            _num(r["mean"]), _num(r["reference_mean"]), _num(r["draft_mean"]),
            f"{r['speedup_nfe']:.3g}$\\times$" if backed else "--",
            f"{r['speedup_wall']:.3g}$\\times$ [{_num(low)}, {_num(high)}]" if backed else "--",
            tex_escape(r["verdict"])])
    headers = ["Task (metric)", "Method", "Draft", "Reference", "$t_0$ / $N$ / $K$", "Quality",
               "Ref.", "Draft alone", "NFE speed-up", "Wall-clock speed-up", "Verdict"]
    return tabular(headers, body, "lllllrrrrrl", "Headline: paired non-inferiority against "
                   "full FM's cheapest non-inferior configuration; speed-ups only where "
                   "non-inferior")


def bound_check_tex(cells: pd.DataFrame) -> str:
    """Per task: warm-start cells, NFE speed-up = N/ceil((1-t0)N) count, wall-clock speed-up
    reaching S_wall within the timing noise count, and the harness's bound_ok count."""
    rows: list[list[str] | None] = []
    warm = cells[cells["role"] == Role.WARM_START]
    for task, g in warm.groupby("task", sort=True):
        theory = np.array([ceil_speedup(t, n) for t, n in zip(g["t0"], g["n_steps"], strict=True)])
        exact = np.isfinite(theory) & (np.abs(g["nfe_speedup"] - theory)
                                       <= 1e-9 * np.maximum(1.0, theory))
        noise = g["timing_noise"].fillna(0.0)
        wall = g["wall_speedup"] >= g["wall_bound"] * (1 - noise)
        ok = sum(flag(v) is True for v in g["bound_ok"])
        rows.append([tex_escape(task), str(len(g)), str(int(exact.sum())), str(int(wall.sum())),
                     str(ok)])
    headers = ["Task", "Cells", "NFE exact", "Wall-clock $\\geq S_\\mathrm{wall}$",
               "Bound OK"]
    return tabular(headers, rows, "lrrrr", "Bound check of warm-start cells (counts)")


# ---------------------------------------------------------------------------------- driver
