"""The run report: run_dir/report/report.md, report.html and PNG figures in report/figures/.

Sections: NFE errors (if any), the headline (verdicts and speed-ups, harness.report.headline,
with a quality-vs-wall-clock figure per task), the t0 advisor, per-seed values, the bound
check, the cost model, the training cost (harness.report.training), one section per task
(quality vs NFE, quality vs wall-clock, speed-up vs t0, samples), a table of all methods,
equal wall-clock comparisons, and the run's details.
Everything is computed from the run folder (harness.records.store), nothing is assumed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import markdown
import numpy as np
import pandas as pd

from harness.analysis.stats import (
    coerce_numeric,
    primary_metric,
)
from harness.errors import RunDirError
from harness.records import atomic
from harness.records.status import RunStatus
from harness.records.store import (
    corrupt_samples,
    load_reference,
    load_samples,
    read_cells,
)
from harness.report import figures
from harness.report.budget import equal_wall_clock_section
from harness.report.cost import cost_model_section
from harness.report.evidence import evidence_sections
from harness.report.format import display, fmt, fmt_int, md_table, missing, nfe_notes, slug
from harness.report.headline import headline_section
from harness.report.loading import load_for_report
from harness.report.tables import (
    all_methods_section,
    bound_check_section,
    errors_section,
    header_section,
    status_section,
)
from harness.report.text import is_text, text_section
from harness.report.training import training_section
from harness.roles import Role, role_rank

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f0f0f0}
tr:nth-child(even){background:#fafafa}img{max-width:100%}code{background:#f4f4f4}
h1,h2,h3{color:#123}"""


def _pick(cells: pd.DataFrame, **where: Any) -> pd.Series | None:
    """The cell matching ``where`` at the largest N, then largest t0, then smallest seed."""
    sel = cells
    for key, value in where.items():
        sel = sel[sel[key] == value]
    if sel.empty:
        return None
    sel = sel.assign(_n=sel["n_steps"].fillna(-1), _t=sel["t0"].fillna(-1))
    sel = sel.sort_values(["_n", "_t", "seed"], ascending=[False, False, True], kind="stable")
    return sel.iloc[0]


def _sample_panels(run_dir: Path, cells: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Held-out data, then one panel per draft alone and per other method (its first draft,
    largest N and t0, smallest seed), in role order."""
    seed0 = cells["seed"].min()
    first = cells[cells["seed"] == seed0] if math.isfinite(seed0) else cells
    picks = [(f"{d} draft alone", _pick(first, role=Role.FLOOR, draft=d))
             for d in sorted(first.loc[first["role"] == Role.FLOOR, "draft"].dropna().unique())]
    others = first[first["role"] != Role.FLOOR]
    for _, g in sorted(others.groupby("method"), key=lambda kv: (
            role_rank(kv[1]["role"].iloc[0]), kv[0])):
        drafts = sorted(g["draft"].dropna().unique())
        where = {"draft": drafts[0]} if drafts else {}
        name = g["title"].iloc[0] + (f" {drafts[0]} draft" if drafts else "")
        picks.append((name, _pick(g, **where)))
    panels = []
    task = cells["task"].iloc[0] if len(cells) else None
    try:
        panels.append(("held-out data", load_reference(run_dir, task)))
    except (OSError, ValueError):
        pass
    for name, cell in picks:
        if cell is None:
            continue
        try:
            samples = load_samples(run_dir, cell["cell_id"])
        except (OSError, ValueError):
            continue
        detail = [f"N={fmt_int(cell['n_steps'])}" if cell["role"] != Role.FLOOR else ""]
        if cell["role"] == Role.WARM_START:
            detail.append(f"t0={fmt(cell['t0'])}")
        panels.append((f"{name} {' '.join(detail).strip()}\n(seed {fmt_int(cell['seed'])})".strip(),
                       samples))
    return panels


def _image(path: Path | None, alt: str, out: Path) -> str:
    if path is None:
        return f"_No data for {alt.lower()}._"
    return f"![{alt}]({path.relative_to(out).as_posix()})"


def _task_section(run_dir: Path, task: str, df: pd.DataFrame, cells: pd.DataFrame,
                  primary: Mapping[str, str], out: Path, manifest: Mapping[str, Any]) -> str:
    metric = primary_metric(df, task, primary)
    figs, name = out / "figures", slug(task)
    frame = coerce_numeric(df[(df["task"] == task) & (df["metric"] == metric)])
    tcells = cells[cells["task"] == task]
    parts = [f"## Task: {task}", f"Primary metric: **{metric}**. Bands: 95% CI over seeds; "
             "dashed horizontal lines: the draft alone."]
    if metric is not None and not frame.empty:
        notes = "".join(f"{n}\n\n" for n in nfe_notes(frame))
        parts.append("### Quality vs NFE\n\n" + notes + _image(figures.quality_vs_cost(
            frame, "nfe_measured", figs / f"{name}_quality_vs_nfe.png", f"{task}: {metric} vs NFE",
            "NFE measured (log)", metric), "Quality vs NFE", out))
        parts.append("### Quality vs wall-clock\n\n" + _image(figures.quality_vs_cost(
            frame, "time_s", figs / f"{name}_quality_vs_time.png",
            f"{task}: {metric} vs wall-clock", "time per batch, s (log)", metric),
            "Quality vs wall-clock", out))
    else:
        parts.append("_No metric values for this task._")
    warm = tcells[tcells["role"] == Role.WARM_START]
    parts.append("### Speed-up vs t0\n\n" + _image(
        figures.speedup_vs_t0(warm, figs / f"{name}_speedup_vs_t0.png", task) if len(warm)
        else None, "Speed-up vs t0", out))
    panels = _sample_panels(run_dir, tcells)
    if any(is_text(p[1]) for p in panels):  # text: tables of decoded samples, not plots
        parts.append(text_section(run_dir, task, df, tcells, manifest))
        return "\n\n".join(parts)
    images = bool(panels) and np.asarray(panels[0][1]).ndim == 4
    draw = figures.sample_grid if images else figures.sample_scatter
    parts.append("### Samples\n\n" + _image(
        draw(panels, figs / f"{name}_samples.png", f"{task}: samples") if panels else None,
        "Samples", out))
    if images:
        parts.append(_grids(run_dir, task, tcells, out))
    return "\n\n".join(parts)


def _grids(run_dir: Path, task: str, cells: pd.DataFrame, out: Path) -> str:
    """Image tasks: one sample grid per method variant and budget (smallest seed)."""
    first = cells[cells["seed"] == cells["seed"].min()]
    clamped = {r.cell_id: r.sampling.finalize.get("clamped_fraction")
               for r in read_cells(run_dir)}
    rows = []
    for cell in first.sort_values(["method", "variant", "n_steps"]).itertuples():
        try:
            samples = load_samples(run_dir, cell.cell_id)
        except (OSError, ValueError):
            continue
        name = display(cell.title, None if missing(cell.variant) else cell.variant)
        path = figures.sample_grid(
            [(f"{name}, N={fmt_int(cell.n_steps)}", samples)],
            out / "figures" / "grids" / f"{slug(task)}_{slug(name)}_N{fmt_int(cell.n_steps)}.png",
            task)
        if path is not None:
            share = clamped.get(cell.cell_id)
            rows.append([cell.title, fmt(cell.variant), fmt_int(cell.n_steps),
                         "–" if share is None else f"{100 * share:.1f}%",
                         _image(path, "grid", out)])
    return ("### Sample grids per method and budget\n\nSeed "
            f"{fmt_int(first['seed'].min())}. Clamped: the share of sample values outside [-1, 1] "
            "that were clamped before quantising to uint8 for the metrics (counted, never "
            "silent).\n\n" + md_table(["method", "variant", "N", "clamped", "grid"], rows))


def _html(md: str, title: str) -> str:
    body = markdown.markdown(md, extensions=["tables"])
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_report(run_dir: str | Path) -> Path:
    """Write run_dir/report/ (report.md, report.html, figures/*.png); return report.md's path.

    The report is drawn into a fresh folder swapped in whole for report/ when complete
    (harness.records.atomic.staged_dir): a report interrupted or failing part-way leaves the
    previous one as it was. records.csv is rebuilt from the cells first if it differs."""
    run_dir = Path(run_dir)
    run = load_for_report(run_dir, "report")
    manifest, df, cells, status = run.manifest, run.df, run.cells, run.status
    title = f"WS-FM benchmark report: {manifest.get('run_id', run_dir.name)}"
    try:
        with atomic.staged_dir(run_dir / "report") as out:
            (out / "figures").mkdir()
            with figures.drawn_in_parallel():
                md = _markdown(run_dir, manifest, df, cells, status, out, title)
            atomic.write_text(out / "report.md", md)
            atomic.write_text(out / "report.html", _html(md, title))
    except OSError as exc:
        raise RunDirError(f"cannot write the report into {run_dir / 'report'} "
                          f"({exc.strerror or exc}); the previous report, if any, is "
                          "unchanged: make the run folder writable") from exc
    return run_dir / "report" / "report.md"


def _markdown(run_dir: Path, manifest: Mapping[str, Any], df: pd.DataFrame,
              cells: pd.DataFrame, status: RunStatus, out: Path, title: str) -> str:
    """The report's Markdown, its figures drawn under ``out``."""
    primary = manifest.get("primary_metrics") or {}
    parts = [f"# {title}", status_section(status), corrupt_section(run_dir),
             errors_section(cells)]
    headline, rows = headline_section(run_dir, df, manifest, out)
    parts += [headline, evidence_sections(run_dir, df, primary, out, rows),
              bound_check_section(cells), cost_model_section(cells),
              training_section(cells, rows, read_cells(run_dir))]
    parts += [_task_section(run_dir, t, df, cells, primary, out, manifest)
              for t in sorted(cells["task"].dropna().unique())]
    parts.append(all_methods_section(df, primary))
    parts += [equal_wall_clock_section(run_dir, manifest, out), header_section(manifest, cells)]
    return "\n\n".join(p for p in parts if p) + "\n"


def corrupt_section(run_dir: Path) -> str:
    """Every sample file that cannot be read, by name, with how to fix it (its panels and
    sample tables are left out of the report)."""
    lines = corrupt_samples(run_dir)
    if not lines:
        return ""
    return ("## Corrupt sample files\n\n**Samples that cannot be read are left out of the "
            "figures below.**\n\n" + "\n".join(f"- {line}" for line in lines))
