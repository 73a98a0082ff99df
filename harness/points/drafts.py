"""Draft plugins: cheap generators whose samples WS-FM starts from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sklearn.mixture import GaussianMixture

from harness.checks import check_positive_ints
from harness.plugins import Draft


@dataclass
class GaussianMixtureDraft(Draft):
    """Gaussian mixture fitted by EM (scikit-learn); sampled in torch on the run's device."""

    n_components: int = 16
    version = "1"

    def __post_init__(self) -> None:
        check_positive_ints(self, "n_components")
        self._state: dict[str, torch.Tensor] = {}

    def fit(self, train: torch.Tensor, generator: torch.Generator) -> None:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        gmm = GaussianMixture(self.n_components, covariance_type="full", random_state=seed)
        gmm.fit(train.reshape(len(train), -1).double().numpy())
        self._state = {
            "weights": torch.as_tensor(gmm.weights_, dtype=torch.float32),
            "means": torch.as_tensor(gmm.means_, dtype=torch.float32),
            "chol": torch.linalg.cholesky(torch.as_tensor(gmm.covariances_)).float(),
            "shape": torch.tensor(train.shape[1:]),
        }

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        s = self._state
        comp = torch.multinomial(s["weights"], n, replacement=True, generator=generator)
        eps = torch.randn(
            (n, s["means"].shape[1], 1), generator=generator, device=s["means"].device
        )
        x = s["means"][comp] + (s["chol"][comp] @ eps).squeeze(-1)
        return x.reshape(n, *s["shape"].tolist())

    def state_dict(self) -> dict[str, Any]:
        return {k: v.cpu() for k, v in self._state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._state = dict(state)

    def to(self, device: torch.device) -> GaussianMixtureDraft:
        self._state = {k: v.to(device) if k != "shape" else v for k, v in self._state.items()}
        return self
