"""The model cache (atomic, content-keyed, corrupt entries rebuilt) and the GPU path."""

from __future__ import annotations

import pytest
import torch

from harness.cache import Cache
from harness.run.timing import Clock


def test_cache_builds_once_and_keys_by_content(tmp_path) -> None:
    cache = Cache(tmp_path)
    built = []

    def build():
        built.append(1)
        return {"w": torch.arange(3.0)}

    a = cache.load_or_build("models", {"seed": 0, "lr": 1e-3}, build)
    b = cache.load_or_build("models", {"lr": 1e-3, "seed": 0}, build)  # same key, other order
    assert len(built) == 1 and torch.equal(a["w"], b["w"])
    cache.load_or_build("models", {"seed": 1, "lr": 1e-3}, build)
    assert len(built) == 2 and (cache.hits, cache.misses) == (1, 2)


def test_corrupt_cache_entry_is_rebuilt_not_used(tmp_path) -> None:
    cache = Cache(tmp_path)
    key = {"seed": 0}
    cache.load_or_build("models", key, lambda: {"w": torch.ones(2)})
    cache.path("models", key).write_bytes(b"truncated")
    state = cache.load_or_build("models", key, lambda: {"w": torch.zeros(2)})
    assert torch.equal(state["w"], torch.zeros(2))


def test_cpu_clock_measures_elapsed_time() -> None:
    import time

    result, seconds = Clock("cpu").time(lambda: time.sleep(0.02) or 7)
    assert result == 7 and 0.015 < seconds < 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_end_to_end(tmp_path) -> None:
    import tomllib

    from harness.records.store import load_run
    from harness.run import runner
    from harness.run.suite import parse_suite
    from tests.conftest import TINY_SUITE

    data = tomllib.loads(TINY_SUITE + '[[methods]]\nname = "ws-fm"\nt0 = 0.75\n'
                         '[[methods]]\nname = "ddim"\n[[methods]]\nname = "draft-only"\n')
    data["device"] = "cuda"
    run_dir = runner.run_suite(parse_suite(data), tmp_path, cache=Cache(tmp_path / "c"),
                               progress=False)
    df = load_run(run_dir).drop_duplicates("cell_id")
    assert df["nfe_ok"].all() and (df["device"] == "cuda").all()
    assert (df[df.method == "ws-fm"]["nfe_measured"] == 1).all()
    assert (df["time_s"] > 0).all()
    _, seconds = Clock("cuda").time(lambda: torch.randn(1000, 1000, device="cuda").sum())
    assert seconds > 0
