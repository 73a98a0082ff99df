"""Tests for the point-cloud metrics in harness.points.metrics."""

from __future__ import annotations

import pytest
import torch

from harness.points.metrics import (
    EnergyDistance,
    KNNPrecision,
    KNNRecall,
    MaximumMeanDiscrepancy,
    SlicedWasserstein,
)

N = 1000


def _gaussian(seed: int, n: int = N, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=gen) * scale + shift


@pytest.fixture(scope="module")
def ref() -> torch.Tensor:
    return _gaussian(0)


@pytest.fixture(scope="module")
def same() -> torch.Tensor:
    return _gaussian(1, n=800)  # same distribution, different size


@pytest.fixture(scope="module")
def shifted() -> torch.Tensor:
    return _gaussian(2, shift=4.0)


@pytest.fixture(scope="module")
def narrow() -> torch.Tensor:
    return _gaussian(3, scale=0.2)  # mode-collapsed: precise but poor recall


@pytest.mark.parametrize(
    ("metric", "good_max", "bad_min"),
    [
        (SlicedWasserstein(), 0.1, 1.0),
        (MaximumMeanDiscrepancy(), 0.01, 0.2),
        (EnergyDistance(), 0.02, 1.0),
    ],
)
def test_distances_near_zero_for_same_and_large_for_shifted(
    metric, good_max: float, bad_min: float, ref, same, shifted
) -> None:
    assert metric.higher_is_better is False
    good = metric.compute(same, ref, seed=0)
    bad = metric.compute(shifted, ref, seed=0)
    assert abs(good) < good_max
    assert bad > bad_min
    assert bad > 20 * abs(good)


def test_swd_matches_known_value_for_shift() -> None:
    # A pure translation by v shifts every projection by <v, u>: SWD^2 = E_u <v, u>^2 = |v|^2/2.
    x = _gaussian(4)
    v = torch.tensor([3.0, 4.0])
    value = SlicedWasserstein(n_projections=4000).compute(x + v, x, seed=0)
    assert value == pytest.approx(5.0 / 2**0.5, rel=0.03)


def test_swd_unequal_sizes_exact_on_1d_toy() -> None:
    # {0, 1} vs {0, 0.5, 1} in 1-D: quantile functions differ by 0.5 on [1/3, 1/2) and
    # [1/2, 2/3); W2^2 = 2 * (1/6) * 0.25 = 1/12 for every projection (u = +-1).
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [0.5], [1.0]])
    value = SlicedWasserstein(n_projections=8).compute(x, y, seed=0)
    assert value == pytest.approx((1 / 12) ** 0.5, rel=1e-5)


def test_scaled_distribution_is_worse(ref, same, narrow) -> None:
    for metric in (SlicedWasserstein(), MaximumMeanDiscrepancy(), EnergyDistance()):
        assert metric.compute(narrow, ref, seed=0) > 5 * abs(metric.compute(same, ref, seed=0))


def test_precision_recall_near_one_for_same_distribution(ref, same) -> None:
    for metric in (KNNPrecision(), KNNRecall()):
        assert metric.higher_is_better is True
        assert metric.compute(same, ref, seed=0) > 0.9


def test_precision_recall_drop_for_shift_and_collapse(ref, shifted, narrow) -> None:
    precision, recall = KNNPrecision(), KNNRecall()
    assert precision.compute(shifted, ref, seed=0) < 0.5
    assert recall.compute(shifted, ref, seed=0) < 0.2
    # Collapsed samples sit inside the reference manifold but cover little of it.
    assert precision.compute(narrow, ref, seed=0) > 0.95
    assert recall.compute(narrow, ref, seed=0) < 0.3


def test_precision_recall_are_swapped_roles(ref, narrow) -> None:
    assert KNNPrecision(k=5).compute(narrow, ref, 0) == KNNRecall(k=5).compute(ref, narrow, 0)


@pytest.mark.parametrize(
    "metric",
    [
        SlicedWasserstein(n_projections=32),
        MaximumMeanDiscrepancy(),
        EnergyDistance(),
        KNNPrecision(),
        KNNRecall(),
    ],
)
def test_deterministic_for_same_seed(metric, ref, shifted) -> None:
    assert metric.compute(shifted, ref, seed=7) == metric.compute(shifted, ref, seed=7)


def test_swd_seed_changes_projections(ref, shifted) -> None:
    metric = SlicedWasserstein(n_projections=4)
    assert metric.compute(shifted, ref, seed=1) != metric.compute(shifted, ref, seed=2)


def test_mmd_median_subsampling_and_fixed_bandwidth() -> None:
    x, y = _gaussian(5, n=1500), _gaussian(6, n=1500, shift=1.0)
    mmd = MaximumMeanDiscrepancy()
    assert mmd.compute(x, y, seed=3) == mmd.compute(x, y, seed=3)
    assert MaximumMeanDiscrepancy(bandwidth=1.5).compute(x, y, seed=0) > 0.05


def test_mmd_handles_identical_points() -> None:
    x = torch.zeros(10, 2)
    assert MaximumMeanDiscrepancy().compute(x, x.clone(), seed=0) == pytest.approx(0.0, abs=1e-9)


def test_chunked_pair_sums_match_dense(monkeypatch) -> None:
    import harness.points.metrics as points

    x, y = _gaussian(8, n=300), _gaussian(9, n=200, shift=0.5)
    dense = EnergyDistance().compute(x, y, 0), MaximumMeanDiscrepancy().compute(x, y, 0)
    dense_pr = KNNPrecision().compute(x, y, 0), KNNRecall().compute(x, y, 0)
    monkeypatch.setattr(points, "_CHUNK_ELEMENTS", 1000)  # a few rows per chunk
    chunked = EnergyDistance().compute(x, y, 0), MaximumMeanDiscrepancy().compute(x, y, 0)
    assert chunked == pytest.approx(dense, rel=1e-5, abs=1e-7)
    assert (KNNPrecision().compute(x, y, 0), KNNRecall().compute(x, y, 0)) == dense_pr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swd_column_sort_on_the_cpu_equals_torchs(dtype) -> None:
    """The CPU path sorts with NumPy (faster); its values are torch's, bit for bit, ties and
    a non-contiguous input included."""
    import harness.points.metrics as points

    q = torch.randn(300, 40, generator=torch.Generator().manual_seed(3), dtype=dtype)
    q[::7] = q[1]  # repeated rows: ties in every column
    for view in (q, q.T.contiguous().T):
        assert torch.equal(points._sort_columns(view), view.sort(dim=0).values)


def test_float64_and_mixed_devices_keep_working(ref, same) -> None:
    value = EnergyDistance().compute(same.double(), ref, seed=0)
    assert value == pytest.approx(EnergyDistance().compute(same, ref, seed=0), abs=1e-4)


ALL = [SlicedWasserstein(), MaximumMeanDiscrepancy(), EnergyDistance(), KNNPrecision(), KNNRecall()]


@pytest.mark.parametrize("metric", ALL)
def test_nan_and_inf_are_rejected_with_counts(metric, ref) -> None:
    bad = ref.clone()
    bad[3, 0] = float("nan")
    bad[3, 1] = float("nan")
    bad[10, 1] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite values in samples: 2 NaN and 1 inf in 2 of"):
        metric.compute(bad, ref, seed=0)
    with pytest.raises(ValueError, match=r"non-finite values in reference"):
        metric.compute(ref, bad, seed=0)


@pytest.mark.parametrize("metric", ALL)
def test_dimension_mismatch_is_rejected(metric, ref) -> None:
    with pytest.raises(ValueError, match=r"feature dimension mismatch: samples have d=3"):
        metric.compute(torch.randn(50, 3), ref, seed=0)
    with pytest.raises(ValueError, match=r"2-D tensor"):
        metric.compute(torch.randn(50), ref, seed=0)


def test_too_few_points_for_k() -> None:
    with pytest.raises(ValueError, match=r"samples has 3 points; this metric needs at least 4"):
        KNNPrecision(k=3).compute(torch.randn(3, 2), torch.randn(10, 2), seed=0)
    with pytest.raises(ValueError, match=r"reference has 5 points; .* at least 6"):
        KNNRecall(k=5).compute(torch.randn(10, 2), torch.randn(5, 2), seed=0)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: SlicedWasserstein(n_projections=0), "n_projections must be a positive integer"),
        (lambda: KNNPrecision(k=0), "k must be a positive integer"),
        (lambda: KNNRecall(k=2.5), "k must be a positive integer"),
        (lambda: MaximumMeanDiscrepancy(bandwidth=-1.0), "bandwidth must be a positive number"),
    ],
)
def test_bad_options(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_descriptions_are_one_line() -> None:
    for cls in (SlicedWasserstein, MaximumMeanDiscrepancy, EnergyDistance, KNNPrecision, KNNRecall):
        first = cls.__doc__.strip().splitlines()[0]
        assert "better" in first and len(first) <= 100


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu(ref, shifted) -> None:
    for metric in ALL:
        cpu = metric.compute(shifted, ref, seed=0)
        gpu = metric.compute(shifted.cuda(), ref, seed=0)  # reference moved to the samples' device
        assert gpu == pytest.approx(cpu, rel=1e-3, abs=1e-4)


def test_mmd_bandwidth_comes_from_the_reference_alone() -> None:
    """Every method of a seed is judged with the same kernel: the median-heuristic bandwidth
    is the reference set's, whatever the samples are."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(500, 2, generator=g)
    mmd = MaximumMeanDiscrepancy()
    stats = mmd.reference_stats(y, seed=0)
    assert float(stats["bandwidth"]) == pytest.approx(float(torch.pdist(y).median()))
    for scale in (0.1, 3.0):  # samples far narrower or wider than the reference
        x = scale * torch.randn(400, 2, generator=g)
        assert mmd.compute(x, y, seed=0) == pytest.approx(mmd.compute(x, y, seed=0, stats=stats))
    assert mmd.compute(3.0 * y, y, seed=0) > mmd.compute(1.1 * y, y, seed=0) > 0
