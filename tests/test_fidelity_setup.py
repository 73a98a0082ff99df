"""The domain extractor is trained on the task's training split (with labels), once, cached."""

from __future__ import annotations

import torch

from harness.cache import Cache
from harness.images import extractor
from harness.images import metrics as fidelity
from harness.registry import tasks


def test_extractor_comes_from_the_training_split_and_is_cached(tmp_path) -> None:
    data = tasks.get("digits")(n_test=300).load()
    assert data.train_labels is not None and len(data.train_labels) == len(data.train)
    cache = Cache(tmp_path)
    extractor._STATES.clear()
    state = extractor.domain_extractor_for_task(data.train, data.train_labels, 0, cache)
    assert cache.misses == 1
    extractor._STATES.clear()  # a new process: loaded from disk, identical
    again = extractor.domain_extractor_for_task(data.train, data.train_labels, 0, cache)
    assert cache.hits == 1 and all(torch.equal(state[k], again[k]) for k in state)
    other = tasks.get("digits")(n_test=300, data_seed=1).load()  # another split: another net
    extractor.domain_extractor_for_task(other.train, other.train_labels, 0, cache)
    assert cache.misses == 2


def test_metric_setup_uses_the_task_extractor_and_separates_real_from_noise() -> None:
    data = tasks.get("digits")(n_test=300).load()
    fid = fidelity.FID()
    fid.setup(data.train, data.train_labels)
    assert fid._domain_state is not None
    real = fid.compute(data.train[:300], data.test, 0)
    noise = fid.compute(torch.rand(300, 1, 8, 8) * 2 - 1, data.test, 0)
    assert real * 5 < noise
