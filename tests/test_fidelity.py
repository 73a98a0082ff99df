"""Tests for the torch-fidelity image metrics in harness.images.metrics (offline)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

pytest.importorskip("torch_fidelity")

import torch_fidelity  # noqa: E402
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY  # noqa: E402

from harness.cache import Cache  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from harness.images import extractor as X  # noqa: E402
from harness.images import metrics as F  # noqa: E402
from harness.images.task import to_uint8  # noqa: E402
from harness.plugins import instantiate  # noqa: E402
from harness.registry import metrics  # noqa: E402

NAMES = ("fid", "kid", "isc", "fidelity-precision", "fidelity-recall")
N = 400


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """Two disjoint sets of real digits, and uniform noise, all (N, 1, 8, 8) in [-1, 1]."""
    images, _ = X.load_digits_data()
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(images), generator=gen)
    return {"a": images[perm[:N]], "b": images[perm[N : 2 * N]],
            "noise": torch.rand(N, 1, 8, 8, generator=gen) * 2 - 1}


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The digits extractor, trained once per worker into a temporary cache."""
    return X.domain_extractor_state((1, 8, 8), 0, Cache(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def results(digits, state) -> dict[str, dict[str, float]]:
    return {"real": F.fidelity_metrics(digits["a"], digits["b"], seed=0),
            "noise": F.fidelity_metrics(digits["noise"], digits["b"], seed=0)}


def test_real_ranks_far_better_than_noise(results) -> None:
    real, noise = results["real"], results["noise"]
    fid, kid = "frechet_inception_distance", "kernel_inception_distance_mean"
    assert noise[fid] > 10 * real[fid] > 0
    assert noise[kid] > 0.2 and abs(real[kid]) < noise[kid] / 10
    assert real["inception_score_mean"] > noise["inception_score_mean"] + 1.5
    assert real["inception_score_mean"] > 6  # ten digit classes, confidently told apart
    assert real["precision"] > 0.75 and real["recall"] > 0.75
    assert noise["precision"] < 0.2 and noise["recall"] < 0.2


def test_plugins_share_one_calculate_metrics_call(digits, state, results, monkeypatch) -> None:
    calls = []
    real_calculate = torch_fidelity.calculate_metrics

    def counting(**kwargs):
        calls.append(kwargs)
        return real_calculate(**kwargs)

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", counting)
    F._LAST[:] = [None, None]
    values = {name: instantiate(metrics, name, {}).compute(digits["a"], digits["b"], seed=0)
              for name in NAMES}
    assert len(calls) == 1
    kw = calls[0]
    assert kw["cuda"] is False and kw["cache"] is False and kw["save_cpu_ram"] is True
    assert kw["kid_subset_size"] == N and kw["feature_extractor"].startswith("wsfm-domain-")
    assert kw["input1"][0].dtype == torch.uint8 and kw["input1"][0].shape == (1, 8, 8)
    real = results["real"]
    assert values["fid"] == real["frechet_inception_distance"]
    assert values["isc"] == real["inception_score_mean"]
    assert values["fidelity-recall"] == real["recall"]
    flags = {name: metrics.get(name).higher_is_better for name in NAMES}
    assert flags == {"fid": False, "kid": False, "isc": True,
                     "fidelity-precision": True, "fidelity-recall": True}


def test_same_seed_same_values_and_seed_drives_kid_subsets(digits, state) -> None:
    small = digits["a"][:150]  # unequal sizes: KID draws random subsets with the seed
    F._LAST[:] = [None, None]
    first = F.fidelity_metrics(small, digits["b"], seed=3)
    F._LAST[:] = [None, None]
    assert F.fidelity_metrics(small, digits["b"], seed=3) == first
    other = F.fidelity_metrics(small, digits["b"], seed=4)
    key = "kernel_inception_distance_mean"
    assert other[key] != first[key]
    assert other["frechet_inception_distance"] == first["frechet_inception_distance"]


def test_quantisation_is_shared_and_idempotent(digits, state) -> None:
    q = to_uint8(torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]))
    assert q.tolist() == [0, 0, 128, 255, 255, 255]
    levels = to_uint8(digits["a"]).float() / 127.5 - 1  # already on the uint8 grid
    assert torch.equal(to_uint8(levels), to_uint8(digits["a"]))


def _tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(40) % 2
    images = torch.rand(40, 1, 4, 4, generator=gen) * 0.5 + labels[:, None, None, None] - 0.75
    return images.clamp(-1, 1), labels


def test_extractor_is_deterministic_and_cached_by_data_hash(tmp_path, monkeypatch) -> None:
    images, labels = _tiny_data()
    one = X.train_domain_extractor(images, labels, seed=5)
    two = X.train_domain_extractor(images, labels, seed=5)
    assert all(torch.equal(one[k], two[k]) for k in one)
    other = X.train_domain_extractor(images, labels, seed=6)
    assert not torch.equal(one["head.1.weight"], other["head.1.weight"])

    monkeypatch.setitem(X.EXTRACTOR_DATA, (1, 4, 4), ("tiny", _tiny_data))
    monkeypatch.setattr(X, "_STATES", {})
    cache = Cache(tmp_path / "c")
    built = X.domain_extractor_state((1, 4, 4), 5, cache)
    assert cache.misses == 1 and len(list((tmp_path / "c" / "extractors").glob("*.pt"))) == 1
    assert all(torch.equal(built[k], one[k]) for k in one)
    monkeypatch.setattr(X, "_STATES", {})
    again = X.domain_extractor_state((1, 4, 4), 5, cache)
    assert cache.hits == 1 and all(torch.equal(again[k], one[k]) for k in one)
    monkeypatch.setitem(X.EXTRACTOR_DATA, (1, 4, 4), ("tiny", lambda: (images.flip(0), labels)))
    X.domain_extractor_state((1, 4, 4), 5, cache)  # other data, other key: trained again
    assert cache.misses == 2


def test_registers_once_per_process(state) -> None:
    name = X.register_domain_extractor(state)
    assert X.register_domain_extractor(state) == name  # second registration: no error
    assert name in FEATURE_EXTRACTORS_REGISTRY and name in X._REGISTERED
    X._REGISTERED.discard(name)  # as after a re-import: torch-fidelity still holds the name
    assert X.register_domain_extractor(state) == name
    assert importlib.import_module("harness.images.metrics") is F
    changed = {k: v.clone() for k, v in state.items()}
    changed["head.1.bias"] += 1.0
    assert X.register_domain_extractor(changed) != name  # other weights, other name


def test_unknown_shape_uses_random_features(digits) -> None:
    rgb = digits["a"].expand(-1, 3, -1, -1)
    real = F.fidelity_metrics(rgb, digits["b"].expand(-1, 3, -1, -1), seed=0)
    noise = F.fidelity_metrics(torch.rand(N, 3, 8, 8) * 2 - 1, digits["b"].expand(-1, 3, -1, -1),
                               seed=0)
    fid = "frechet_inception_distance"
    assert math.isfinite(real[fid]) and noise[fid] > 5 * real[fid]


def test_bad_input_is_a_clear_error(digits) -> None:
    a = digits["a"]
    with pytest.raises(ValueError, match="4-D float tensor"):
        F.fidelity_metrics(a[:, 0], a, 0)
    with pytest.raises(ValueError, match="4-D float tensor"):
        F.fidelity_metrics(to_uint8(a), a, 0)
    with pytest.raises(ValueError, match=r"\(400, 1, 8, 8\).*\(400, 1, 16, 16\)"):
        F.fidelity_metrics(a, torch.zeros(N, 1, 16, 16), 0)
    bad = a.clone()
    bad[3, 0, :3, 0] = float("nan")
    with pytest.raises(ValueError, match="samples holds 3 NaN values in 1 of 400 images"):
        F.fidelity_metrics(bad, a, 0)
    with pytest.raises(ValueError, match="at least 10"):
        F.fidelity_metrics(a[:5], a, 0)
    with pytest.raises(ConfigError, match="extractor must be"):
        instantiate(metrics, "fid", {"extractor": "vgg16"})
    with pytest.raises(ConfigError, match="batch_size"):
        instantiate(metrics, "kid", {"batch_size": 0})


def test_missing_inception_weights_fail_fast(digits, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_call(**kwargs):
        raise AssertionError("torch-fidelity must not be called without the weights")

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", no_call)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    metric = instantiate(metrics, "fid", {"extractor": "inception"})
    with pytest.raises(FileNotFoundError) as err:
        metric.compute(digits["a"], digits["b"], seed=0)
    assert F.INCEPTION_FILE in str(err.value) and str(folder) in str(err.value)
    assert F.INCEPTION_FILE == "weights-inception-2015-12-05-6726825d.pth"
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert URL_INCEPTION_V3 == F.INCEPTION_URL
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        F.inception_weights_path(tmp_path / "nowhere.pth")
    folder.mkdir(parents=True)
    (folder / F.INCEPTION_FILE).write_bytes(b"")
    assert F.inception_weights_path() == folder / F.INCEPTION_FILE


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(digits, state, results) -> None:
    F._LAST[:] = [None, None]
    gpu = F.fidelity_metrics(digits["a"].cuda(), digits["b"].cuda(), seed=0)
    for key, value in results["real"].items():
        assert gpu[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key


def test_metric_module_path_is_a_builtin() -> None:
    owners = {metrics.entry(name).owner for name in NAMES}
    assert all(o.startswith("wsfm-bench (entry point harness.images.metrics:") for o in owners)
    assert set(NAMES) <= set(metrics.names())
