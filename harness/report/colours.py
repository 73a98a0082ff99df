"""Colours and axes shared by every figure: a draft and the warm starts from it share one
colour (its own hue, shades by setting), full FM is blue, other baselines purple, real data
(the floor) black; a metric whose values span more than ten times is drawn on a log axis."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb

from harness.roles import Role

_CB = sns.color_palette("colorblind")
ROLE_BASE = {Role.REFERENCE: _CB[0], Role.BASELINE: _CB[4], Role.DATA: (0.0, 0.0, 0.0)}
# Hues for drafts, in order of their names: none of full FM's blue or the baselines' purple.
DRAFT_HUES = [_CB[i] for i in (3, 2, 1, 8, 5, 6, 7, 9)]
Colour = tuple[float, float, float]


def shades(base: Any, n: int) -> list[Colour]:
    """``n`` shades of ``base``, dark to light (the base itself when n = 1)."""
    rgb = np.array(to_rgb(base))
    if n == 1:
        return [tuple(rgb)]
    return [tuple(rgb + a * (1 - rgb) if a > 0 else rgb * (1 + a))
            for a in np.linspace(-0.45, 0.5, n)]


def draft_hues(drafts: Iterable[Any]) -> dict[str, Colour]:
    """One hue per draft name (sorted): what its floor and its warm starts are drawn in."""
    names = sorted({str(d) for d in drafts if d is not None and d == d})
    return {d: tuple(to_rgb(DRAFT_HUES[i % len(DRAFT_HUES)])) for i, d in enumerate(names)}


def palette(items: Iterable[tuple[Any, Any, str]]) -> dict[str, Colour]:
    """A colour per label from (role, draft, label): labels with a draft (its floor, its warm
    starts) in that draft's hue, the others in their role's, shaded by order."""
    groups: dict[Any, list[str]] = {}
    for role, draft, label in items:
        has_draft = draft is not None and draft == draft and role in (Role.FLOOR,
                                                                       Role.WARM_START)
        labels = groups.setdefault(("draft", str(draft)) if has_draft else ("role", str(role)),
                                   [])
        if label not in labels:
            labels.append(label)
    hues = draft_hues(key[1] for key in groups if key[0] == "draft")
    out: dict[str, Colour] = {}
    for key, labels in groups.items():
        base = hues[key[1]] if key[0] == "draft" else ROLE_BASE.get(key[1], _CB[5])
        out.update(zip(labels, shades(base, len(labels)), strict=True))
    return out


def log_if_wide(ax: Axes, values: Iterable[float], axis: str = "y") -> bool:
    """A log scale on ``axis`` when the finite positive ``values`` span more than ten times."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size and v.min() > 0 and v.max() / v.min() > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False
