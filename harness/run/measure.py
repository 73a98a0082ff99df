"""One measurement path for every cell: NFE-budget cells, wall-clock cells and their probes.

``time_plan`` runs a method's plan on batches, counting network calls through a wrapper
(harness.run.nfe) and timing start (draft) and integration on the device's clock, with
warm-up and repeats (harness.run.timing). ``time_reference`` times the full N-step grid of a
warm start with the same network, side by side in the same cell. ``describe`` and
``times_of`` give the record's identity, plan and times sections, and ``bound_check`` judges a
warm-start cell against the guaranteed speed-up in the harness's own arithmetic
(harness.analysis.speedup).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.analysis import speedup
from harness.plugins import Method, SamplingPlan
from harness.records.cell import Cell
from harness.records.record import BoundCheck, Identity, Plan, Times
from harness.roles import Role
from harness.run.nfe import CountingNetwork
from harness.run.timing import Timing, compiled_label, repeat

# Clock.time's shape: run fn, return (its result, seconds). Tests pass a fake clock.
TimeFn = Callable[[Callable[[], Any]], tuple[Any, float]]


@dataclass
class PlanTiming:
    """One plan timed on batches: the first call's samples; start (draft), integration and
    total times of the repeats; the counted NFE of every call."""

    samples: torch.Tensor
    draft: Timing
    integrate: Timing
    total: Timing
    nfe: int  # the first call's count
    start_time: float | None  # the time of the first network call: where the solver started
    nfe_ok: bool  # every call took the plan's expected_nfe
    deterministic: bool  # every repeat gave the first call's samples
    nonfinite: int

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total.as_dict(), "draft": self.draft.as_dict(),
                "integrate": self.integrate.as_dict(), "reference": None}


def time_plan(plan: SamplingPlan, network: Any, batch: int, time_fn: TimeFn,
              generator: Callable[[], torch.Generator], warmup: int,
              repeats: int) -> PlanTiming:
    """Sample ``plan`` on batches of ``batch`` with ``network`` (the plan's own, or a compiled
    one) counted: max(warmup, 1) calls (the first kept apart), then ``repeats`` timed ones.
    ``generator()`` gives the same stream every call, so every call draws the same samples."""
    counter = CountingNetwork(network) if network is not None else None

    starts: list[float | None] = []

    def once() -> tuple[torch.Tensor, float, float, int]:
        g = generator()
        x0, t_draft = time_fn(lambda: plan.draw_start(batch, g))
        if counter is not None:
            counter.reset()
        x, t_int = time_fn(lambda: plan.integrate(counter, x0, g))
        starts.append(counter.first_time if counter is not None else None)
        return x, t_draft, t_int, counter.reset() if counter is not None else 0

    with torch.no_grad():
        first, runs = repeat(once, warmup, max(repeats, 1))
    samples = first[0]
    return PlanTiming(
        samples=samples,
        draft=Timing([r[1] for r in runs], first[1]),
        integrate=Timing([r[2] for r in runs], first[2]),
        total=Timing([r[1] + r[2] for r in runs], first[1] + first[2]),
        nfe=first[3],
        start_time=starts[0],
        nfe_ok={first[3]} | {r[3] for r in runs} == {plan.expected_nfe},
        deterministic=all(torch.equal(samples, r[0]) for r in runs),
        nonfinite=int((~torch.isfinite(samples)).sum()),
    )


def time_reference(plan: SamplingPlan, network: Any, x_start: torch.Tensor, time_fn: TimeFn,
                   generator: Callable[[], torch.Generator], repeats: int) -> tuple[Timing, int]:
    """Time the plan's ``reference_integrate`` (the full grid from t = 0) from ``x_start`` with
    ``network`` counted; returns its Timing and the first call's NFE.

    No warm-up: the plan's own calls just ran this network on this batch, so every call is
    timed and the first is one of the repeats (on the default suite the first reference run
    took 1.00x the next one, median over 365 cells)."""
    counter = CountingNetwork(network)

    def once() -> tuple[float, int]:
        counter.reset()
        g = generator()
        _, t = time_fn(lambda: plan.reference_integrate(counter, x_start, g))
        return t, counter.reset()

    with torch.no_grad():
        runs = [once() for _ in range(max(repeats, 1))]
    return Timing([r[0] for r in runs], runs[0][0]), runs[0][1]


def describe(cell: Cell, method: Method, plan: SamplingPlan,
             control: str | None = None) -> tuple[Identity, Plan]:
    """What ran (task, method, its role and variant, its draft and whether that is a control)
    and what its plan said it would do."""
    identity = Identity(
        cell_id=cell.cell_id, task=cell.task, method=cell.method, role=Role(method.role),
        title=method.title or cell.method,
        variant=compiled_label(plan.variant or method.label(), cell.compile),
        draft=method.starts_from(), seed=cell.seed, device=cell.device,
        threads=torch.get_num_threads(), control=control)
    steps = Plan(
        t0=plan.t0 if plan.network is not None else None, n_steps=plan.n_steps,
        k_steps=plan.k_steps, evals_per_step=plan.evals_per_step, solver=plan.solver,
        start=plan.start, init=plan.init, nfe_budget=plan.n_steps * plan.evals_per_step,
        nfe_expected=plan.expected_nfe, compile=cell.compile, nfe_note=plan.nfe_note)
    return identity, steps


def times_of(timed: PlanTiming, ref: Timing | None, compile_s: float | None,
             call: Timing | None = None) -> Times:
    """The Times section of a timed plan (and, for a warm start, its reference run and bare
    network call: what the bound check is judged from)."""
    total, integrate = timed.total, timed.integrate
    return Times(
        time_s=total.median, time_spread_s=total.spread, first_call_s=total.first,
        draft_time_s=timed.draft.median, integrate_time_s=integrate.median,
        time_per_call_s=integrate.median / timed.nfe if timed.nfe else None,
        compile_s=compile_s,
        timings={**timed.as_dict(), "reference": ref.as_dict() if ref else None,
                 "call": call.as_dict() if call else None})


def time_calls(network: Any, x: torch.Tensor, t: float, time_fn: TimeFn, warmup: int,
               repeats: int) -> Timing:
    """The bare network call on ``x`` at time ``t``, timed alone: c, the cost of one call,
    measured apart from any solver (what the wall-clock bound is built from)."""
    dtype = x.dtype if x.is_floating_point() else torch.float32
    times = torch.full((x.shape[0],), float(t), device=x.device, dtype=dtype)
    with torch.no_grad():
        first, runs = repeat(lambda: time_fn(lambda: network(x, times)), warmup,
                             max(repeats, 1))
    return Timing([r[1] for r in runs], first[1])


MIN_REPEATS = 5  # fewer timed repeats: the wall-clock side of the bound is not judged
NOISE_Z = 3.0  # a bound is missed only by more than this many standard errors of the medians
BOOTSTRAP = 2000  # resamples of the repeats behind the band
BOOTSTRAP_SEED = 20  # fixed: the same timings always get the same verdict


def _resampled_medians(timing: Timing, rng: np.random.Generator) -> np.ndarray:
    """The median of each of BOOTSTRAP resamples (with replacement) of the timed repeats."""
    times = np.asarray(timing.times, dtype=float)
    return np.median(times[rng.integers(0, len(times), (BOOTSTRAP, len(times)))], axis=1)


def _robust_sd(x: np.ndarray) -> float:
    """1.4826 MAD: a standard deviation for normal noise, robust to a few extreme resamples."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def median_bands(n_calls: int, k_calls: int, total: Timing, draft: Timing, ref: Timing,
                 call: Timing) -> tuple[float, float]:
    """(speed-up band, bound band): how far, relatively, the measured speed-up T_ref / T and
    its ratio to S_wall may be off through timing noise alone, as NOISE_Z standard errors of
    their logs. Both are built from medians, so the standard error is that of the medians: a
    seeded bootstrap resamples each timing's repeats, each resample's medians give a speed-up
    and a bound (``n_calls`` = N s and ``k_calls`` = K s calls), and the spread of their logs is
    taken robustly, so one slow repeat does not widen the band. The bound band includes the
    bound's own uncertainty (c, F and T_d are measured too)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    t, d, r, c = (_resampled_medians(tm, rng) for tm in (total, draft, ref, call))
    tiny = np.finfo(float).tiny  # a zero time (a fake clock) must not give log(0)
    t = np.maximum(t, tiny)
    speedup = np.log(np.maximum(r, tiny) / t)
    # speed-up / S_wall = (F + T_d + K s c) / T, with F = max(0, T_ref - N s c)
    to_bound = np.log(np.maximum(np.maximum(0.0, r - n_calls * c) + d + k_calls * c, tiny) / t)
    return (math.expm1(NOISE_Z * _robust_sd(speedup)),
            math.expm1(NOISE_Z * _robust_sd(to_bound)))


def bound_check(plan: SamplingPlan, t0: float, n_measured: int, start_time: float | None,
                ref_nfe: int, total: Timing, draft: Timing, ref: Timing,
                call: Timing) -> BoundCheck:
    """docs/method.md's checks of a warm-start cell, both ways and independent of the method:

    - NFE: K is recounted in the harness's own arithmetic (harness.analysis.speedup) from the
      method's t0 option and from the time the solver actually started (its first network
      call); both must equal the plan's K, the counted calls must be K s and N s, and the NFE
      speed-up N / K exactly.
    - Wall-clock: S_wall = (F + N s c) / (F + T_d + K s c), with c the bare network call timed
      alone, F = T_ref - N s c the reference run's fixed cost per batch (never below 0) and T_d
      the measured draft time. The measured speed-up T_ref / T is "impossible" (broken timing)
      when above S_nfe = N / K (1 + timing_noise), and a "shortfall" when below
      S_wall / (1 + bound_noise), the bands being NOISE_Z standard errors of the medians
      (``median_bands``); with fewer than MIN_REPEATS repeats the wall-clock side is "not
      judged".
    """
    n, k, s = plan.n_steps, plan.k_steps, plan.evals_per_step
    k_option = speedup.warm_steps(t0, n)
    k_started = (speedup.warm_steps(round(start_time, 6), n) if start_time is not None
                 else None)
    nfe_speedup = ref_nfe / n_measured if n_measured else math.inf
    nfe_theory = n / k_option
    nfe_exact = (k_started == k_option == k and n_measured == k * s and ref_nfe == n * s
                 and nfe_speedup == nfe_theory)
    c = call.median
    fixed = max(0.0, ref.median - n * s * c)
    wall_bound = ref.median / (fixed + draft.median + k * s * c)
    wall_speedup = ref.median / total.median
    noise, bound_noise = median_bands(n * s, k * s, total, draft, ref, call)
    if len(total.times) < MIN_REPEATS or len(ref.times) < MIN_REPEATS:
        status = "not judged"
    elif wall_speedup > nfe_theory * (1 + noise) * (1 + 1e-9):  # 1e-9: rounding
        status = "impossible"
    elif wall_speedup * (1 + bound_noise) < wall_bound * (1 - 1e-9):
        status = "shortfall"
    else:
        status = "ok"
    return BoundCheck(
        ref_time_s=ref.median, ref_nfe=ref_nfe, k_observed=k_started,
        start_time_observed=start_time, nfe_speedup=nfe_speedup, nfe_speedup_theory=nfe_theory,
        ideal_speedup=speedup.ideal_speedup(t0), wall_speedup=wall_speedup,
        wall_bound=wall_bound, wall_status=status, call_time_s=c, fixed_time_s=fixed,
        draft_time_s=draft.median, timing_noise=noise, bound_noise=bound_noise,
        ok=bool(nfe_exact and status not in ("shortfall", "impossible")))
