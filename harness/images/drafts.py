"""Image draft plugins: a small DC-GAN (the cheap, good draft) and PCA + Gaussian (the poor one).

Both take a training split of float images (N, C, H, W) in [-1, 1]; ``fit`` runs on the CPU,
``sample`` on the device the draft was moved to with ``to``. Their ``state_dict`` holds CPU
tensors and plain values only, so the harness can cache it on disk (``weights_only`` load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.checks import check_positive_ints
from harness.nn.training import adam
from harness.plugins import Draft

_SAMPLE_CHUNK = 4096  # images per generator forward pass when sampling


def _layout(size: int) -> tuple[int, int]:
    """(base, n_up): the generator starts from a base x base map and doubles n_up times."""
    base, n_up = size, 0
    while base > 7 and base % 2 == 0:
        base, n_up = base // 2, n_up + 1
    if base > 7:
        raise ValueError(
            f"image size {size} is not supported by the dcgan draft: it must be a power of two "
            "times a number up to 7 (e.g. 8, 28, 32, 64)"
        )
    return base, n_up


def _build_generator(latent_dim: int, width: int, channels: int, size: int) -> nn.Sequential:
    base, n_up = _layout(size)
    ch = width * 2**n_up
    layers: list[nn.Module] = [
        nn.Linear(latent_dim, ch * base * base, bias=False),
        nn.Unflatten(1, (ch, base, base)),
        nn.BatchNorm2d(ch),
        nn.ReLU(),
    ]
    for _ in range(n_up):
        layers += [
            nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(ch // 2),
            nn.ReLU(),
        ]
        ch //= 2
    layers += [nn.Conv2d(ch, channels, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*layers)


def _build_discriminator(width: int, channels: int, size: int) -> nn.Sequential:
    base, n_up = _layout(size)
    ch = width
    layers: list[nn.Module] = [nn.Conv2d(channels, ch, 3, padding=1), nn.LeakyReLU(0.2)]
    for _ in range(n_up):
        layers += [nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch *= 2
    layers += [nn.Flatten(), nn.Linear(ch * base * base, 1)]
    return nn.Sequential(*layers)


def _dcgan_init(module: nn.Module) -> None:
    """DC-GAN initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@dataclass
class DCGANDraft(Draft):
    """Small DC-GAN (transposed-conv generator, LeakyReLU conv critic), non-saturating loss."""

    latent_dim: int = 32
    width: int = 32
    steps: int = 1500
    batch_size: int = 64
    version = "1"

    def __post_init__(self) -> None:
        check_positive_ints(self, "latent_dim", "width", "steps", "batch_size")
        self._net: nn.Sequential | None = None
        self._shape: list[int] = []
        self._device = torch.device("cpu")

    def _make(self, shape: list[int], seed: int | None) -> tuple[nn.Sequential, nn.Sequential]:
        """Build both nets for images of ``shape`` without touching the global RNG stream."""
        channels, height, width = shape
        if height != width:
            raise ValueError(f"the dcgan draft needs square images, got {height}x{width}")
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            gen = _build_generator(self.latent_dim, self.width, channels, height)
            disc = _build_discriminator(self.width, channels, height)
            gen.apply(_dcgan_init)
            disc.apply(_dcgan_init)
        return gen, disc

    def fit(self, train: torch.Tensor, generator: torch.Generator) -> None:
        if train.ndim != 4:
            raise ValueError(f"the dcgan draft needs images (N, C, H, W), got {tuple(train.shape)}")
        shape = [int(s) for s in train.shape[1:]]
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        gen, disc = self._make(shape, seed)
        opt_g = adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
        data = train.detach().float().cpu()
        gen.train()
        disc.train()
        for _ in range(self.steps):
            real = data[torch.randint(len(data), (self.batch_size,), generator=generator)]
            z = torch.randn(self.batch_size, self.latent_dim, generator=generator)
            fake = gen(z)
            # Discriminator: real -> 1, fake -> 0 (logistic loss written with softplus).
            loss_d = F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # Generator: the non-saturating loss -log D(G(z)).
            loss_g = F.softplus(-disc(fake)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        gen.eval()
        self._net, self._shape = gen.to(self._device), shape

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self._net is None:
            raise RuntimeError("call fit() or load_state_dict() before sample()")
        self._net.eval()
        z = torch.randn(n, self.latent_dim, generator=generator, device=self._device)
        if n == 0:
            return torch.empty(0, *self._shape, device=self._device)
        return torch.cat([self._net(chunk) for chunk in z.split(_SAMPLE_CHUNK)])

    def state_dict(self) -> dict[str, Any]:
        if self._net is None:
            raise RuntimeError("call fit() before state_dict()")
        weights = {k: v.detach().cpu().clone() for k, v in self._net.state_dict().items()}
        return {
            "shape": list(self._shape),
            "latent_dim": self.latent_dim,
            "width": self.width,
            "generator": weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("latent_dim", "width"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"saved dcgan state has {name}={state[name]}, this draft {getattr(self, name)}"
                )
        shape = [int(s) for s in state["shape"]]
        gen, _ = self._make(shape, seed=None)
        gen.load_state_dict(state["generator"])
        gen.eval()
        self._net, self._shape = gen.to(self._device), shape

    def to(self, device: torch.device) -> DCGANDraft:
        self._device = torch.device(device)
        if self._net is not None:
            self._net = self._net.to(self._device)
        return self


@dataclass
class PCAGaussianDraft(Draft):
    """PCA to n_components, a full-covariance Gaussian on the coefficients, mapped back."""

    n_components: int = 8
    version = "1"

    def __post_init__(self) -> None:
        check_positive_ints(self, "n_components")
        self._state: dict[str, torch.Tensor] = {}
        self._shape: list[int] = []
        self._device = torch.device("cpu")

    def fit(self, train: torch.Tensor, generator: torch.Generator) -> None:
        flat = train.detach().reshape(len(train), -1).double().cpu()
        n, dim = flat.shape
        if self.n_components > min(n - 1, dim):
            raise ValueError(
                f"n_components={self.n_components} exceeds min(n_train - 1, pixels) = "
                f"{min(n - 1, dim)}"
            )
        mean = flat.mean(dim=0)
        centred = flat - mean
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        components = vh[: self.n_components]  # (k, D), orthonormal rows
        coeffs = centred @ components.T  # (N, k)
        cov = torch.atleast_2d(torch.cov(coeffs.T))
        jitter = 1e-6 * cov.diagonal().mean().clamp_min(1e-12)
        chol = torch.linalg.cholesky(cov + jitter * torch.eye(len(cov), dtype=cov.dtype))
        state = {"mean": mean, "components": components, "chol": chol}
        self._state = {k: v.float().to(self._device) for k, v in state.items()}
        self._shape = [int(s) for s in train.shape[1:]]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if not self._state:
            raise RuntimeError("call fit() or load_state_dict() before sample()")
        s = self._state
        eps = torch.randn(n, len(s["chol"]), generator=generator, device=s["chol"].device)
        coeffs = eps @ s["chol"].T
        x = s["mean"] + coeffs @ s["components"]
        return x.clamp(-1.0, 1.0).reshape(n, *self._shape)

    def state_dict(self) -> dict[str, Any]:
        if not self._state:
            raise RuntimeError("call fit() before state_dict()")
        return {**{k: v.cpu().clone() for k, v in self._state.items()}, "shape": self._shape}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._shape = [int(s) for s in state["shape"]]
        self._state = {k: state[k].to(self._device) for k in ("mean", "components", "chol")}

    def to(self, device: torch.device) -> PCAGaussianDraft:
        self._device = torch.device(device)
        self._state = {k: v.to(self._device) for k, v in self._state.items()}
        return self
