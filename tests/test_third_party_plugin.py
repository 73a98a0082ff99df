"""A plugin package made here, installed with pip, found through entry points, run by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = '''
from dataclasses import dataclass

import torch

from harness.plugins import Method, SamplingPlan


@dataclass
class ShiftedNoise(Method):
    """Third-party test method: Gaussian noise pushed through the full FM network once."""

    scale: float = 1.0

    def prepare(self, ctx, n_steps):
        from wsfm.methods import full_model

        def draw_start(n, g):
            return self.scale * torch.randn((n, 2), generator=g, device=ctx.device)

        def integrate(net, x, g):
            t = torch.zeros(len(x), device=x.device)
            for _ in range(n_steps):
                x = x + net(x, t) / n_steps
            return x

        return SamplingPlan(network=full_model(ctx), draw_start=draw_start, integrate=integrate,
                            expected_nfe=n_steps, n_steps=n_steps, k_steps=n_steps)
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.0.1"

[project.entry-points."wsfm_bench.{kind}s"]
{entry_points}
'''


def install_plugin(tmp_path: Path, name: str, module: str, source: str, kind: str,
                   entry_points: dict[str, str]) -> dict[str, str]:
    """pip-install package ``name`` (one module, ``source``, declaring ``entry_points`` of
    ``kind``: plugin name -> "module:Class") into tmp_path; the environment that finds it."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / f"{module}.py").write_text(textwrap.dedent(source))
    points = "\n".join(f'{n} = "{v}"' for n, v in entry_points.items())
    (pkg / "pyproject.toml").write_text(PYPROJECT.format(name=name, kind=kind,
                                                         entry_points=points))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(pkg)],
        check=True, capture_output=True, timeout=300,
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")]), "WSFM_BENCH_CACHE": str(tmp_path / "cache")}


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`wsfm-bench ARGS` in a fresh interpreter with ``env``."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_entry_point_plugin_runs_through_cli(tmp_path: Path) -> None:
    env = install_plugin(tmp_path, "wsfm-bench-thirdparty-demo", "thirdparty_demo", PLUGIN,
                         "method", {"shifted-noise": "thirdparty_demo:ShiftedNoise"})

    listing = cli(["list", "method"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "shifted-noise" in listing.stdout
    assert "Third-party test method" in listing.stdout
    line = next(x for x in listing.stdout.splitlines() if "shifted-noise" in x)
    assert line.endswith("[third-party: wsfm-bench-thirdparty-demo 0.0.1]")
    assert not any("third-party" in x for x in listing.stdout.splitlines() if "full-fm" in x)

    run = cli(["run", "--task", "two-moons", "--method", "shifted-noise:scale=0.5",
               "--budgets", "3", "--seeds", "0", "--train-steps", "20", "--n-samples", "200",
               "--quiet", "--no-report", "--run-id", "tp"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    cells = list((tmp_path / "results" / "tp" / "cells").glob("*.json"))
    assert len(cells) == 1
    record = json.loads(cells[0].read_text())
    assert record["identity"]["method"] == "shifted-noise"
    assert record["identity"]["role"] == "baseline"  # it declares no role
    assert record["sampling"]["nfe_measured"] == 3 and record["sampling"]["nfe_ok"] is True
    assert record["identity"]["variant"] == "scale=0.5"
    # The manifest says which package (and version) each plugin of the run came from.
    plugins = json.loads((tmp_path / "results" / "tp" / "manifest.json").read_text())["plugins"]
    assert plugins["method"]["shifted-noise"]["package"] == "wsfm-bench-thirdparty-demo"
    assert plugins["method"]["shifted-noise"]["version"] == "0.0.1"
    assert plugins["task"]["two-moons"]["package"] == "wsfm-bench"
