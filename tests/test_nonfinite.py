"""NaN samples: counted and recorded, metrics NaN, the run goes on; nothing fixed silently."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass

import torch

from harness.cache import Cache
from harness.plugins import Method, SamplingPlan
from harness.records.store import load_run, read_cells
from harness.registry import methods
from harness.run import runner
from harness.run.suite import parse_suite
from tests.conftest import TINY_SUITE
from tests.synthetic import fields_of


@methods.register("test-nan-method")
@dataclass
class NaNMethod(Method):
    """Test-only: one network call, then a few NaN values."""

    def prepare(self, ctx, n_steps):
        from wsfm.methods import full_model

        def integrate(net, x, g):
            x = net(x, torch.zeros(len(x)))
            x[:3, 0] = float("nan")
            return x

        return SamplingPlan(network=full_model(ctx),
                            draw_start=lambda n, g: torch.randn(n, 2, generator=g),
                            integrate=integrate, expected_nfe=1, n_steps=1, k_steps=1)


def test_nan_samples_are_counted_and_give_nan_metrics(tmp_path) -> None:
    text = TINY_SUITE + '[[methods]]\nname = "test-nan-method"\n[[methods]]\nname = "ddim"\n'
    run_dir = runner.run_suite(parse_suite(tomllib.loads(text)), tmp_path,
                               cache=Cache(tmp_path / "c"), progress=False)
    records = {r["method"]: r for r in map(fields_of, read_cells(run_dir))}
    assert records["test-nan-method"]["nonfinite"] == 3
    assert all(math.isnan(m["value"]) for m in records["test-nan-method"]["metrics"].values())
    assert records["ddim"]["nonfinite"] == 0  # the run went on
    df = load_run(run_dir)
    assert df[df.method == "ddim"]["value"].notna().all()
    from harness.report.document import write_report

    assert "test-nan-method" in write_report(run_dir).read_text()
