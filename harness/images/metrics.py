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
- ``"domain"`` (harness.images.extractor): a small CNN classifier trained on the task's
  TRAINING split with its class labels (``Metric.setup``, called by the runner with the
  task's data), never on the held-out reference, so the feature space does not change with
  n_eval or depend on the set being judged. A task without labels (an image folder) gets the
  same CNN with seeded random weights (random features: they rank gross differences, but their
  IS means little). Used
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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from harness.cache import tensor_sha256
from harness.images.extractor import (
    domain_extractor_for_task,
    domain_extractor_state,
    register_domain_extractor,
    torch_fidelity,
)
from harness.images.pixels import to_uint8
from harness.plugins import Metric

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[-1]
_MIN_IMAGES = 10  # IS uses 10 splits; PRC needs k + 1 = 4 neighbours


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
    result = torch_fidelity().calculate_metrics(
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

    def min_points(self) -> int:
        return _MIN_IMAGES

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
class FID(_FidelityMetric):
    """Frechet distance between extractor features of samples and reference (lower is better)."""

    higher_is_better, result_key = False, "frechet_inception_distance"


class KID(_FidelityMetric):
    """Kernel (cubic polynomial MMD) distance of extractor features (lower is better)."""

    higher_is_better, result_key = False, "kernel_inception_distance_mean"


class InceptionScore(_FidelityMetric):
    """Inception score of the samples from the extractor's logits (higher is better)."""

    higher_is_better, result_key = True, "inception_score_mean"


class FidelityPrecision(_FidelityMetric):
    """torch-fidelity precision: share of samples in the reference's feature manifold."""

    higher_is_better, result_key = True, "precision"


class FidelityRecall(_FidelityMetric):
    """torch-fidelity recall: share of reference images in the samples' feature manifold."""

    higher_is_better, result_key = True, "recall"
