"""Sampler overhead: the harness's solver loop vs a bare loop vs torchdiffeq, side by side.

    python benchmarks/bench_sampler.py [--device cpu|cuda] [--steps 10 50 100] [--batch 2000]
                                       [--repeats 7] [--hidden 128] [--threads N]

One TimeMLP (eval, no_grad), one input batch, one explicit grid time_grid(0.0, N) (float64,
as the harness builds it). Variants: harness = solvers.integrate(CountingNetwork(net), ...)
as the runner calls it; bare = an inline loop of network calls (the floor); torchdiffeq =
odeint(..., method="euler") on the same grid (Euler only). Timed with harness.run.timing.Clock
(CUDA events on GPU), after warm-up, repeats interleaved (ABCABC...).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
from collections.abc import Callable

import torch

from harness.nn.mlp import TimeMLP
from harness.run.nfe import CountingNetwork
from harness.run.timing import Clock, Timing
from wsfm import solvers
from wsfm.schedule import time_grid

Run = Callable[[], tuple[torch.Tensor, int]]  # one sampling run -> (final x, network calls)


def bare_loop(net: torch.nn.Module, x: torch.Tensor, grid: torch.Tensor, solver: str) -> Run:
    """The same updates as wsfm.solvers, inline: no step functions, no counting wrapper."""

    def run() -> tuple[torch.Tensor, int]:
        y, calls, times = x, 0, grid.tolist()
        n, dt, dev = y.shape[0], y.dtype, y.device
        for t0, t1 in zip(times[:-1], times[1:], strict=True):
            h = t1 - t0
            if solver == "euler":
                y = y + h * net(y, torch.full((n,), t0, dtype=dt, device=dev))
                calls += 1
            elif solver == "midpoint":
                y_mid = y + 0.5 * h * net(y, torch.full((n,), t0, dtype=dt, device=dev))
                y = y + h * net(y_mid, torch.full((n,), t0 + 0.5 * h, dtype=dt, device=dev))
                calls += 2
            elif solver == "heun":
                d0 = net(y, torch.full((n,), t0, dtype=dt, device=dev))
                d1 = net(y + h * d0, torch.full((n,), t1, dtype=dt, device=dev))
                y = y + 0.5 * h * (d0 + d1)
                calls += 2
            else:  # rk4
                tm = torch.full((n,), t0 + 0.5 * h, dtype=dt, device=dev)
                k1 = net(y, torch.full((n,), t0, dtype=dt, device=dev))
                k2 = net(y + 0.5 * h * k1, tm)
                k3 = net(y + 0.5 * h * k2, tm)
                k4 = net(y + h * k3, torch.full((n,), t1, dtype=dt, device=dev))
                y = y + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
                calls += 4
        return y, calls

    return run


def harness_run(net: torch.nn.Module, x: torch.Tensor, grid: torch.Tensor, solver: str) -> Run:
    counter = CountingNetwork(net)  # the runner's wrapping

    def run() -> tuple[torch.Tensor, int]:
        return solvers.integrate(counter, x, grid, solver), counter.reset()

    return run


def torchdiffeq_run(net: torch.nn.Module, x: torch.Tensor, grid: torch.Tensor) -> Run:
    from torchdiffeq import odeint

    counter = CountingNetwork(net)
    t_grid = grid.to(x.device)  # the explicit grid, same dtype (float64) as the harness's
    n = x.shape[0]

    def func(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return counter(y, t.expand(n))

    def run() -> tuple[torch.Tensor, int]:
        return odeint(func, x, t_grid, method="euler")[-1], counter.reset()

    return run


def bench(clock: Clock, runs: dict[str, Run], nfe: int, warmup: int, repeats: int
          ) -> tuple[dict[str, Timing], dict[str, torch.Tensor], dict[str, str]]:
    outs: dict[str, torch.Tensor] = {}
    errors: dict[str, str] = {}
    firsts: dict[str, float] = {}
    for name, fn in runs.items():
        for _ in range(warmup):
            try:
                (out, calls), s = clock.time(fn)
            except Exception as e:  # only torchdiffeq may fail without crashing the benchmark
                if name != "torchdiffeq":
                    raise
                errors[name] = f"{type(e).__name__}: {e}".strip()
                break
            firsts.setdefault(name, s)
            assert calls == nfe, f"{name}: {calls} network calls, expected {nfe}"
            outs[name] = out
    live = {k: v for k, v in runs.items() if k not in errors}
    times: dict[str, list[float]] = {k: [] for k in live}
    gc.collect()
    for _ in range(repeats):  # interleaved: every variant sees the same machine noise
        for name, fn in live.items():
            (out, calls), s = clock.time(fn)
            assert calls == nfe, f"{name}: {calls} network calls, expected {nfe}"
            times[name].append(s)
            outs[name] = out
    return {k: Timing(v, firsts[k]) for k, v in times.items()}, outs, errors


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {model}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--solvers", nargs="+", default=list(solvers.STEPS), choices=solvers.STEPS)
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench_sampler: --device cuda requested but CUDA is not available; skipping.")
        return 0
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    try:
        import torchdiffeq
        tdq = f"torchdiffeq {torchdiffeq.__version__}"
    except ImportError:
        tdq = "torchdiffeq not installed: that variant is skipped"
    print(f"device: {describe(device)} | torch {torch.__version__} | {tdq}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads: {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} "
          f"inter-op | {os.cpu_count()} cores, load avg (1 min) {load:.2f} | python "
          f"{platform.python_version()}")
    print(f"TimeMLP(dim=2, hidden={a.hidden}) eval+no_grad | batch {a.batch} float32 | grid "
          f"time_grid(0.0, N) float64 | warmup {a.warmup}, repeats {a.repeats} interleaved\n")

    torch.manual_seed(0)
    net = TimeMLP(dim=2, hidden=a.hidden).to(device).eval()
    x0 = torch.randn(a.batch, 2, generator=torch.Generator().manual_seed(1)).to(device)
    clock = Clock(device)
    rows, summary = [], []
    with torch.no_grad():
        for solver in a.solvers:
            for n_steps in a.steps:
                grid = time_grid(0.0, n_steps)
                nfe = (len(grid) - 1) * solvers.EVALS_PER_STEP[solver]
                runs = {"harness": harness_run(net, x0, grid, solver),
                        "bare": bare_loop(net, x0, grid, solver)}
                if solver == "euler" and not tdq.endswith("skipped"):
                    runs["torchdiffeq"] = torchdiffeq_run(net, x0, grid)
                timings, outs, errors = bench(clock, runs, nfe, a.warmup, a.repeats)
                for name, tm in timings.items():
                    ms = [1e3 * s for s in tm.times]
                    rows.append((solver, n_steps, name, nfe, tm.median * 1e3, min(ms), max(ms),
                                 tm.relative_spread, tm.median * 1e6 / nfe))
                for name, err in errors.items():
                    rows.append((solver, n_steps, name, nfe, None, None, None, None, err))
                h = timings["harness"]
                parts = []
                for other in ("bare", "torchdiffeq"):
                    if other in timings:
                        o = timings[other]
                        diff = (outs["harness"] - outs[other]).abs().max().item()
                        parts.append(f"harness/{other} {h.median / o.median:5.3f} (min "
                                     f"{min(h.times) / min(o.times):5.3f}) max|diff| {diff:.1e}")
                    elif other in errors:
                        parts.append(f"harness/{other} n/a ({other} FAILED)")
                summary.append(f"{solver:8s} N={n_steps:<4d} NFE={nfe:<4d} " + " | ".join(parts))

    print(f"{'solver':8s} {'N':>4s} {'variant':11s} {'NFE':>4s} {'median ms':>10s} "
          f"{'min ms':>9s} {'max ms':>9s} {'spread':>7s} {'us/call':>8s}")
    for solver, n_steps, name, nfe, med, lo, hi, rel, per in rows:
        head = f"{solver:8s} {n_steps:4d} {name:11s} {nfe:4d} "
        if med is None:
            print(head + f"FAILED: {per}")
        else:
            print(head + f"{med:10.3f} {lo:9.3f} {hi:9.3f} {rel:6.0%} {per:8.1f}")
    print("\nspread = (max - min) / median. Ratios of medians (and of minima); NFE counted on"
          " every run, equal across variants:")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
