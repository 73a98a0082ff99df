"""What a method is to the evidence: its role. The headline, the evidence and the figures key on
roles, never on method names, so a third-party warm start or reference model takes part like a
built-in one (harness.plugins.Method.role)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A method's role in the headline's evidence."""

    REFERENCE = "reference"  # a full model: its frontier (every solver, every N) is the reference
    WARM_START = "warm-start"  # starts from a draft (Method.starts_from) at t0 > 0
    FLOOR = "floor"  # a draft alone: what a warm start must beat to be credited
    BASELINE = "baseline"  # any other method (diffusion, autoregressive, ...): shown, not judged
    DATA = "data"  # real data against the evaluation set: the best any method can score


ROLE_ORDER = (Role.DATA, Role.FLOOR, Role.REFERENCE, Role.WARM_START, Role.BASELINE)


def role_rank(role: object) -> int:
    """Where a role goes in tables and legends (unknown roles last)."""
    return next((i for i, r in enumerate(ROLE_ORDER) if r == role), len(ROLE_ORDER))
