"""Image metrics through torch-fidelity 0.4.0, offline: FID, KID, IS, precision and recall.

Images are float tensors (N, C, H, W) in [-1, 1]. Samples and reference are quantised to
uint8 the same way (round((x + 1) * 127.5), clamped to 0..255) and handed to
``torch_fidelity.calculate_metrics`` as Datasets. One call yields all five numbers and the
latest result is memoised, so the five plugins of a cell extract features once. The cell's
seed is torch-fidelity's ``rng_seed`` (KID subsets, IS split shuffling); with equal set sizes
of at most 1000, KID's subset is the whole set, so one subset replaces 100 identical ones.

Feature extractor (option ``extractor``):

- ``"auto"`` (default): ``"inception"`` for CIFAR-10-sized colour images (3 x 32 x 32 and up)
  when the Inception-v3 weights file is on disk, else ``"domain"``.
- ``"domain"``: a small CNN classifier trained on the task's TRAINING split with its class
  labels (``Metric.setup``, called by the runner with the task's data), never on the
  held-out reference, so the feature space does not change with n_eval or depend on the set
  being judged. A task without labels (an image folder) gets the same CNN with seeded random
  weights (random features: they rank gross differences, but their IS means little). Used
  directly, without ``setup`` (tests, notebooks), the extractor comes from a labelled corpus
  registered for the image shape (``EXTRACTOR_DATA``: 1x8x8 is scikit-learn's digits).
  The weights depend on ``extractor_seed`` (not the cell's seed: every cell is measured in
  one feature space), are cached on disk by a hash of the corpus and training settings
  (``Cache`` kind "extractors"), and are registered with torch-fidelity once per process
  under a name that holds the hash of the weights.
- ``"inception"``: torch-fidelity's "inception-v3-compat", only from a local weights file
  (``inception_weights``, else torch.hub's checkpoint folder under TORCH_HOME); a missing
  file is a FileNotFoundError naming file and folder before torch-fidelity is called, never
  a download. Grey images are repeated to three channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from harness.cache import Cache, stable_hash, tensor_sha256
from harness.plugins import Metric
from harness.registry import metrics
from harness.tasks.images import to_uint8

EXTRACTOR_VERSION = 1
FEATURE_DIM = 128
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[-1]
_TRAIN = {"epochs": 15, "batch_size": 128, "lr": 3e-3, "width": 16}
_MIN_IMAGES = 10  # IS uses 10 splits; PRC needs k + 1 = 4 neighbours


class DomainCNN(nn.Module):
    """Small CNN on (N, C, H, W) floats in [-1, 1]: returns (features, logits)."""

    def __init__(self, channels: int, n_classes: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * width, FEATURE_DIM),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(FEATURE_DIM, n_classes))
        # Set after training so the corpus' features have unit spread (keeps KID's cubic
        # kernel, whose gamma is 1 / FEATURE_DIM, in a sane range).
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features * self.feature_scale, self.head(features)


def load_digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits as (N, 1, 8, 8) floats in [-1, 1], with their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    return images, torch.tensor(digits.target, dtype=torch.long)


# Image shape (C, H, W) -> (corpus name, loader of labelled images in [-1, 1]).
EXTRACTOR_DATA: dict[tuple[int, int, int], tuple[str, Callable[[], tuple[torch.Tensor, ...]]]] = {
    (1, 8, 8): ("sklearn-digits", load_digits_data),
}


def register_extractor_data(
    shape: tuple[int, int, int], name: str, loader: Callable[[], tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Train the domain extractor for images of ``shape`` on ``loader()``'s labelled images."""
    EXTRACTOR_DATA[tuple(shape)] = (name, loader)


@torch.enable_grad()  # also when a caller (a metric's compute) runs under no_grad
def train_domain_extractor(
    images: torch.Tensor, labels: torch.Tensor | None, seed: int
) -> dict[str, torch.Tensor]:
    """A DomainCNN state dict trained (CPU, deterministic) to classify ``images``.

    The images are quantised exactly as the metric quantises its inputs. ``labels=None`` gives
    the seeded random initialisation (random features, 10 logits).
    """
    n_classes = int(labels.max()) + 1 if labels is not None else 10
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DomainCNN(images.shape[1], n_classes, _TRAIN["width"])
    x = to_uint8(images).float() / 127.5 - 1.0
    if labels is not None:
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=_TRAIN["lr"])
        for _ in range(_TRAIN["epochs"]):
            for idx in torch.randperm(len(x), generator=gen).split(_TRAIN["batch_size"]):
                loss = nn.functional.cross_entropy(net(x[idx])[1], labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            net.feature_scale.fill_(1.0 / float(net(x[:4096])[0].std().clamp_min(1e-8)))
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


_STATES: dict[str, dict[str, torch.Tensor]] = {}  # in-process memo, by cache key hash
_DATA_SHA: dict[tuple[Any, ...], str] = {}  # (shape, corpus, loader) -> sha256 of its data


def domain_extractor_state(
    shape: tuple[int, int, int], seed: int = 0, cache: Cache | None = None
) -> dict[str, torch.Tensor]:
    """The domain extractor's weights for images of ``shape``: memoised, else cached on disk."""
    shape = tuple(int(d) for d in shape)
    name, loader = EXTRACTOR_DATA.get(shape, ("random-features", None))

    def data() -> tuple[torch.Tensor, torch.Tensor | None]:
        return loader() if loader else (torch.zeros(1, *shape), None)

    if (shape, name, loader) not in _DATA_SHA:
        images, labels = data()
        _DATA_SHA[shape, name, loader] = tensor_sha256(
            images, *(() if labels is None else (labels,)))
    key = {"extractor": "domain-cnn", "version": EXTRACTOR_VERSION, "data": name,
           "data_sha256": _DATA_SHA[shape, name, loader], "shape": list(shape), "seed": seed,
           "train": _TRAIN, "feature_dim": FEATURE_DIM}
    memo = stable_hash(key)
    if memo not in _STATES:
        _STATES[memo] = (cache or Cache()).load_or_build(
            "extractors", key, lambda: train_domain_extractor(*data(), seed))
    return _STATES[memo]


_TRAIN_SHA: dict[tuple[Any, ...], str] = {}  # (id, data_ptr, shape) of a task's split -> sha


def domain_extractor_for_task(
    train: torch.Tensor, labels: torch.Tensor | None, seed: int = 0, cache: Cache | None = None
) -> dict[str, torch.Tensor]:
    """The domain extractor trained on a task's training split (with its class labels);
    without labels, seeded random features. Memoised, else cached on disk by a hash of the
    split, its labels and the training settings."""
    memo_key = (id(train), train.data_ptr(), tuple(train.shape),
                None if labels is None else (id(labels), labels.data_ptr()))
    if memo_key not in _TRAIN_SHA:
        _TRAIN_SHA[memo_key] = tensor_sha256(to_uint8(train.cpu()),
                                       *(() if labels is None else (labels.cpu(),)))
    key = {"extractor": "domain-cnn", "version": EXTRACTOR_VERSION,
           "data": "task-train" if labels is not None else "random-features",
           "data_sha256": _TRAIN_SHA[memo_key], "shape": list(train.shape[1:]), "seed": seed,
           "train": _TRAIN, "feature_dim": FEATURE_DIM}
    memo = stable_hash(key)
    if memo not in _STATES:
        def build() -> dict[str, torch.Tensor]:
            images = train.cpu() if labels is not None else torch.zeros(1, *train.shape[1:])
            return train_domain_extractor(images, None if labels is None else labels.cpu(), seed)

        _STATES[memo] = (cache or Cache()).load_or_build("extractors", key, build)
    return _STATES[memo]


def _torch_fidelity() -> Any:
    try:
        import torch_fidelity
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "image metrics need torch-fidelity (a dependency of wsfm-bench): "
            "pip install -c constraints.txt torch-fidelity==0.4.0") from exc
    return torch_fidelity


_REGISTERED: set[str] = set()  # names this process registered with torch-fidelity


def register_domain_extractor(state: dict[str, torch.Tensor]) -> str:
    """Register ``state`` with torch-fidelity (once per process); returns its name."""
    tf = _torch_fidelity()
    name = "wsfm-domain-" + tensor_sha256(*(state[k] for k in sorted(state)))[:16]
    if name in _REGISTERED or name in tf.registry.FEATURE_EXTRACTORS_REGISTRY:  # or: re-import
        _REGISTERED.add(name)
        return name
    weights = {k: v.clone() for k, v in state.items()}

    class DomainFeatureExtractor(tf.FeatureExtractorBase):
        """torch-fidelity adapter of a trained DomainCNN (uint8 images in, features/logits)."""

        def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
            super().__init__(name, features_list)
            width, channels = weights["body.0.weight"].shape[:2]
            self.net = DomainCNN(channels, weights["head.1.bias"].numel(), width)
            self.net.load_state_dict(weights)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("features", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return "logits" if metric == "isc" else "features"

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            return torch.zeros(1, weights["body.0.weight"].shape[1], 8, 8, dtype=torch.uint8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            features, logits = self.net(x.float() / 127.5 - 1.0)
            out = {"features": features, "logits": logits}
            return tuple(out[f] for f in self.features_list)

    DomainFeatureExtractor.__name__ = DomainFeatureExtractor.__qualname__ = name
    tf.register_feature_extractor(name, DomainFeatureExtractor)
    _REGISTERED.add(name)
    return name


def inception_weights_path(path: str | Path | None = None) -> Path:
    """The local Inception-v3 weights file, or a FileNotFoundError saying where to put it."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = Path(path).expanduser() if path is not None else folder / INCEPTION_FILE
    if not found.is_file():
        where = (f"inception_weights={str(path)!r} is not a file" if path is not None else
                 f"torch-fidelity expects {INCEPTION_FILE} in {folder} (torch.hub's checkpoint "
                 f"folder, $TORCH_HOME/hub/checkpoints), and it is not there")
        raise FileNotFoundError(
            f"Inception-v3 weights not found: {where}. The harness never downloads them: fetch "
            f"{INCEPTION_URL} on a machine with internet and copy {INCEPTION_FILE} to {folder} "
            f"(or set the metric option inception_weights=PATH), or use extractor='domain'."
        )
    return found


EXTRACTORS = ("auto", "domain", "inception")


def resolve_auto_extractor(shape: tuple[int, ...], inception_weights: str | None = None) -> str:
    """"auto": Inception-v3 for CIFAR-10-sized colour images (3 x 32 x 32 and larger) when its
    weights file is on disk, else the domain extractor (which never needs a download)."""
    c, h, w = shape
    if c == 3 and min(h, w) >= 32:
        try:
            inception_weights_path(inception_weights)
            return "inception"
        except FileNotFoundError:
            pass
    return "domain"


class _UInt8Images(Dataset):
    """A fixed set of uint8 images (N, C, H, W), one tensor per item, for torch-fidelity."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _check_images(name: str, x: Any) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 4-D float tensor (N, C, H, W) in [-1, 1], got {what}")
    if len(x) < _MIN_IMAGES:
        raise ValueError(f"{name} has {len(x)} images; image metrics need at least {_MIN_IMAGES}")
    n_nan = int(torch.isnan(x).sum())
    if n_nan:
        n_img = int(torch.isnan(x).flatten(1).any(dim=1).sum())
        raise ValueError(f"{name} holds {n_nan} NaN values in {n_img} of {len(x)} images")


_LAST: list[Any] = [None, None]  # [key, result] of the latest calculate_metrics call


def fidelity_metrics(
    samples: torch.Tensor, reference: torch.Tensor, seed: int, extractor: str = "auto",
    extractor_seed: int = 0, inception_weights: str | None = None, batch_size: int = 256,
    domain_state: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """All of torch-fidelity's FID, KID, IS and PRC numbers for ``samples`` vs ``reference``.

    ``domain_state``: the domain extractor's weights (from ``domain_extractor_for_task``);
    without it, the extractor for the image shape's registered corpus (``EXTRACTOR_DATA``)."""
    _check_images("samples", samples)
    _check_images("reference", reference)
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"image shape mismatch: samples are {tuple(samples.shape)}, reference "
                         f"is {tuple(reference.shape)} (C, H, W must agree)")
    if extractor not in EXTRACTORS:
        raise ValueError(f"extractor must be one of {', '.join(EXTRACTORS)}, got {extractor!r}")
    if extractor == "auto":
        extractor = resolve_auto_extractor(tuple(samples.shape[1:]), inception_weights)
    extra: dict[str, Any] = {}
    if extractor == "inception":
        if samples.shape[1] not in (1, 3):
            raise ValueError(f"Inception-v3 needs 1 or 3 channels, got {samples.shape[1]}")
        extra["feature_extractor_weights_path"] = str(inception_weights_path(inception_weights))
        fe_name = "inception-v3-compat"
    else:
        fe_name = register_domain_extractor(
            domain_state or domain_extractor_state(tuple(samples.shape[1:]), extractor_seed))
    x, y = to_uint8(samples).cpu(), to_uint8(reference).cpu()
    if extractor == "inception" and x.shape[1] == 1:
        x, y = x.expand(-1, 3, -1, -1).contiguous(), y.expand(-1, 3, -1, -1).contiguous()
    key = (tensor_sha256(x), tensor_sha256(y), int(seed), fe_name, str(extra), batch_size)
    if _LAST[0] == key:
        return dict(_LAST[1])
    result = _torch_fidelity().calculate_metrics(
        input1=_UInt8Images(x), input2=_UInt8Images(y), cuda=samples.is_cuda,
        feature_extractor=fe_name, fid=True, kid=True, isc=True, prc=True, save_cpu_ram=True,
        cache=False, verbose=False, kid_subset_size=min(1000, len(x), len(y)),
        kid_subsets=1 if len(x) == len(y) <= 1000 else 100,  # subsets = whole sets: all equal
        rng_seed=int(seed) % 2**32, batch_size=batch_size, **extra,
    )
    _LAST[:] = [key, {k: float(v) for k, v in result.items()}]
    return dict(_LAST[1])


@dataclass
class _FidelityMetric(Metric):
    """One number out of torch-fidelity's shared result (see the module docstring)."""

    extractor: str = "auto"  # "auto", "domain" or "inception" (see resolve_auto_extractor)
    extractor_seed: int = 0
    inception_weights: str | None = None
    batch_size: int = 256
    result_key: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.extractor not in EXTRACTORS:
            raise ValueError(
                f"extractor must be one of {', '.join(EXTRACTORS)}, got {self.extractor!r}")
        for opt, low in (("extractor_seed", 0), ("batch_size", 1)):
            value = getattr(self, opt)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{opt} must be an integer >= {low}, got {value!r}")

        self._domain_state: dict[str, torch.Tensor] | None = None

    def setup(self, train: torch.Tensor, train_labels: torch.Tensor | None) -> None:
        """Train (or load) the domain extractor on the task's training split."""
        if self.extractor != "inception":  # "auto" may still resolve to the domain extractor
            self._domain_state = domain_extractor_for_task(train, train_labels,
                                                           self.extractor_seed)

    @torch.no_grad()
    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        result = fidelity_metrics(samples, reference, seed, self.extractor, self.extractor_seed,
                                  self.inception_weights, self.batch_size, self._domain_state)
        return result[self.result_key]


# Subclasses of a dataclass stay dataclasses (their options are _FidelityMetric's fields).
@metrics.register("fid")
class FID(_FidelityMetric):
    """Frechet distance between extractor features of samples and reference (lower is better)."""

    higher_is_better, result_key = False, "frechet_inception_distance"


@metrics.register("kid")
class KID(_FidelityMetric):
    """Kernel (cubic polynomial MMD) distance of extractor features (lower is better)."""

    higher_is_better, result_key = False, "kernel_inception_distance_mean"


@metrics.register("isc")
class InceptionScore(_FidelityMetric):
    """Inception score of the samples from the extractor's logits (higher is better)."""

    higher_is_better, result_key = True, "inception_score_mean"


@metrics.register("fidelity-precision")
class FidelityPrecision(_FidelityMetric):
    """torch-fidelity precision: share of samples in the reference's feature manifold."""

    higher_is_better, result_key = True, "precision"


@metrics.register("fidelity-recall")
class FidelityRecall(_FidelityMetric):
    """torch-fidelity recall: share of reference images in the samples' feature manifold."""

    higher_is_better, result_key = True, "recall"
