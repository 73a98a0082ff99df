"""Image tasks: scikit-learn's 8x8 digits, MNIST, Fashion-MNIST, CIFAR-10 and any image folder.

Images are float tensors (N, C, H, W) in [-1, 1] on the uint8 grid: every loader first makes
uint8 pixels u (digits: round(v * 255 / 16) of its 0..16 values) and maps them to
u / 127.5 - 1, the same grid ``finalize`` quantises samples onto, so data and samples are
judged alike. Each task has a "good" draft (a DC-GAN) and a "poor" one (a Gaussian on the
leading principal components), the refiner (``refiner_name``: the one-to-one assignment of
drafts to training images by default, or the paper's nearest neighbour), and the torch-fidelity
metrics (FID first). The network is the small time-conditioned U-Net of ``harness.nn.unet``.

The torchvision data sets are never downloaded unless ``download = true``; without it and
without the files the task says where it looked and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from harness.cache import default_cache_dir
from harness.checks import check_positive_ints
from harness.images.pixels import from_uint8, to_uint8
from harness.nn.training import TrainConfig
from harness.nn.unet import TimeUNet
from harness.plugins import Task, TaskData
from harness.points.refiner import continuous_refiner

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _subset(n_total: int, n: int | None, rng: np.random.Generator, what: str) -> np.ndarray:
    """Sorted indices of a seeded random subset of size ``n`` (all of them when n is None)."""
    if n is None:
        return np.arange(n_total)
    if n > n_total:
        raise ValueError(f"{what}={n} exceeds the {n_total} images available")
    return np.sort(rng.permutation(n_total)[:n])


@dataclass
class ImageTask(Task):
    """An image data set (N, C, H, W) in [-1, 1]; subclasses implement ``load_uint8``."""

    base: int = 32
    mults: tuple[int, ...] = (1, 2)
    time_dim: int = 64
    gan_steps: int = 1500  # the good draft: a DC-GAN trained this many steps
    gan_width: int = 32
    pca_components: int = 8  # the poor draft: a Gaussian in this many PCA dimensions
    control_blur: float = 0.7  # the positive control's corruption: a blur of this many pixels
    refiner_name: str = "assignment"
    refiner_options: dict[str, Any] = field(default_factory=dict)

    channels = 1  # declared shape: class constants here, options in image-folder
    image_size = None
    draft_options = ("gan_steps", "gan_width", "pca_components", "control_blur",
                     "refiner_name", "refiner_options", "n_pairs")
    modality = "images"
    metrics = ("fid", "kid", "isc", "fidelity-precision", "fidelity-recall", "copy-rate")
    primary_metric = "fid"
    samples_kept = 256  # per cell: enough for the 64-image grids, small on disk
    # Chosen on digits (full FM, 1 CPU thread): about 35 ms per step at batch 128, so about
    # 2 minutes per network; lr 2e-3 beat 1e-3 and 5e-4, and 3000 steps beat 1500 and 600.
    train_config = TrainConfig(steps=3000, batch_size=128, lr=2e-3)
    n_pairs: int = 10_000  # (draft, refined) training pairs for the warm-start models

    def __post_init__(self) -> None:
        check_positive_ints(self, "gan_steps", "gan_width", "pca_components", "n_pairs")
        self.refiner = continuous_refiner(self.refiner_name, self.refiner_options)
        if not self.control_blur > 0:
            raise ValueError(f"control_blur={self.control_blur} must be positive (pixels)")
        self.mults = tuple(int(m) for m in self.mults)
        if self.base < 1 or self.time_dim < 2 or not self.mults or min(self.mults) < 1:
            raise ValueError(
                f"need base >= 1, time_dim >= 2 and mults >= 1; got base={self.base}, "
                f"time_dim={self.time_dim}, mults={list(self.mults)}"
            )

    @property
    def control_options(self) -> dict[str, float]:
        return {"blur": self.control_blur}

    @property
    def drafts(self) -> dict[str, tuple[str, dict[str, int]]]:
        """A DC-GAN is the good draft; a Gaussian in PCA space the poor one."""
        return {
            "good": ("dcgan", {"steps": self.gan_steps, "width": self.gan_width}),
            "poor": ("pca-gaussian", {"n_components": self.pca_components}),
        }

    def load_uint8(self) -> tuple[torch.Tensor, ...]:
        """(train, test[, train_labels]): uint8 tensors of shape (N, C, H, W), and the training
        images' class labels where the data set has them."""
        raise NotImplementedError

    def load(self) -> TaskData:
        train, test, *labels = self.load_uint8()
        for name, u in (("train", train), ("test", test)):
            self.check_shape(u, name)
        return TaskData(train=from_uint8(train).contiguous(), test=from_uint8(test).contiguous(),
                        train_labels=labels[0] if labels else None)

    def check_shape(self, u: torch.Tensor, name: str) -> None:
        """A clear error unless ``u`` is (N, channels, S, S) with S the declared size."""
        if u.dim() != 4 or u.shape[1] != self.channels:
            raise ValueError(
                f"task {type(self).__name__}: {name} images have shape {tuple(u.shape)}, "
                f"expected (N, {self.channels}, H, W) ({self.channels} channel(s))"
            )
        height, width = u.shape[-2:]
        if height != width:
            raise ValueError(
                f"task {type(self).__name__}: {name} images are {width}x{height}, not square "
                "(set image_size to resize them)"
            )
        if self.image_size is not None and height != self.image_size:
            raise ValueError(
                f"task {type(self).__name__}: {name} images are {width}x{height}, expected "
                f"{self.image_size}x{self.image_size}"
            )
        if len(u) == 0:
            raise ValueError(f"task {type(self).__name__}: the {name} split is empty")

    def image_side(self) -> int:
        return int(self.image_size or 0)

    def make_network(self) -> nn.Module:
        return TimeUNet(self.channels, self.base, self.mults, self.time_dim, self.image_side())

    def finalize(self, samples: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Clamp to [-1, 1] (counting what was outside) and quantise to the uint8 grid.

        A NaN counts as out of range and becomes 0 (the runner skips finalize for samples
        that are not finite, so this is only a guard).
        """
        x = samples.float()
        n_out = int((~((x >= -1.0) & (x <= 1.0))).sum())
        quantised = from_uint8(to_uint8(torch.nan_to_num(x, nan=0.0)))
        fraction = n_out / x.numel() if x.numel() else 0.0
        return quantised, {"clamped": n_out, "clamped_fraction": fraction}


@dataclass
class Digits(ImageTask):
    """scikit-learn's 1797 real 8x8 handwritten digits, 1 channel (ships with scikit-learn)."""

    n_test: int = 360
    data_seed: int = 0

    image_size = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.n_test <= 1796:
            raise ValueError(f"n_test={self.n_test} must be between 1 and 1796")

    def load_uint8(self) -> tuple[torch.Tensor, ...]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        values = digits.images  # (1797, 8, 8), 0..16
        u = torch.as_tensor(np.round(values * 255.0 / 16.0).astype(np.uint8))[:, None]
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        perm = torch.as_tensor(np.random.default_rng(self.data_seed).permutation(len(u)))
        return u[perm[self.n_test :]], u[perm[: self.n_test]], labels[perm[self.n_test :]]


@dataclass
class TorchvisionImages(ImageTask):
    """A torchvision data set with its own train/test split, read from ``root``."""

    root: str | None = None
    download: bool = False
    n_train: int | None = None
    n_test: int | None = None
    data_seed: int = 0

    dataset_name: ClassVar[str] = ""
    dataset_class: ClassVar[str] = ""
    train_config = TrainConfig(steps=20_000, batch_size=128, lr=1e-3)  # sized for a GPU

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be at least 1 (or unset for all)")

    @property
    def folder(self) -> Path:
        """Where the data set lives: ``root``, else the benchmark cache's datasets folder."""
        if self.root:
            return Path(self.root).expanduser()
        return default_cache_dir() / "datasets" / self.dataset_name

    def _split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.dataset_class)
        try:
            ds = cls(str(self.folder), train=train, download=self.download)
        except RuntimeError as exc:
            if self.download:
                raise
            raise ValueError(
                f"{self.dataset_class} data not found in {self.folder} ({exc}); pass "
                f"download = true to fetch them there, or point root at a local copy"
            ) from exc
        data = torch.as_tensor(np.asarray(ds.data))
        labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
        images = data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        return images, labels

    def load_uint8(self) -> tuple[torch.Tensor, ...]:
        (train, labels), (test, _) = self._split(True), self._split(False)
        rng = np.random.default_rng(self.data_seed)
        i_train = torch.as_tensor(_subset(len(train), self.n_train, rng, "n_train"))
        i_test = torch.as_tensor(_subset(len(test), self.n_test, rng, "n_test"))
        return train[i_train], test[i_test], labels[i_train]


@dataclass
class MNIST(TorchvisionImages):
    """MNIST handwritten digits, 28x28, 1 channel (torchvision)."""

    dataset_name: ClassVar[str] = "mnist"
    dataset_class: ClassVar[str] = "MNIST"
    channels = 1
    image_size = 28


@dataclass
class FashionMNIST(TorchvisionImages):
    """Fashion-MNIST clothing images, 28x28, 1 channel (torchvision)."""

    dataset_name: ClassVar[str] = "fashion-mnist"
    dataset_class: ClassVar[str] = "FashionMNIST"
    channels = 1
    image_size = 28


@dataclass
class CIFAR10(TorchvisionImages):
    """CIFAR-10 natural images, 32x32, 3 channels (torchvision)."""

    dataset_name: ClassVar[str] = "cifar10"
    dataset_class: ClassVar[str] = "CIFAR10"
    channels = 3
    image_size = 32
    base: int = 64  # a wider U-Net than the 8x8 and 28x28 sets need
    mults: tuple[int, ...] = (1, 2, 2)


@dataclass
class ImageFolder(ImageTask):
    """Every .png/.jpg/.jpeg/.bmp image under a folder (recursive), 1 or 3 channels."""

    root: str | None = None
    image_size: int | None = None  # options here, class constants in the other tasks
    channels: int = 1
    n_test: int = 100
    data_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.root:
            raise ValueError("image-folder needs root = the folder holding the images")
        if not Path(self.root).expanduser().is_dir():
            raise ValueError(f"image-folder root {self.root!r} is not a folder")
        if self.channels not in (1, 3):
            raise ValueError(f"channels={self.channels} must be 1 (grayscale) or 3 (RGB)")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size={self.image_size} must be at least 1")
        if self.n_test < 1:
            raise ValueError(f"n_test={self.n_test} must be at least 1")

    def files(self) -> list[Path]:
        """The image files under root, in a fixed (sorted) order."""
        root = Path(self.root or "").expanduser()
        if not root.is_dir():
            raise ValueError(f"image-folder root {str(root)!r} is not a folder")
        found = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not found:
            raise ValueError(
                f"image-folder root {str(root)!r} holds no {'/'.join(IMAGE_SUFFIXES)} images"
            )
        return sorted(found, key=lambda p: p.relative_to(root).as_posix())

    def check(self) -> None:
        """Every image decodes, and there are enough of them (reads the whole folder)."""
        self.load_uint8()

    def image_side(self) -> int:
        if self.image_size:
            return int(self.image_size)
        from PIL import Image

        with Image.open(self.files()[0]) as im:  # reads the header only
            return int(im.size[1])

    def load_uint8(self) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        paths = self.files()
        if len(paths) < self.n_test + 1:
            raise ValueError(
                f"image-folder root {self.root!r} holds {len(paths)} images; n_test="
                f"{self.n_test} needs at least {self.n_test + 1}"
            )
        mode = "L" if self.channels == 1 else "RGB"
        arrays, sizes = [], {}
        for path in paths:
            try:
                with Image.open(path) as im:
                    im = im.convert(mode)  # decodes the whole file: truncation shows here
                    if self.image_size:
                        side = int(self.image_size)
                        im = im.resize((side, side), Image.Resampling.BICUBIC)
            except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for bad files
                raise ValueError(f"image-folder: {path} is not a readable image ({exc}); "
                                 "remove or replace it") from exc
            sizes.setdefault(im.size, path)
            arrays.append(np.asarray(im, dtype=np.uint8))
        if len(sizes) > 1:
            (w1, h1), (w2, h2) = list(sizes)[:2]
            raise ValueError(
                f"image-folder root {self.root!r}: found {w1}x{h1} and {w2}x{h2} images: set "
                f"image_size (e.g. {sizes[(w1, h1)]} and {sizes[(w2, h2)]})"
            )
        u = torch.as_tensor(np.stack(arrays))
        u = u[:, None] if u.dim() == 3 else u.permute(0, 3, 1, 2)
        perm = torch.as_tensor(np.random.default_rng(self.data_seed).permutation(len(u)))
        return u[perm[self.n_test :]].contiguous(), u[perm[: self.n_test]].contiguous()
