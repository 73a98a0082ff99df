"""The t0 advisor: a good warm-start time t0 for a draft, estimated from the data alone.

Before any WS-FM model is trained, ``advise_t0`` asks at which times t of the noise-to-data
path the draft can stand in for the data. At each t of a grid (0.05, 0.10, ..., 0.95) it puts
draft samples and data samples on the same path

    continuous (points, images):  x_t = t x + (1 - t) eps,  eps ~ N(0, I)
    discrete (text tokens):       each token kept with probability t, else the mask id
                                  (vocab_size)

and runs a classifier two-sample test: a small MLP learns to tell noised drafts from noised
data on one half of the samples, and its accuracy on the other half is compared with chance.
Features: points as they are; images flattened; text as unigram and bigram frequencies over
unmasked positions. Features wider than 32 are projected on their top 32 principal
directions (a seeded randomised SVD of the training half) so the classifier stays cheap.

Decision rule. Under "indistinguishable" a classifier's held-out accuracy on m balanced test
samples is at most Binomial(m, 1/2) / m, so t counts as indistinguishable when the accuracy
is at most the binomial quantile at 1 - alpha / (grid size) (a Bonferroni bound over the
grid, alpha = 0.05: with a draft identical to the data, the whole grid passes with
probability >= 95%). Noise hides every difference as t -> 0 and none as t -> 1, so the
advice is the last t before the first grid point where the classifier beats that threshold:
the latest start at which the noised draft is still statistically data-like at this sample
size. A draft identical in distribution to the data gets the top of the grid; a draft
distinguishable already at the first grid point gets None (no warm start advised).

The advice targets the noised-draft start (x_start on the full model's path): it is the
latest t at which the full model's own path accepts the noised draft as data-like, which is
what the training-free warm start relies on. WS-FM, trained on (draft, refined) pairs, can
correct part of what the classifier detects, so its best t0 may lie later; the report puts
the advice beside the sweep's answer rather than trusting either. Measured (two moons, 2000
samples a side): one Gaussian 0.5-0.55, the 2-component GMM 0.6-0.7, the 8-component GMM
0.9-0.95, the data itself 0.95. The noised
draft and data come from the warm start's own sources (``wsfm.sources``, the noised-draft
start), so the advisor judges exactly the start the training-free warm start uses. This module
needs only torch and the standard library; the ws-fm and warm-start plugins
(``wsfm.methods``) run it once per task and draft before any cell trains, and the harness
stores their answers in the run's advisor.json.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import torch

from wsfm.sources import make_source

VERSION = "1"  # bump when the estimate changes: it is part of the cache key
GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
MAX_FEATURES = 32
N_SAMPLES = 2000  # draft samples and data points per side


def noised(x: torch.Tensor, t: float, generator: torch.Generator,
           vocab_size: int | None = None) -> torch.Tensor:
    """``x`` at time t of the full model's path from noise: the noised-draft source at t0 = t
    (t x + (1 - t) eps; tokens kept with probability t, else the mask id ``vocab_size``)."""
    return make_source("noised-draft", t, mask_id=vocab_size).start(x, x, generator)


def binomial_quantile(q: float, n: int) -> int:
    """The smallest k with P(Binomial(n, 1/2) <= k) >= q, in exact integer arithmetic."""
    target = Fraction(q) * 2**n
    term = total = 1  # C(n, 0)
    for k in range(n):
        if total >= target:
            return k
        term = term * (n - k) // (k + 1)  # C(n, k + 1), exact
        total += term
    return n


def features(x: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """(n, d) float features: continuous samples flattened; token sequences as unigram and
    adjacent-bigram frequencies over unmasked positions (per sequence length)."""
    if vocab_size is None:
        return x.reshape(len(x), -1).float()
    x = x.long()
    n, length = x.shape
    v = vocab_size
    uni = torch.zeros(n, v + 1, device=x.device).scatter_add_(
        1, x, torch.ones_like(x, dtype=torch.float))[:, :v]
    pair = x[:, :-1] * (v + 1) + x[:, 1:]
    both = (x[:, :-1] < v) & (x[:, 1:] < v)
    pair = torch.where(both, pair, torch.full_like(pair, (v + 1) ** 2))
    bi = torch.zeros(n, (v + 1) ** 2 + 1, device=x.device).scatter_add_(
        1, pair, torch.ones_like(pair, dtype=torch.float))
    keep = torch.tensor([a < v and b < v for a in range(v + 1) for b in range(v + 1)] + [False],
                        device=x.device)
    return torch.cat([uni, bi[:, keep]], 1) / length


def _top_directions(x: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """The top ``k`` right singular vectors of ``x`` (k, d), by a seeded randomised SVD
    (two power iterations): cheap for wide features such as flattened images."""
    omega = torch.randn(x.shape[1], k + 8, generator=torch.Generator().manual_seed(seed))
    q, _ = torch.linalg.qr(x @ omega.to(x))
    for _ in range(2):
        q, _ = torch.linalg.qr(x @ (x.T @ q))
    return torch.linalg.svd(q.T @ x, full_matrices=False)[2][:k]


def _split(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Halves of ``a`` (label 0) and ``b`` (label 1) as train and test, centred, projected on
    the training half's top MAX_FEATURES principal directions if wider, and standardised."""
    half_a, half_b = len(a) // 2, len(b) // 2
    x_tr, x_te = torch.cat([a[:half_a], b[:half_b]]), torch.cat([a[half_a:], b[half_b:]])
    mu = x_tr.mean(0)
    x_tr, x_te = x_tr - mu, x_te - mu
    if x_tr.shape[1] > MAX_FEATURES:
        top = _top_directions(x_tr, MAX_FEATURES)
        x_tr, x_te = x_tr @ top.T, x_te @ top.T
    sd = x_tr.std(0).clamp_min(1e-6)
    y_tr = torch.cat([torch.zeros(half_a), torch.ones(half_b)]).to(a.device)
    y_te = torch.cat([torch.zeros(len(a) - half_a), torch.ones(len(b) - half_b)]).to(a.device)
    return x_tr / sd, y_tr, x_te / sd, y_te


def _held_out_accuracy(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor,
                       y_te: torch.Tensor, seed: int, hidden: int, steps: int) -> list[float]:
    """Train one small MLP per leading index of (T, n, d) ``x_tr`` (all T at once, as batched
    matrix products: independent networks, one optimiser step each per iteration) and
    return each one's accuracy on ``x_te``."""
    n_t, _, d = x_tr.shape
    g = torch.Generator().manual_seed(seed)
    params = []
    for fan_in, fan_out in ((d, hidden), (hidden, hidden), (hidden, 1)):  # nn.Linear's init
        bound = 1 / fan_in**0.5
        for shape in ((n_t, fan_in, fan_out), (n_t, 1, fan_out)):
            w = (torch.rand(shape, generator=g) * 2 - 1) * bound
            params.append(w.to(x_tr.device).requires_grad_())

    def logits(x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i])
            h = torch.relu(h) if i + 2 < len(params) else h
        return h.squeeze(-1)

    opt = torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4)
    with torch.enable_grad():
        for _ in range(steps):  # full batch: a few thousand rows per network
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(x_tr), y_tr)
            (loss * n_t).backward()  # the mean over networks, rescaled: each its own loss
            opt.step()
    with torch.no_grad():
        return (((logits(x_te) > 0).float() == y_te).float().mean(1)).tolist()


def isotonic(values: list[float]) -> list[float]:
    """The least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, c1), (m2, c2) = blocks.pop(-2), blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    return [m for m, c in blocks for _ in range(int(c))]


def advise_t0(
    draft_samples: torch.Tensor,
    data: torch.Tensor,
    generator: torch.Generator,
    modality: str = "points",
    vocab_size: int | None = None,
    grid: tuple[float, ...] = GRID,
    alpha: float = 0.05,
    hidden: int = 32,
    steps: int = 100,
) -> dict[str, Any]:
    """Estimate t0 for a draft from samples alone (see the module docstring for the rule).

    ``draft_samples`` and ``data`` share their shape past the batch: (n, 2) points,
    (n, C, H, W) images, or (n, L) torch.long tokens with ``modality="text"`` and
    ``vocab_size`` (mask id = vocab_size). Equal sizes are used (the smaller of the two).
    Returns {"t0": float or None, "grid", "accuracy" (held-out, per grid point),
    "threshold", "n_test", "alpha", "rule", "seconds"}.
    """
    discrete = modality == "text"
    if discrete and not vocab_size:
        raise ValueError("advise_t0: text needs vocab_size (the mask id is vocab_size)")
    if tuple(draft_samples.shape[1:]) != tuple(data.shape[1:]):
        raise ValueError(f"advise_t0: draft samples {tuple(draft_samples.shape)} and data "
                         f"{tuple(data.shape)} differ in shape past the batch dimension")
    if not grid or any(not 0 < t < 1 for t in grid):
        raise ValueError(f"advise_t0: grid {grid!r} must be non-empty values in (0, 1)")
    n = min(len(draft_samples), len(data))
    if n < 20:
        raise ValueError(f"advise_t0: {n} samples per side are too few; give at least 20")
    start = time.perf_counter()
    grid = tuple(sorted(grid))
    draft_samples, data = draft_samples[:n], data[:n]
    if not discrete:
        draft_samples, data = draft_samples.float(), data.float()
    voc = vocab_size if discrete else None
    n_test = (n - n // 2) * 2
    # Chance accuracy is at most Binomial(n_test, 1/2) / n_test; Bonferroni over the grid.
    threshold = binomial_quantile(1 - alpha / len(grid), n_test) / n_test
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
    splits = [_split(features(noised(draft_samples, t, generator, voc), voc),
                     features(noised(data, t, generator, voc), voc)) for t in grid]
    x_tr, y_tr, x_te, y_te = (torch.stack(parts) for parts in zip(*splits, strict=True))
    accuracy = _held_out_accuracy(x_tr, y_tr, x_te, y_te, seed, hidden, steps)
    # A single noisy point must not decide: the first crossing of the isotonic fit.
    failed = [i for i, acc in enumerate(isotonic(accuracy)) if acc > threshold]
    t0 = grid[-1] if not failed else grid[failed[0] - 1] if failed[0] else None
    return {
        "t0": t0, "grid": list(grid), "accuracy": accuracy, "threshold": threshold,
        "n_test": n_test, "alpha": alpha, "method": "classifier two-sample test (MLP)",
        "rule": ("last t before the first grid point where held-out accuracy exceeds the "
                 f"binomial {1 - alpha / len(grid):.4f} quantile of chance"),
        "seconds": time.perf_counter() - start,
    }
