"""The paper-scale suites (issue 13), shrunk to CPU size: the same files, with tiny widths, a
few training steps, fake local data (a CIFAR-10 folder in torchvision's format, a Text-8
file), a loopback LLM server as the refiner and a tiny local Hugging Face judge folder, so
their configurations, data paths and options run end to end without a GPU."""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.errors import ConfigError
from harness.records.store import read_cells
from harness.run.expand import expand_cells
from harness.run.runner import run_suite
from harness.run.suite import SUITES_DIR, parse_suite, read_suite_file
from tests.llm_server import FakeLLMServer
from tests.synthetic import fields_of


def shrink(data: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """A paper suite at CPU size: one seed, two budgets, three training steps."""
    data = copy.deepcopy(data)
    data.update(device="cpu", seeds=[0], selection_seeds=[], n_samples=16, n_eval=24,
                repeats=1, threads=1, budgets=data["budgets"][:2])
    data["training"] = {**data["training"], "steps": 3, "batch_size": 8}
    data["tasks"][0].update(task)
    return data


def _run(tmp_path: Path, data: dict[str, Any]) -> list[dict[str, Any]]:
    suite = parse_suite(data, "shrunk")
    run_dir = run_suite(suite, out_dir=tmp_path / "out", progress=False)
    cells = [fields_of(c) for c in read_cells(run_dir)]
    assert len(cells) == len(expand_cells(suite))
    for cell in cells:
        assert cell["nfe_ok"], cell["cell"]
        assert all(np.isfinite(m["value"]) for m in cell["metrics"].values()), cell["metrics"]
    return cells


@pytest.mark.parametrize("name", ["paper-images", "paper-text"])
def test_paper_suites_ask_for_a_gpu(name: str) -> None:
    data = read_suite_file(SUITES_DIR / f"{name}.toml")
    assert data["device"] == "cuda"
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the unshrunk suite is valid here")
    with pytest.raises(ConfigError, match="cuda"):
        parse_suite(data, name)


def _fake_cifar(root: Path) -> None:
    """CIFAR-10 in torchvision's pickled-batch layout (random pixels, 10 classes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 40) for i in range(1, 6)), ("test_batch", 40)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [str(i) for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def test_paper_images_runs_shrunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar

    _fake_cifar(tmp_path / "cifar")
    # The fake batches cannot match torchvision's md5 list of the real files.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    data = shrink(read_suite_file(SUITES_DIR / "paper-images.toml"), {
        "root": str(tmp_path / "cifar"), "download": False, "base": 8, "mults": [1, 2],
        "time_dim": 16, "gan_width": 8, "gan_steps": 3, "pca_components": 4})
    assert data["tasks"][0]["reference"] == "train"
    cells = _run(tmp_path, data)
    assert {c["cell"]["reference"] for c in cells} == {"train"}
    methods = {(c["method"], c["cell"]["method_options"].get("draft")) for c in cells}
    assert {("ws-fm", "good"), ("ws-fm", "poor"), ("full-fm", None), ("ddim", None),
            ("draft-only", "good")} <= methods
    assert {c["n_eval"] for c in cells} == {24}  # taken from the 200 training images
    assert "fid" in cells[0]["metrics"]


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="the judge extra (transformers) is not installed")
def test_paper_text_runs_shrunk(tmp_path: Path, tiny_lm_folder: Path) -> None:
    text8 = tmp_path / "text8"
    text8.mkdir()
    words = ("the quick brown fox jumps over a lazy dog and then some more words follow "
             "in a text that is long enough to cut into windows ").split()
    rng = np.random.default_rng(0)
    (text8 / "text8").write_text(" ".join(rng.choice(words, 20000)))
    with FakeLLMServer() as server:
        data = shrink(read_suite_file(SUITES_DIR / "paper-text.toml"), {
            "root": str(text8), "seq_len": 32, "n_train": 300, "n_test": 40, "d_model": 16,
            "n_layer": 1, "n_head": 2, "good_draft": {"hidden": 16, "steps": 3},
            "poor_draft": {"hidden": 8, "steps": 2}, "judge": str(tiny_lm_folder),
            "judge_samples": 8,
            "refiner_options": {**read_suite_file(SUITES_DIR / "paper-text.toml")["tasks"][0][
                "refiner_options"], "base_url": server.url, "workers": 4}})
        cells = _run(tmp_path, data)
        assert len(server.requests) > 0  # the LLM refiner built the warm-start pairs
    ws = [c for c in cells if c["method"] == "ws-fm"]
    assert ws and all(c["refiner_stats"]["requests"] > 0 for c in ws), ws[0]["refiner_stats"]
    assert {"judge-nll-char", "judge-nll"} <= set(cells[0]["metrics"])
    manifest = json.loads((next((tmp_path / "out").iterdir()) / "manifest.json").read_text())
    assert manifest["primary_metrics"]["text"] == "judge-nll-char"
    assert {c["method"] for c in cells} >= {"ar", "masked-diffusion", "full-fm", "ws-fm"}
