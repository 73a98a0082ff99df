"""The "domain" feature extractor of the image metrics (harness.images.metrics): a small CNN
classifier trained on a task's labelled training split (or a registered labelled corpus for
an image shape, ``EXTRACTOR_DATA``), cached on disk by a hash of its data and settings, and
registered with torch-fidelity once per process under a name holding the hash of its weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.cache import Cache, tensor_sha256
from harness.hashing import stable_hash
from harness.images.pixels import to_uint8
from harness.nn.training import adam

EXTRACTOR_VERSION = 1
FEATURE_DIM = 128
_TRAIN = {"epochs": 15, "batch_size": 128, "lr": 3e-3, "width": 16}


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
        opt = adam(net.parameters(), lr=_TRAIN["lr"])
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


def torch_fidelity() -> Any:
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
    tf = torch_fidelity()
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
