"""The text network reads its context (issue 12, item 6): trained briefly with the discrete
flow-matching loss on pydoc windows, its loss on masked characters falls well below the
entropy of single-letter frequencies, and what it predicts for a masked character depends on
that character's neighbours. The network of earlier versions (learned positions at std 0.02
beside unit-scale token embeddings) failed both: it stayed a bag-of-characters model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.nn.training import TrainConfig, optimise
from harness.plugins import instantiate
from harness.registry import tasks
from harness.text.alphabet import VOCAB_SIZE
from wsfm.loss import flow_matching_loss
from wsfm.paths import make_path
from wsfm.sources import make_source

MASK = VOCAB_SIZE


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    task = instantiate(tasks, "text", {"judge": "none", "n_train": 2000, "n_test": 200})
    data = task.load()
    torch.manual_seed(0)
    net = task.make_network()
    loss = flow_matching_loss(net, make_path(True, 0.0),
                              make_source("noise", 0.0, mask_id=MASK), data.train, None, 64)
    optimise(net, loss, TrainConfig(steps=150, batch_size=64, lr=task.train_config.lr),
             torch.Generator().manual_seed(0), progress=False)
    return net.eval(), data.train, data.test


def _unigram_entropy(tokens: torch.Tensor) -> float:
    p = torch.bincount(tokens.reshape(-1), minlength=VOCAB_SIZE).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def test_masked_characters_are_predicted_well_below_the_unigram_entropy(trained) -> None:
    net, train, test = trained
    g = torch.Generator().manual_seed(1)
    masked = torch.rand(test.shape, generator=g) < 0.1
    with torch.no_grad():
        logits = net(torch.where(masked, MASK, test), torch.full((len(test),), 0.9))
    loss = F.cross_entropy(logits[masked], test[masked]).item()
    entropy = _unigram_entropy(train)
    assert math.isclose(entropy, 2.83, abs_tol=0.1)
    assert loss < 0.8 * entropy, (loss, entropy)


def test_a_masked_characters_prediction_depends_on_its_neighbours(trained) -> None:
    net, _, test = trained
    x = test[:100].clone()
    mid = x.shape[1] // 2
    x[:, mid] = MASK
    other = x.clone()
    shift = torch.randint(1, VOCAB_SIZE, (len(x), 2), generator=torch.Generator().manual_seed(2))
    other[:, [mid - 1, mid + 1]] = (x[:, [mid - 1, mid + 1]] + shift) % VOCAB_SIZE
    t = torch.full((len(x),), 0.9)
    with torch.no_grad():
        p = net(x, t)[:, mid].softmax(-1)
        q = net(other, t)[:, mid].softmax(-1)
    total_variation = 0.5 * (p - q).abs().sum(-1).mean().item()
    assert total_variation > 0.1, total_variation  # the old network: at most 0.006
