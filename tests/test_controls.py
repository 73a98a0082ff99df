"""Controls: warm starts whose verdicts are known beforehand. The corrupted-data draft pairs a
removable corruption with the clean data, the noise draft pairs noise with itself; on a small
suite the positive control reads non-inferior and the negative one inferior, and a misread
control puts a warning at the top of the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.controls import CorruptedData, NoiseDraft, gaussian_blur
from harness.plugins import instantiate
from harness.registry import tasks
from harness.report.headline import trust_banner


def _fitted(draft, train: torch.Tensor):
    draft.fit(train, torch.Generator().manual_seed(0))
    draft.load_state_dict(draft.state_dict())  # as the harness samples: from a restored one
    return draft


def test_corrupted_data_pairs_each_corruption_with_its_clean_data() -> None:
    data = torch.Generator().manual_seed(0)  # not the global RNG: other tests move it
    points = torch.randn(500, 2, generator=data) * torch.tensor([1.0, 3.0])
    noisy, clean = _fitted(CorruptedData(noise=0.2), points).pairs(
        400, torch.Generator().manual_seed(1))
    assert set(map(tuple, clean.tolist())) <= set(map(tuple, points.tolist()))
    spread = (noisy - clean).std(0)  # noise relative to each coordinate's spread
    expected = 0.2 * points.std(0)  # about (0.2, 0.6)
    assert spread[0] == pytest.approx(float(expected[0]), rel=0.15)
    assert spread[1] == pytest.approx(float(expected[1]), rel=0.15)
    images = torch.rand(50, 1, 8, 8, generator=data) * 2 - 1
    blurred, sharp = _fitted(CorruptedData(blur=0.7), images).pairs(
        20, torch.Generator().manual_seed(2))
    assert torch.allclose(blurred, gaussian_blur(sharp, 0.7)) and not torch.equal(blurred, sharp)
    text = torch.randint(27, (300, 64), generator=data)
    swapped, original = _fitted(CorruptedData(substitute=0.15), text).pairs(
        200, torch.Generator().manual_seed(3))
    changed = (swapped != original).float().mean()
    assert 0.1 < changed < 0.15  # 15% replaced, some by the same character
    assert CorruptedData.control == "positive" and NoiseDraft.control == "negative"


def test_noise_is_its_own_target_and_looks_like_the_data_only_in_its_moments() -> None:
    data = torch.randn(2000, 2) * 2 + 5
    x, target = _fitted(NoiseDraft(), data).pairs(3000, torch.Generator().manual_seed(0))
    assert torch.equal(x, target)
    assert x.mean(0) == pytest.approx(data.mean(0), abs=0.2)
    tokens = _fitted(NoiseDraft(), torch.randint(27, (100, 16))).sample(
        50, torch.Generator().manual_seed(0))
    assert tokens.shape == (50, 16) and int(tokens.max()) <= 26


def test_every_task_has_its_controls_under_positive_and_negative() -> None:
    for name, option, value in (("two-moons", "noise", 0.2), ("digits", "blur", 0.7),
                                ("text", "substitute", 0.15)):
        drafts = instantiate(tasks, name, {}).all_drafts
        assert drafts["positive"] == ("corrupted-data", {option: value})
        assert drafts["negative"] == ("noise", {}) and {"good", "poor"} <= set(drafts)


SUITE = """
name = "controls"
seeds = [0, 1, 2, 3, 4, 5]
selection_seeds = [10, 11]
budgets = [8]
n_samples = 1000
n_eval = 1000
repeats = 1
training = { steps = 1000 }

[evidence]
margin = { abs = 0.04, reason = "a small suite: what tiny models can tell apart" }

[[tasks]]
name = "two-moons"
n_train = 3000
n_test = 1000
control_noise = 0.6

[[methods]]
name = "draft-only"
draft = ["positive", "negative"]

[[methods]]
name = "full-fm"
solver = "heun"
budgets = [4, 8]

[[methods]]
name = "ws-fm"
draft = ["positive", "negative"]
t0 = 0.8
"""


def test_the_controls_read_as_they_must_on_a_small_suite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "controls.toml").write_text(SUITE)
    assert main(["run", str(tmp_path / "controls.toml"), "--out", str(tmp_path),
                 "--run-id", "c", "--cache", str(tmp_path / "cache"), "--no-report",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "c"), "--json"]) == 0
    rows = {r["control"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["positive"]["verdict"] == "non-inferior", rows["positive"]
    assert rows["positive"]["control_ok"] is True
    assert rows["negative"]["verdict"] == "inferior", rows["negative"]
    assert rows["negative"]["control_ok"] is True
    assert trust_banner(list(rows.values())) == ""
    # Were one to misread, the report would say so first.
    flipped = [{**rows["negative"], "verdict": "non-inferior"}]
    banner = trust_banner(flipped)
    assert banner.startswith("**This run cannot be trusted: the negative control")
    assert "reads non-inferior, not inferior" in banner
