"""Formatting shared by the report and the publication output: numbers, Markdown tables,
file-name slugs."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.stats import mean_ci
from harness.roles import role_rank


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by role (floor, reference, warm start, baseline), method, variant and N (stable)."""
    rank = frame["role"].map(role_rank)
    return frame.assign(_r=rank, _m=frame["method"].astype(str), _v=frame["variant"].astype(str),
                        _n=frame["n_steps"].fillna(-1)).sort_values(
        ["_r", "_m", "_v", "_n"], kind="stable").drop(columns=["_r", "_m", "_v", "_n"])


def slug(text: Any) -> str:
    """``text`` as a file-name part: runs of other characters become '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "task"


def missing(v: Any) -> bool:
    """None or NaN: a value the run does not have."""
    return v is None or (isinstance(v, float | np.floating) and math.isnan(v))


def fmt(v: Any, digits: int = 4) -> str:
    if missing(v):
        return "–"
    if isinstance(v, float | np.floating):
        return f"{v:.{digits}g}"
    return str(v)


def fmt_int(v: Any) -> str:
    return "–" if missing(v) else f"{float(v):g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return (v if isinstance(v, str) else fmt(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def display(title: Any, variant: Any = None) -> str:
    """A legend/table label from a method's title and variant: "WS-FM good t0=0.9 draft
    scratch euler"."""
    v = "" if missing(variant) else str(variant)
    return f"{title} {v}".strip()


def fmt_ci(values: Any, digits: int = 4) -> str:
    """The mean of ``values`` (seeds) with its 95% Student-t interval, "mean [low, high]";
    with one seed "mean (one seed: no interval)": never a zero-width interval."""
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna()
    if x.empty:
        return "–"
    mean, low, high = mean_ci(x)
    if len(x) < 2:
        return f"{fmt(mean, digits)} (one seed: no interval)"
    return f"{fmt(mean, digits)} [{fmt(low, 3)}, {fmt(high, 3)}]"



def nfe_notes(frame: pd.DataFrame) -> list[str]:
    """"† <title>: <note>" for each method whose NFE the record says is not comparable one to
    one (its plan's nfe_note)."""
    if "nfe_note" not in frame:
        return []
    noted = frame.dropna(subset=["nfe_note"]).drop_duplicates(["title", "nfe_note"])
    return [f"† {r.title}: {r.nfe_note}." for r in noted.itertuples()]
