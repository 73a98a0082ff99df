"""Image drafts: the DC-GAN ("dcgan") and PCA + Gaussian ("pca-gaussian") on sklearn digits."""

from __future__ import annotations

import io

import pytest
import torch
from sklearn.datasets import load_digits

from harness.errors import ConfigError
from harness.images.drafts import DCGANDraft, PCAGaussianDraft
from harness.plugins import instantiate
from harness.registry import drafts

GAN = {"width": 16, "latent_dim": 16}  # small nets keep the tests fast
TRAINED = {"width": 32, "latent_dim": 32, "steps": 200}  # enough to beat noise clearly


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    images = torch.tensor(load_digits().images, dtype=torch.float32)
    return (images / 16 * 2 - 1)[:, None]  # (1797, 1, 8, 8) in [-1, 1]


@pytest.fixture(scope="module")
def trained_gan(digits: torch.Tensor) -> DCGANDraft:
    draft = DCGANDraft(**TRAINED)
    draft.fit(digits, gen(0))
    return draft


@pytest.fixture(scope="module")
def pca(digits: torch.Tensor) -> PCAGaussianDraft:
    draft = PCAGaussianDraft(n_components=8)
    draft.fit(digits, gen(0))
    return draft


def moment_gaps(samples: torch.Tensor, data: torch.Tensor) -> tuple[float, float]:
    """Mean |pixel| gap of the mean images and of the per-pixel standard deviations."""
    mean_gap = (samples.mean(0) - data.mean(0)).abs().mean().item()
    std_gap = (samples.std(0) - data.std(0)).abs().mean().item()
    return mean_gap, std_gap


def nn_distance(samples: torch.Tensor, data: torch.Tensor) -> float:
    """Mean Euclidean distance from each sample to its nearest training image."""
    flat = samples.reshape(len(samples), -1)
    return torch.cdist(flat, data.reshape(len(data), -1)).min(dim=1).values.mean().item()


def round_trip(state: dict) -> dict:
    """Through bytes the way the disk cache stores it (weights_only load)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=True)


def test_registered() -> None:
    assert drafts.get("dcgan") is DCGANDraft
    assert drafts.get("pca-gaussian") is PCAGaussianDraft
    assert "DC-GAN" in drafts.entry("dcgan").description


def test_dcgan_fit_is_seeded_and_leaves_global_rng_alone(digits: torch.Tensor) -> None:
    rng_before = torch.get_rng_state()
    a, b, c = (DCGANDraft(steps=10, **GAN) for _ in range(3))
    a.fit(digits, gen(3))
    b.fit(digits, gen(3))
    c.fit(digits, gen(4))
    assert torch.equal(torch.get_rng_state(), rng_before)
    sa, sb, sc = (d.state_dict()["generator"] for d in (a, b, c))
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_dcgan_sample_shape_range_and_seeding(trained_gan: DCGANDraft) -> None:
    x = trained_gan.sample(500, gen(1))
    assert x.shape == (500, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, trained_gan.sample(500, gen(1)))
    assert not torch.equal(x, trained_gan.sample(500, gen(2)))
    assert x.std(0).mean() > 0.05  # not collapsed to one image
    assert trained_gan.sample(0, gen(1)).shape == (0, 1, 8, 8)


def test_dcgan_state_round_trip(trained_gan: DCGANDraft) -> None:
    state = round_trip(trained_gan.state_dict())
    assert state["shape"] == [1, 8, 8]
    fresh = DCGANDraft(**TRAINED)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.sample(300, gen(5)), trained_gan.sample(300, gen(5)))
    with pytest.raises(ValueError, match="width"):
        DCGANDraft(width=8).load_state_dict(state)


def test_dcgan_beats_noise_and_an_untrained_generator(
    trained_gan: DCGANDraft, digits: torch.Tensor
) -> None:
    untrained = DCGANDraft(**{**TRAINED, "steps": 1})
    untrained.fit(digits, gen(0))
    ours = trained_gan.sample(1000, gen(1))
    trained = moment_gaps(ours, digits)
    noise = torch.rand(1000, 1, 8, 8, generator=gen(1)) * 2 - 1
    for other in (untrained.sample(1000, gen(1)), noise):
        baseline = moment_gaps(other, digits)
        assert trained[0] < 0.5 * baseline[0]
        assert trained[1] < 0.7 * baseline[1]
        assert nn_distance(ours, digits) < 0.7 * nn_distance(other, digits)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_dcgan_other_image_sizes(shape: tuple[int, int, int]) -> None:
    data = torch.rand(64, *shape, generator=gen(0)) * 2 - 1
    draft = DCGANDraft(width=8, latent_dim=8, steps=5, batch_size=16)
    draft.fit(data, gen(0))
    x = draft.sample(7, gen(1))
    assert x.shape == (7, *shape) and x.min() >= -1 and x.max() <= 1
    fresh = DCGANDraft(width=8, latent_dim=8)
    fresh.load_state_dict(round_trip(draft.state_dict()))
    assert torch.equal(fresh.sample(7, gen(1)), x)


@pytest.mark.parametrize("shape", [(1, 8, 6), (1, 9, 9)])
def test_dcgan_rejects_unsupported_shapes(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="square|size"):
        DCGANDraft(width=4, steps=1).fit(torch.zeros(4, *shape), gen(0))


def test_sampling_before_fit_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        DCGANDraft().sample(3, gen(0))
    with pytest.raises(RuntimeError, match="fit"):
        PCAGaussianDraft().sample(3, gen(0))


@pytest.mark.parametrize(
    ("plugin", "options", "name"),
    [
        ("dcgan", {"latent_dim": 0}, "latent_dim"),
        ("dcgan", {"width": -1}, "width"),
        ("dcgan", {"steps": 0}, "steps"),
        ("dcgan", {"batch_size": 0}, "batch_size"),
        ("dcgan", {"steps": 1.5}, "steps"),
        ("pca-gaussian", {"n_components": 0}, "n_components"),
    ],
)
def test_bad_options_name_the_option(plugin: str, options: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        drafts.get(plugin)(**options)
    with pytest.raises(ConfigError, match=name):
        instantiate(drafts, plugin, options)


def test_pca_is_deterministic_and_round_trips(pca: PCAGaussianDraft, digits: torch.Tensor) -> None:
    x = pca.sample(400, gen(1))
    assert x.shape == (400, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, pca.sample(400, gen(1)))
    assert not torch.equal(x, pca.sample(400, gen(2)))
    again = PCAGaussianDraft(n_components=8)
    again.fit(digits, gen(9))  # fitting uses no randomness
    assert torch.equal(again.sample(400, gen(1)), x)
    fresh = PCAGaussianDraft(n_components=8)
    fresh.load_state_dict(round_trip(pca.state_dict()))
    assert torch.equal(fresh.sample(400, gen(1)), x)


def test_pca_lives_in_a_low_dimensional_subspace(pca: PCAGaussianDraft) -> None:
    x = pca.sample(2000, gen(1)).reshape(2000, -1).double()
    # clamping bends a few pixels out of the subspace; the spectrum is still dominated by 8
    s = torch.linalg.svdvals(x - x.mean(0))
    assert (s[8:] ** 2).sum() < 0.05 * (s**2).sum()


def test_pca_is_closer_to_the_data_than_noise(pca: PCAGaussianDraft, digits: torch.Tensor) -> None:
    ours = moment_gaps(pca.sample(1000, gen(1)), digits)
    noise = moment_gaps(torch.rand(1000, 1, 8, 8, generator=gen(1)) * 2 - 1, digits)
    assert ours[0] < 0.2 * noise[0]
    assert ours[1] < noise[1]


def test_pca_rejects_too_many_components(digits: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="n_components"):
        PCAGaussianDraft(n_components=65).fit(digits, gen(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_drafts_sample_on_the_device(trained_gan: DCGANDraft, pca: PCAGaussianDraft) -> None:
    cuda = torch.device("cuda")
    for draft in (trained_gan, pca):
        fresh = type(draft)(**{k: getattr(draft, k) for k in draft.__dataclass_fields__})
        fresh.to(cuda).load_state_dict(draft.state_dict())  # moved before loading: still on cuda
        x = fresh.sample(100, torch.Generator(device=cuda).manual_seed(1))
        assert x.device.type == "cuda" and x.shape == (100, 1, 8, 8)
        assert draft.state_dict().keys() == fresh.state_dict().keys()
        assert all(
            v.device.type == "cpu" for v in fresh.state_dict().values() if torch.is_tensor(v)
        )
