"""Where the flow starts: noise at t = 0, or a draft-based point at t0.

A source turns a batch of draft samples x_d (None when it does not use a draft) into the
start point x_start of the ODE:
- ``noise``:        x_start ~ N(0, I)                      (full flow matching, t0 = 0);
- ``draft``:        x_start = x_d;
- ``noised-draft``: x_start = t0 x_d + (1 - t0) eps, a point on the same noise-to-data
                    path as the full model at time t0 (docs/method.md: not known which start the
                    paper uses; the harness runs both).

For tokens (text) the same three kinds exist with the mask token in the role of noise:
``noise`` is all-[MASK] (the masked source of discrete FM), ``draft`` is the draft's tokens,
and ``noised-draft`` masks each draft token with probability 1 - t0, which is where the
full model's mixture path from all-[MASK] stands at time t0.
"""

from __future__ import annotations

import torch


class Source:
    """Builds x_start from a batch of draft samples (plugin authors may add kinds)."""

    name = "source"
    needs_draft = True

    def start(
        self, x_draft: torch.Tensor | None, like: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        raise NotImplementedError


class NoiseSource(Source):
    name = "noise"
    needs_draft = False

    def start(self, x_draft, like, generator):
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class DraftSource(Source):
    name = "draft"

    def start(self, x_draft, like, generator):
        return x_draft


class NoisedDraftSource(Source):
    name = "noised-draft"

    def __init__(self, t0: float) -> None:
        self.t0 = float(t0)

    def start(self, x_draft, like, generator):
        eps = torch.randn(
            x_draft.shape, generator=generator, device=x_draft.device, dtype=x_draft.dtype
        )
        return self.t0 * x_draft + (1.0 - self.t0) * eps


class MaskSource(Source):
    """All-[MASK] tokens: the source of the full discrete FM model."""

    name = "noise"
    needs_draft = False

    def __init__(self, mask_id: int) -> None:
        self.mask_id = int(mask_id)

    def start(self, x_draft, like, generator):
        return torch.full(like.shape, self.mask_id, dtype=torch.long, device=like.device)


class MaskedDraftSource(Source):
    """The draft with each token replaced by [MASK] with probability 1 - t0."""

    name = "noised-draft"

    def __init__(self, t0: float, mask_id: int) -> None:
        self.t0, self.mask_id = float(t0), int(mask_id)

    def start(self, x_draft, like, generator):
        u = torch.rand(x_draft.shape, generator=generator, device=x_draft.device)
        return torch.where(u < self.t0, x_draft, torch.full_like(x_draft, self.mask_id))


START_KINDS = ("draft", "noised-draft")


def make_source(kind: str, t0: float, mask_id: int | None = None) -> Source:
    """The source for a start kind: 'noise', 'draft' or 'noised-draft'; token sources
    (all-[MASK], masked draft) when ``mask_id`` is given."""
    if kind == "noise":
        return NoiseSource() if mask_id is None else MaskSource(mask_id)
    if kind == "draft":
        return DraftSource()
    if kind == "noised-draft":
        return NoisedDraftSource(t0) if mask_id is None else MaskedDraftSource(t0, mask_id)
    allowed = ", ".join(map(repr, ("noise", *START_KINDS)))
    raise ValueError(f"unknown start {kind!r}; allowed: {allowed}")
