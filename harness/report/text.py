"""Report pieces for text tasks: the main comparison table and decoded sample tables.

The draft alone (floor) and the warm starts draw their drafts from the same seeded stream, so
row i of a draft-alone cell's samples is the draft that row i of a warm-start cell (same
draft, seed) started from: the sample table shows each draft beside its refinement.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.stats import coerce_numeric
from harness.records.store import load_samples, read_cells
from harness.report.format import display, fmt, fmt_ci, fmt_int, md_table, nfe_notes
from harness.roles import Role, role_rank
from harness.text.alphabet import decode

TEXT_METRICS = ("judge-nll-char", "judge-nll", "judge-ppl", "char-nll", "distinct-2", "self-bleu",
                "word-validity", "verbatim-rate", "novelty-lcs")
SAMPLES_SHOWN = 3
PER_TOKEN_NOTE = ("judge-nll and judge-ppl are per token of the judge's tokeniser: texts that "
                  "split into different numbers of tokens (random letters into many short, "
                  "easy ones) are not comparable by them, so they can rank a poor draft above "
                  "a good one. Compare methods by judge-nll-char (per character).")


def is_text(samples: Any) -> bool:
    a = np.asarray(samples)
    return a.ndim == 2 and a.dtype.kind in "iu"


def _rows_of(cells: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The comparison's rows: (label, cells of that setting over seeds) at the largest N."""
    out = []
    for (_, variant), group in cells.groupby(["method", "variant"], dropna=False, sort=True):
        if group["n_steps"].notna().any() and (group["n_steps"] > 0).any():
            group = group[group["n_steps"] == group["n_steps"].max()]
        out.append((display(group["title"].iloc[0], variant), group))
    return sorted(out, key=lambda item: (role_rank(item[1]["role"].iloc[0]), item[0]))


def comparison_table(df: pd.DataFrame, cells: pd.DataFrame) -> str:
    """Every method at its largest N: text metrics (mean [95% CI] over seeds), measured NFE,
    wall-clock speed-up against the bound (warm starts)."""
    metrics = [m for m in TEXT_METRICS if m in set(df["metric"])]
    headers = ["method", "N", "NFE", *metrics, "time/batch s", "speed-up (bound)", "seeds"]
    rows = []
    for label, group in _rows_of(cells):
        vals = df[df["cell_id"].isin(group["cell_id"])]
        cached = group["nfe_note"].notna().any()
        row = [label, fmt_int(group["n_steps"].max()),
               fmt_int(group["nfe_measured"].median()) + (" †" if cached else "")]
        for m in metrics:
            row.append(fmt_ci(vals.loc[vals["metric"] == m, "value"]))
        speed = group["wall_speedup"].median() if "wall_speedup" in group else np.nan
        bound = group["wall_bound"].median() if "wall_bound" in group else np.nan
        row += [fmt(group["time_s"].median(), 3),
                "–" if pd.isna(speed) else f"{speed:.2f}x ({bound:.2f}x)",
                fmt_int(group["seed"].nunique())]
        rows.append(row)
    notes = nfe_notes(cells)
    if {"judge-nll", "judge-ppl"} & set(metrics):
        notes.append(PER_TOKEN_NOTE)
    return "\n\n".join([md_table(headers, rows), *notes])


def _decoded(run_dir: Path, cell_id: str, k: int) -> list[str]:
    try:
        return [decode(row) for row in load_samples(run_dir, cell_id)[:k]]
    except (OSError, ValueError):
        return []


def sample_tables(run_dir: Path, cells: pd.DataFrame) -> str:
    """Decoded samples (smallest seed): drafts beside their WS-DFM refinements, then each
    baseline."""
    first = cells[cells["seed"] == cells["seed"].min()]
    parts = []
    for draft in sorted(first["draft"].dropna().unique()):
        base = first[(first["role"] == Role.FLOOR) & (first["draft"] == draft)]
        warm = first[(first["role"] == Role.WARM_START) & (first["draft"] == draft)]
        if base.empty or warm.empty:
            continue
        drafts = _decoded(run_dir, base["cell_id"].iloc[0], SAMPLES_SHOWN)
        columns = [(f"{display(r.title, r.variant)}, N={fmt_int(r.n_steps)}",
                    _decoded(run_dir, r.cell_id, SAMPLES_SHOWN))
                   for r in warm[warm["n_steps"] == warm["n_steps"].max()].itertuples()]
        headers = [f"draft ({draft})", *[c[0] for c in columns]]
        rows = [[f"`{d}`", *[f"`{c[1][i]}`" if i < len(c[1]) else "–" for c in columns]]
                for i, d in enumerate(drafts)]
        parts.append(f"**{draft} draft and its warm-start refinements** (row by row)\n\n"
                     + md_table(headers, rows))
    rows = []
    for label, group in _rows_of(first):
        if group["role"].iloc[0] == Role.WARM_START:
            continue
        for text in _decoded(run_dir, group["cell_id"].iloc[0], SAMPLES_SHOWN):
            rows.append([label, fmt_int(group["n_steps"].max()), f"`{text}`"])
    if rows:
        parts.append("**Baselines**\n\n" + md_table(["method", "N", "sample"], rows))
    return "\n\n".join(parts)


def text_section(run_dir: Path, task: str, df: pd.DataFrame, cells: pd.DataFrame,
                 manifest: Mapping[str, Any]) -> str:
    """The text task's comparison table, notes and sample tables."""
    tdf = coerce_numeric(df[df["task"] == task])
    notes = (manifest.get("task_notes") or {}).get(task) or []
    parts = ["### Text: comparison at the largest budget",
             *[f"> Note: {n}" for n in notes],
             "judge-nll-char / judge-nll: NLL per character / per token under the judge "
             "language model, judge-ppl its perplexity per token; char-nll: nats per character "
             "under a character model trained on held-out text (lower is better for both); "
             "distinct-2: share of distinct word bigrams; self-BLEU: lower is more diverse; "
             "word-validity: share of words found in the corpus vocabulary. Speed-up: measured "
             "wall-clock against the full N-step run in the same cell (S_wall bound in brackets).",
             comparison_table(tdf, cells)]
    refiner = {}  # one row per (refiner, draft, seed): the counts of building those pairs
    for r in read_cells(run_dir):
        stats = r.cost.refiner_stats
        if r.identity.task == task and stats:
            refiner[(r.identity.draft, r.identity.seed)] = stats
    if refiner:
        keys = sorted({k for s in refiner.values() for k in s})
        rows = [[d, fmt_int(seed), *[fmt(s.get(k)) for k in keys]]
                for (d, seed), s in sorted(refiner.items(), key=str)]
        parts.append("**Refiner counts** (building the warm-start training pairs)\n\n"
                     + md_table(["draft", "seed", *keys], rows))
    samples = sample_tables(run_dir, cells)
    if samples:
        parts.append("### Text samples\n\n" + samples)
    return "\n\n".join(parts)
