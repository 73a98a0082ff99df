"""Image tasks: digits split, finalize/quantisation, the U-Net, folder and torchvision loaders."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.images.task import ImageTask, from_uint8, to_uint8
from harness.nn.training import count_parameters
from harness.nn.unet import TimeUNet
from harness.registry import tasks


def on_uint8_grid(x: torch.Tensor) -> bool:
    k = (x.double() + 1.0) * 127.5
    return bool(((k - k.round()).abs() < 1e-4).all() and k.min() >= 0 and k.max() <= 255)


def test_digits_split_is_seeded_shaped_and_quantised() -> None:
    task = tasks.get("digits")()
    a, b = task.load(), task.load()
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.train.shape == (1437, 1, 8, 8) and a.test.shape == (360, 1, 8, 8)
    assert a.train.dtype == torch.float32
    both = torch.cat([a.train, a.test])
    assert both.min() == -1.0 and both.max() == 1.0 and on_uint8_grid(both)
    # 17 grey levels (0..16 in the source), all on the uint8 grid; finalize leaves them as is
    assert both.unique().numel() == 17
    same, info = task.finalize(a.train)
    assert torch.equal(same, a.train) and info["clamped"] == 0
    # a different seed gives a different split of the same 1797 images
    other = tasks.get("digits")(n_test=100, data_seed=1).load()
    assert other.test.shape == (100, 1, 8, 8) and not torch.equal(other.train[:100], a.train[:100])
    def rows(x: torch.Tensor) -> list[bytes]:
        return sorted(bytes(r) for r in to_uint8(x).flatten(1).numpy())

    assert rows(both) == rows(torch.cat([other.train, other.test]))
    assert task.modality == "images" and task.primary_metric == "fid" == task.metrics[0]
    assert {"good", "poor"} <= set(task.drafts) and task.refiner[0] == "assignment"
    with pytest.raises(ValueError, match="n_test"):
        tasks.get("digits")(n_test=0)


def test_finalize_counts_clamped_values_and_rounds_like_uint8() -> None:
    task = tasks.get("digits")()
    g = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(64, 1, 8, 8, generator=g)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 1.0, -1.0  # the bounds themselves are in range
    out, info = task.finalize(x)
    n_out = int((x.abs() > 1).sum())
    assert info["clamped"] == n_out > 0
    assert info["clamped_fraction"] == pytest.approx(n_out / x.numel())
    assert on_uint8_grid(out) and out.shape == x.shape
    expected = np.round((np.clip(x.numpy().astype(np.float64), -1, 1) + 1) * 127.5)
    assert np.array_equal(to_uint8(x).numpy(), expected.astype(np.uint8))
    assert torch.allclose(out.double(), torch.as_tensor(expected / 127.5 - 1), atol=1e-6)
    inside = x.abs() <= 1
    assert (out - x)[inside].abs().max() <= 0.5 / 127.5 + 1e-6
    assert torch.equal(out[x > 1], torch.ones(int((x > 1).sum())))
    # every level round-trips exactly
    levels = from_uint8(torch.arange(256, dtype=torch.uint8))
    assert torch.equal(to_uint8(levels), torch.arange(256, dtype=torch.uint8))
    assert torch.equal(task.finalize(levels)[0], levels)


@pytest.mark.parametrize(
    ("channels", "size", "mults"),
    [(1, 8, (1, 2)), (1, 28, (1, 2)), (3, 32, (1, 2, 2)), (1, 10, (1, 2))],
)
def test_unet_preserves_shape(channels: int, size: int, mults: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = TimeUNet(channels, base=8, mults=mults, time_dim=16, image_size=size)
    nn_init_output(net)
    x, t = torch.randn(3, channels, size, size), torch.rand(3)
    out = net(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # time conditioning matters and the batch entries are independent
    assert not torch.allclose(out, net(x, 1 - t))
    assert torch.allclose(net(x[:1], t[:1]), out[:1], atol=1e-5)


def nn_init_output(net: TimeUNet) -> None:
    """Give the zero-initialised output and residual convolutions weights, so outputs vary."""
    g = torch.Generator().manual_seed(1)
    for name, p in net.named_parameters():
        if "conv2" in name or "conv_out" in name:
            p.data = 0.1 * torch.randn(p.shape, generator=g)


def test_unet_size_and_task_network() -> None:
    net = tasks.get("digits")().make_network()
    assert isinstance(net, TimeUNet) and net.channels == 1 and net.image_size == 8
    assert 100_000 <= count_parameters(net) <= 300_000
    out = net(torch.zeros(2, 1, 8, 8), torch.tensor([0.0, 1.0]))
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output layer
    cifar = tasks.get("cifar10")(base=8, mults=[1, 2])
    assert cifar.mults == (1, 2) and cifar.make_network().channels == 3
    with pytest.raises(ValueError, match="mults"):
        tasks.get("digits")(mults=())


def write_png(path: Path, size: tuple[int, int], mode: str = "L", value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def test_image_folder_loads_nested_images_in_both_modes(tmp_path: Path) -> None:
    for i in range(6):
        write_png(tmp_path / f"class{i % 2}" / "sub" / f"{i}.png", (8, 8), "RGB", value=i)
    (tmp_path / "notes.txt").write_text("not an image")
    gray = tasks.get("image-folder")(root=str(tmp_path), n_test=2, base=8)
    data = gray.load()
    assert data.train.shape == (4, 1, 8, 8) and data.test.shape == (2, 1, 8, 8)
    assert on_uint8_grid(data.train) and torch.equal(gray.load().test, data.test)
    rgb = tasks.get("image-folder")(root=str(tmp_path), n_test=2, channels=3).load()
    assert rgb.train.shape == (4, 3, 8, 8)
    # the grayscale pixels are PIL's L conversion of the RGB ones
    all_rgb = torch.cat([rgb.train, rgb.test])
    u = to_uint8(all_rgb).float()
    luma = (u[:, 0] * 299 + u[:, 1] * 587 + u[:, 2] * 114) / 1000
    all_gray = to_uint8(torch.cat([data.train, data.test]))[:, 0].float()
    assert (luma - all_gray).abs().max() <= 1.0
    resized = tasks.get("image-folder")(root=str(tmp_path), n_test=2, image_size=4).load()
    assert resized.train.shape == (4, 1, 4, 4)
    net = tasks.get("image-folder")(root=str(tmp_path), channels=3, base=8).make_network()
    assert net.channels == 3 and net.image_size == 8


def test_image_folder_errors(tmp_path: Path) -> None:
    folder = tasks.get("image-folder")
    with pytest.raises(ValueError, match="needs root"):
        folder()
    with pytest.raises(ValueError, match="not a folder"):
        folder(root=str(tmp_path / "missing"))
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    with pytest.raises(ValueError, match="no .png"):
        folder(root=str(tmp_path / "empty")).load()
    with pytest.raises(ValueError, match="channels"):
        folder(root=str(tmp_path), channels=2)
    mixed = tmp_path / "mixed"
    for i in range(3):
        write_png(mixed / f"a{i}.png", (8, 8), value=i)
    write_png(mixed / "b" / "big.bmp", (10, 10))
    with pytest.raises(ValueError, match="found 8x8 and 10x10 images: set image_size"):
        folder(root=str(mixed), n_test=1).load()
    assert folder(root=str(mixed), n_test=1, image_size=8).load().train.shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="holds 4 images; n_test=4 needs at least 5"):
        folder(root=str(mixed), n_test=4, image_size=8).load()
    wide = tmp_path / "wide"
    for i in range(3):
        write_png(wide / f"{i}.png", (10, 8), value=i)
    with pytest.raises(ValueError, match="not square"):
        folder(root=str(wide), n_test=1).load()


def test_shape_check_names_channels() -> None:
    task = ImageTask()
    with pytest.raises(ValueError, match="1 channel"):
        task.check_shape(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "train")
    with pytest.raises(ValueError, match="not square"):
        task.check_shape(torch.zeros(2, 1, 8, 6, dtype=torch.uint8), "train")


def write_idx(path: Path, array: np.ndarray) -> None:
    """The uncompressed idx format torchvision reads: magic (ubyte type, ndim), dims, bytes."""
    magic = 0x0800 + array.ndim
    with open(path, "wb") as fh:
        fh.write(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape))
        fh.write(array.astype(np.uint8).tobytes())


def test_mnist_reads_local_idx_files_and_refuses_to_download(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test_images = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", train_images)
    write_idx(raw / "train-labels-idx1-ubyte", rng.integers(0, 10, 20))
    write_idx(raw / "t10k-images-idx3-ubyte", test_images)
    write_idx(raw / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 8))
    data = tasks.get("mnist")(root=str(tmp_path)).load()
    assert data.train.shape == (20, 1, 28, 28) and data.test.shape == (8, 1, 28, 28)
    assert torch.equal(to_uint8(data.train)[:, 0], torch.as_tensor(train_images))
    assert torch.equal(to_uint8(data.test)[:, 0], torch.as_tensor(test_images))
    sub = tasks.get("mnist")(root=str(tmp_path), n_train=5, n_test=3, data_seed=2).load()
    assert sub.train.shape == (5, 1, 28, 28) and sub.test.shape == (3, 1, 28, 28)
    assert torch.equal(sub.train, tasks.get("mnist")(root=str(tmp_path), n_train=5,
                                                     n_test=3, data_seed=2).load().train)
    with pytest.raises(ValueError, match="exceeds the 20"):
        tasks.get("mnist")(root=str(tmp_path), n_train=21).load()
    net = tasks.get("mnist")(root=str(tmp_path), base=8).make_network()
    assert net(data.train[:2], torch.rand(2)).shape == (2, 1, 28, 28)

    empty = tmp_path / "nothing"
    with pytest.raises(ValueError, match=f"not found in {empty}.*download = true.*root"):
        tasks.get("fashion-mnist")(root=str(empty)).load()
    assert not (empty / "FashionMNIST").exists()  # nothing fetched, nothing created


def test_torchvision_default_root_is_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSFM_BENCH_CACHE", str(tmp_path))
    task = tasks.get("cifar10")()
    assert task.folder == tmp_path / "datasets" / "cifar10"
    with pytest.raises(ValueError, match="datasets/cifar10"):
        task.load()
