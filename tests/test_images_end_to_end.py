"""Digits through the whole path: every image method with exact NFE, metrics, report grids."""

from __future__ import annotations

import tomllib

import pytest

from harness.cache import Cache
from harness.records.store import load_run, read_cells
from harness.report.document import write_report
from harness.run import runner
from harness.run.suite import parse_suite
from tests.synthetic import fields_of

SUITE = """
name = "tiny-digits"
seeds = [0]
budgets = [5]
n_samples = 64
n_eval = 64
repeats = 1
[training]
steps = 15
batch_size = 16
[[tasks]]
name = "digits"
base = 4
gan_steps = 10
gan_width = 4
pca_components = 4
[[methods]]
name = "draft-only"
draft = ["good", "poor"]
[[methods]]
name = "full-fm"
[[methods]]
name = "ws-fm"
t0 = 0.8
start = ["draft", "noised-draft"]
[[methods]]
name = "warm-start"
draft = "poor"
t0 = 0.6
[[methods]]
name = "ddim"
[[methods]]
name = "ar"
steps = 10
d_model = 16
n_head = 2
n_layer = 1
"""


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    suite = parse_suite(tomllib.loads(SUITE), "test")
    return runner.run_suite(suite, tmp / "results", cache=Cache(tmp / "cache"), progress=False)


def test_every_image_method_counts_exact_nfe(digits_run) -> None:
    cells = load_run(digits_run).drop_duplicates("cell_id").set_index("variant")
    assert cells["nfe_ok"].all()
    assert cells.loc["solver=euler", "nfe_measured"] == 5
    assert cells.loc["good t0=0.8 draft scratch euler", "nfe_measured"] == 1  # ceil(0.2 * 5)
    assert cells.loc["poor t0=0.6 euler", "nfe_measured"] == 2
    assert cells.loc["eta=0", "nfe_measured"] == 5
    ar = cells[cells["method"] == "ar"].iloc[0]
    assert ar["nfe_measured"] == 64  # one call per pixel
    assert (cells[cells["method"] == "draft-only"]["nfe_measured"] == 0).all()


def test_image_metrics_and_clamp_counts_are_recorded(digits_run) -> None:
    df = load_run(digits_run)
    assert set(df["metric"]) == {"fid", "kid", "isc", "fidelity-precision", "fidelity-recall",
                                 "copy-rate"}
    assert df["value"].notna().all()
    for record in map(fields_of, read_cells(digits_run)):
        assert set(record["finalize"]) == {"clamped", "clamped_fraction"}
        assert record["finalize"]["clamped"] >= 0


def test_report_has_sample_grids_per_method_and_budget(digits_run) -> None:
    md = write_report(digits_run).read_text()
    grids = list((digits_run / "report" / "figures" / "grids").glob("*.png"))
    assert len(grids) == len(load_run(digits_run)["cell_id"].unique())
    assert "Sample grids per method and budget" in md and "clamped" in md
    assert (digits_run / "report" / "figures" / "digits_samples.png").stat().st_size > 1000
