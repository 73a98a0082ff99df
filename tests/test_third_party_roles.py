"""Roles, not names: a third-party warm start and a third-party reference model, declared
through entry points in a package made here, take their places in the headline and in
`summary --json` like the built-ins, with no change to the harness."""

from __future__ import annotations

import json
from pathlib import Path

from harness.analysis.noninferiority import VERDICTS
from tests.test_third_party_plugin import cli, install_plugin

PLUGINS = '''
from dataclasses import dataclass

import torch

from harness.plugins import Method, SamplingPlan
from harness.registry import check_draft
from harness.roles import Role
from wsfm.methods import full_model
from wsfm.schedule import check_start_time, time_grid


def euler(net, x, grid):
    for t, t_next in zip(grid[:-1], grid[1:]):
        x = x + (t_next - t) * net(x, torch.full((len(x),), float(t), device=x.device))
    return x


@dataclass
class PlainEuler(Method):
    """Third-party full model: Euler steps of 1/N from Gaussian noise."""

    role = Role.REFERENCE
    title = "Plain Euler"

    def prepare(self, ctx, n_steps):
        grid = time_grid(0.0, n_steps).tolist()
        return SamplingPlan(
            network=full_model(ctx),
            draw_start=lambda n, g: torch.randn((n, 2), generator=g, device=ctx.device),
            integrate=lambda net, x, g: euler(net, x, grid),
            expected_nfe=len(grid) - 1, n_steps=n_steps, k_steps=len(grid) - 1,
            solver="plain-euler")


@dataclass
class BlendStart(Method):
    """Third-party warm start: the full model from t0, started at the draft blended with
    noise."""

    draft: str = "good"
    t0: float = 0.5
    role = Role.WARM_START
    title = "Blend start"

    def __post_init__(self):
        self.t0 = check_start_time(self.t0, allow_zero=False)

    def check_task(self, task):
        check_draft(task, self.draft)

    def starts_from(self):
        return self.draft

    def start_time(self):
        return self.t0

    def prepare(self, ctx, n_steps):
        draft, grid = ctx.draft(self.draft), time_grid(self.t0, n_steps).tolist()

        def draw_start(n, g):
            noise = torch.randn((n, 2), generator=g, device=ctx.device)
            return self.t0 * draft.sample(n, g) + (1 - self.t0) * noise

        return SamplingPlan(
            network=full_model(ctx), draw_start=draw_start,
            integrate=lambda net, x, g: euler(net, x, grid),
            expected_nfe=len(grid) - 1, n_steps=n_steps, k_steps=len(grid) - 1, t0=self.t0,
            solver="plain-euler", start="blend")
'''

SUITE = """
name = "roles"
seeds = [0, 1, 2]
selection_seeds = [10, 11]
budgets = [2, 4]
n_samples = 300
n_eval = 300
repeats = 1
training = { steps = 60 }

[[tasks]]
name = "two-moons"
n_train = 600
n_test = 400

[[methods]]
name = "draft-only"
draft = "good"

[[methods]]
name = "plain-euler"
budgets = [1, 2, 4, 8]

[[methods]]
name = "blend-start"
t0 = 0.5
"""


def test_third_party_warm_start_and_reference_take_part_by_role(tmp_path: Path) -> None:
    env = install_plugin(tmp_path, "wsfm-bench-roles-demo", "roles_demo", PLUGINS, "method",
                         {"plain-euler": "roles_demo:PlainEuler",
                          "blend-start": "roles_demo:BlendStart"})
    (tmp_path / "roles.toml").write_text(SUITE)
    run = cli(["run", "roles.toml", "--run-id", "roles", "--quiet", "--no-report",
               "--workers", "1"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    run_dir = tmp_path / "results" / "roles"

    summary = cli(["summary", str(run_dir), "--json"], env, tmp_path)
    assert summary.returncode == 0, summary.stderr
    [row] = json.loads(summary.stdout)  # one warm start, one draft: one row
    assert (row["task"], row["method"], row["title"], row["draft"]) == (
        "two-moons", "blend-start", "Blend start", "good")
    # The reference is the third-party full model: its frontier is the only one in the run.
    assert row["reference"]["method"] == "plain-euler"
    assert row["reference"]["title"] == "Plain Euler"
    assert row["reference"]["n_budget"] in (1, 2, 4, 8)
    assert row["variant"] is not None and row["t0"] == 0.5 and row["k_steps"] in (1, 2)
    assert row["draft_mean"] is not None  # the built-in floor, found by its role
    assert row["verdict"] in VERDICTS and row["n_evaluation_seeds"] == 3

    text = cli(["summary", str(run_dir)], env, tmp_path)
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("| two-moons"))
    assert "| Blend start |" in line and "Plain Euler" in line
