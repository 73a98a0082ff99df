"""The t0 advisor (wsfm.advisor): from samples alone, a later t0 for a better draft, on
points, images and text; the warm starts' advise hook runs before any training and the run
writes advisor.json (harness.run.advice)."""

from __future__ import annotations

import json
import tomllib

import pytest
import torch

from harness.cache import Cache
from harness.plugins import instantiate
from harness.registry import drafts, tasks
from harness.run.suite import parse_suite
from wsfm import advisor

COARSE = (0.1, 0.3, 0.5, 0.7, 0.9)


@pytest.fixture(scope="module")
def moons() -> torch.Tensor:
    data = instantiate(tasks, "two-moons", {"n_train": 6000, "n_test": 10}).load().train
    return data


def _gmm(train: torch.Tensor, k: int, n: int) -> torch.Tensor:
    draft = instantiate(drafts, "gmm", {"n_components": k})
    draft.fit(train, torch.Generator().manual_seed(0))
    return draft.sample(n, torch.Generator().manual_seed(1))


def test_two_moons_better_drafts_get_later_t0(moons: torch.Tensor) -> None:
    data, held = moons[:1200], moons[1200:2400]
    picks = {}
    for name, x in (("data itself", held), ("good: 8-component GMM", _gmm(moons, 8, 1200)),
                    ("poor: one Gaussian", _gmm(moons, 1, 1200))):
        out = advisor.advise_t0(x, data, torch.Generator().manual_seed(0))
        picks[name] = out["t0"]
        assert out["grid"] == list(advisor.GRID) and len(out["accuracy"]) == len(advisor.GRID)
        assert 0.5 < out["threshold"] < 0.56 and out["n_test"] == 1200
    # A draft distributed as the data is never told apart: the top of the grid.
    assert picks["data itself"] >= 0.9
    assert picks["poor: one Gaussian"] < picks["good: 8-component GMM"]
    assert picks["good: 8-component GMM"] >= 0.8 and picks["poor: one Gaussian"] <= 0.65


def test_deterministic_for_a_seed(moons: torch.Tensor) -> None:
    x = _gmm(moons, 2, 400)
    a = advisor.advise_t0(x, moons[:400], torch.Generator().manual_seed(3), grid=COARSE)
    b = advisor.advise_t0(x, moons[:400], torch.Generator().manual_seed(3), grid=COARSE)
    assert a["accuracy"] == b["accuracy"] and a["t0"] == b["t0"]


def _blobs(n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 1, 8, 8) images in [-1, 1]: one bright Gaussian blob at a random place."""
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    centre = torch.rand(n, 2, generator=g) * 5 + 1.5
    d2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    return (2 * torch.exp(-d2 / 2) - 1).unsqueeze(1)


def test_image_shaped_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    data, same = _blobs(600, g), _blobs(600, g)
    noise = torch.rand(600, 1, 8, 8, generator=g) * 2 - 1  # a useless draft
    good = advisor.advise_t0(same, data, torch.Generator().manual_seed(0), "images",
                             grid=COARSE)
    poor = advisor.advise_t0(noise, data, torch.Generator().manual_seed(0), "images",
                             grid=COARSE)
    assert good["t0"] == 0.9
    assert poor["t0"] is None or poor["t0"] < good["t0"]


def _text(n: int, g: torch.Generator, length: int = 32) -> torch.Tensor:
    """(n, length) torch.long ids of a repeated phrase at random offsets (vocabulary 27)."""
    from harness.text.alphabet import encode

    phrase = torch.tensor(encode("the cat sat on the mat "))
    start = torch.randint(len(phrase), (n,), generator=g)
    pos = (start[:, None] + torch.arange(length)) % len(phrase)
    return phrase[pos]


def test_text_shaped_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    data, same = _text(600, g), _text(600, g)
    uniform = torch.randint(27, (600, 32), generator=g)
    kw = {"modality": "text", "vocab_size": 27, "grid": COARSE}
    good = advisor.advise_t0(same, data, torch.Generator().manual_seed(0), **kw)
    poor = advisor.advise_t0(uniform, data, torch.Generator().manual_seed(0), **kw)
    assert good["t0"] == 0.9
    assert poor["t0"] is None or poor["t0"] <= 0.3
    masked = advisor.noised(data, 0.25, torch.Generator().manual_seed(0), 27)
    assert masked.dtype == torch.long and int(masked.max()) == 27
    assert abs(float((masked == 27).float().mean()) - 0.75) < 0.02
    assert torch.equal(masked[masked != 27], data[masked != 27])
    feats = advisor.features(masked, 27)
    assert feats.shape == (600, 27 + 27 * 27)  # unigrams and bigrams of unmasked tokens


def test_continuous_noise_path_and_isotonic() -> None:
    x = torch.ones(4, 3)
    eps = torch.randn((4, 3), generator=torch.Generator().manual_seed(5))
    out = advisor.noised(x, 0.3, torch.Generator().manual_seed(5))
    assert torch.allclose(out, 0.3 * x + 0.7 * eps)
    assert advisor.isotonic([0.5, 0.47, 0.6, 0.5, 0.7]) == pytest.approx(
        [0.485, 0.485, 0.55, 0.55, 0.7])


def test_binomial_quantile_is_exact() -> None:
    from scipy import stats as sps

    for n in (1, 10, 1200, 4000):
        for q in (0.01, 0.5, 0.95, 1 - 0.05 / 19, 0.999):
            assert advisor.binomial_quantile(q, n) == int(sps.binom.ppf(q, n, 0.5)), (q, n)


def test_bad_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(100, 2, generator=g)
    with pytest.raises(ValueError, match="shape"):
        advisor.advise_t0(pts, torch.randn(100, 3), g)
    with pytest.raises(ValueError, match="vocab_size"):
        advisor.advise_t0(pts.long(), pts.long(), g, modality="text")
    with pytest.raises(ValueError, match="grid"):
        advisor.advise_t0(pts, pts, g, grid=(0.0, 0.5))
    with pytest.raises(ValueError, match="too few"):
        advisor.advise_t0(pts[:5], pts[:5], g)


SUITE = """
name = "adv"
seeds = [0]
budgets = [4]
n_samples = 200
n_eval = 200
repeats = 1
[training]
steps = 30
batch_size = 64
[[tasks]]
name = "two-moons"
n_train = 600
n_test = 200
[[methods]]
name = "draft-only"
draft = "good"
[[methods]]
name = "warm-start"
draft = "poor"
t0 = 0.5
"""


def test_run_suite_writes_advice_before_training(tmp_path) -> None:
    from harness.records.store import ADVICE_FILE, advised_t0, read_advice
    from harness.report.document import write_report
    from harness.run import runner
    from harness.run.advice import advise_run

    suite = parse_suite(tomllib.loads(SUITE), "test suite")
    cache = Cache(tmp_path / "cache")
    run_dir = runner.run_suite(suite, tmp_path / "results", cache=cache, progress=False)
    saved = json.loads((run_dir / ADVICE_FILE).read_text())
    # Only the warm-start methods' drafts (draft-only has no t0), at the first seed.
    assert saved["seeds"] == {"two-moons": 0} and set(saved["tasks"]["two-moons"]) == {"poor"}
    poor = read_advice(run_dir)["two-moons"]["poor"]
    assert poor["t0"] is None or 0 < poor["t0"] < 1
    assert len(poor["accuracy"]) == len(advisor.GRID)
    # The advice is cached: a second call builds nothing.
    misses = cache.misses
    advise_run(suite, run_dir, cache, progress=False)
    assert cache.misses == misses
    md = write_report(run_dir).read_text()
    pick = "none (distinguishable at every t)" if poor["t0"] is None else f"{poor['t0']:g}"
    assert f"| two-moons | poor | {pick} |" in md
    assert advised_t0(poor) == poor["t0"] and advised_t0(None) is None
    assert read_advice(tmp_path) == {}
