"""Timing discipline (fake clock, mock CUDA API), torch.compile variants end to end, and the
machine state the manifest records (with a fake nvidia-smi on PATH)."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.cache import Cache
from harness.errors import ConfigError
from harness.records import store as records
from harness.records.cell import Cell
from harness.records.store import load_run, load_samples
from harness.run import machine, runner, timing
from harness.run.expand import expand_cells
from harness.run.nfe import CountingNetwork
from harness.run.suite import parse_suite
from harness.run.timing import (
    Clock,
    FirstCall,
    Timing,
    check_backend,
    check_compile,
    compile_network,
    compiled_label,
    measure,
    repeat,
)
from tests.conftest import TINY_SUITE
from tests.synthetic import fields_of

# --- the clock -----------------------------------------------------------------------------


class FakeCuda:
    """Stands in for torch.cuda: logs synchronize and event records in order."""

    def __init__(self, elapsed_ms: float) -> None:
        self.log: list[str] = []
        self.elapsed_ms = elapsed_ms
        api = self

        class Event:
            count = 0

            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing, "events must be created with enable_timing=True"
                Event.count += 1
                self.name = "start" if Event.count % 2 else "end"

            def record(self) -> None:
                api.log.append(f"record {self.name}")

            def elapsed_time(self, other: Event) -> float:
                assert (self.name, other.name) == ("start", "end")
                api.log.append("elapsed_time")
                return api.elapsed_ms

        self.Event = Event

    def synchronize(self, device: torch.device) -> None:
        assert device.type == "cuda"
        self.log.append("synchronize")


def test_gpu_path_synchronises_and_times_with_events() -> None:
    cuda = FakeCuda(elapsed_ms=250.0)
    clock = Clock("cuda:0", cuda=cuda)

    def work() -> str:
        cuda.log.append("work")
        return "done"

    result, seconds = clock.time(work)
    assert result == "done" and seconds == pytest.approx(0.25)  # ms -> s
    assert cuda.log == ["synchronize", "record start", "work", "record end", "synchronize",
                        "elapsed_time"]


def test_gpu_path_through_measure() -> None:
    cuda = FakeCuda(elapsed_ms=4.0)
    first, t = measure(Clock("cuda", cuda=cuda), lambda: 7, warmup=2, repeats=3)
    assert first == 7 and t.times == [0.004] * 3 and t.first == 0.004
    assert cuda.log.count("synchronize") == 2 * 5 and cuda.log.count("record start") == 5


def test_cpu_path_uses_perf_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([10.0, 10.5, 20.0, 20.25, 30.0, 30.125])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    calls = []
    first, t = measure(Clock("cpu"), lambda: calls.append(1) or len(calls), warmup=1, repeats=2)
    assert first == 1 and len(calls) == 3
    assert t.first == 0.5 and t.times == [0.25, 0.125]  # the first call is kept apart


def test_repeat_calls_warmup_then_repeats() -> None:
    calls = []
    first, runs = repeat(lambda: calls.append(0) or len(calls), warmup=3, repeats=2)
    assert first == 1 and runs == [4, 5]
    first, runs = repeat(lambda: calls.append(0) or len(calls), warmup=0, repeats=1)
    assert runs == [first + 1]  # the first call always happens (and is never a repeat)


def test_timing_median_and_spreads() -> None:
    t = Timing([1.0, 2.0, 3.0, 4.0, 100.0], first=50.0)
    assert (t.median, t.spread, t.iqr, t.mad) == (3.0, 99.0, 2.0, 1.0)
    assert t.relative_spread == 33.0
    assert t.as_dict() == {"median": 3.0, "spread": 99.0, "iqr": 2.0, "mad": 1.0,
                           "first": 50.0, "times": [1.0, 2.0, 3.0, 4.0, 100.0]}
    assert Timing([2.0]).iqr == 0.0
    with pytest.raises(ValueError, match="at least one"):
        Timing([])


def test_first_call_is_timed_apart_and_still_counted() -> None:
    clock = Clock("cpu")
    inner = FirstCall(lambda x: x + 1, clock)
    counter = CountingNetwork(inner)
    assert [counter(i) for i in range(4)] == [1, 2, 3, 4]
    assert counter.reset() == 4 and inner.seconds is not None and inner.seconds >= 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_gpu_clock() -> None:
    x = torch.randn(512, 512, device="cuda")
    first, t = measure(Clock("cuda"), lambda: (x @ x).sum(), warmup=1, repeats=3)
    assert first.device.type == "cuda" and t.median > 0 and len(t.times) == 3


# --- torch.compile -------------------------------------------------------------------------


def test_compile_values_are_validated() -> None:
    assert check_backend(True, "compile") == "inductor"
    assert check_backend(False, "compile") is False
    assert check_backend("eager", "compile") == "eager"
    with pytest.raises(ConfigError, match="unknown torch.compile backend 'nope'"):
        check_backend("nope", "compile")
    with pytest.raises(ConfigError, match="true, false or a torch.compile backend"):
        check_backend(1, "compile")
    assert compiled_label("solver=euler", "inductor") == "solver=euler compiled"
    assert compiled_label("x", "eager") == "x compiled:eager"
    assert compiled_label("x", False) == "x"


def test_compile_network_matches_eager() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 3))
    x = torch.randn(32, 3)
    with torch.no_grad():
        assert torch.allclose(compile_network(net, "eager")(x), net(x))
    assert check_compile("eager", "cpu") >= 0

    graphs = []

    def backend(gm, example_inputs):  # a custom backend sees what dynamo traced
        graphs.append(gm)
        return gm.forward

    with torch.no_grad():
        assert torch.allclose(compile_network(net, backend)(x), net(x))
    assert len(graphs) == 1


def test_compile_failure_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(ConfigError, match=r"needs a working C\+\+ compiler.*cause: "
                                          r"RuntimeError: InvalidCxxCompiler"):
        check_compile("inductor", "cpu")


def _suite(extra: str, **overrides):
    data = tomllib.loads(TINY_SUITE + extra)
    data.update(overrides)
    return parse_suite(data, "test suite")


METHODS = '[[methods]]\nname = "full-fm"\n[[methods]]\nname = "draft-only"\n'


def test_compile_expands_cells_and_keeps_eager_cell_ids() -> None:
    plain = expand_cells(_suite(METHODS))
    both = expand_cells(_suite(METHODS, compile=[False, True]))
    assert [c.compile for c in both] == [False, "inductor", False]  # draft-only: eager only
    assert both[0].cell_id == plain[0].cell_id and both[2].cell_id == plain[1].cell_id
    assert both[1].cell_id != plain[0].cell_id and both[1].to_dict()["compile"] == "inductor"
    assert "compile" not in both[0].to_dict()
    assert Cell.from_dict(both[1].to_dict()) == both[1]
    assert Cell.from_dict(plain[0].to_dict()) == plain[0]
    assert _suite(METHODS).config_hash == _suite(METHODS, compile=False).config_hash
    with pytest.raises(ConfigError, match="compile: unknown torch.compile backend"):
        _suite(METHODS, compile=["inductor", "nope"])
    with pytest.raises(ConfigError, match="duplicates"):
        _suite(METHODS, compile=[True, "inductor"])


def test_compiled_variant_end_to_end(tmp_path: Path) -> None:
    suite = _suite(METHODS, compile=[False, "eager"])
    run_dir = runner.run_suite(suite, tmp_path / "results", cache=Cache(tmp_path / "cache"),
                               progress=False)
    cells = {r["variant"]: r for r in map(fields_of, records.read_cells(run_dir))}
    assert set(cells) == {"solver=euler", "solver=euler compiled:eager", "good"}
    eager, compiled = cells["solver=euler"], cells["solver=euler compiled:eager"]
    assert compiled["compile"] == "eager" and compiled["cell"]["compile"] == "eager"
    assert compiled["compile_s"] > 0 and eager["compile_s"] is None
    assert compiled["nfe_measured"] == eager["nfe_measured"] == 4 and compiled["nfe_ok"]
    assert compiled["threads"] == torch.get_num_threads()
    assert set(compiled["timings"]["total"]) >= {"median", "spread", "iqr", "mad", "first"}
    a = load_samples(run_dir, eager["cell_id"])
    b = load_samples(run_dir, compiled["cell_id"])
    assert a.shape == b.shape and abs(a - b).max() < 1e-4
    assert len(load_run(run_dir)["variant"].unique()) == 3


def test_compile_failure_stops_before_any_cell(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(backend, device):
        raise ConfigError(f"compile = {backend!r}: broken here")

    monkeypatch.setattr(runner, "check_compile", fail)
    suite = _suite(METHODS, compile=[False, "eager"])
    with pytest.raises(ConfigError, match="broken here"):
        runner.run_suite(suite, tmp_path / "results", cache=Cache(tmp_path / "cache"),
                         progress=False)
    assert not list((tmp_path / "results").rglob("cells/*.json"))


# --- machine state -------------------------------------------------------------------------

SMI_ROW = ("0, GPU-1234-abcd, NVIDIA H100 80GB HBM3, 550.54.15, 81559, 3, P0, 1980, 2619, "
           "1980, 2619, 34, 71.23, 700.00, 0, 0x0000000000000004")


def _fake_smi(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def test_machine_reads_a_fake_nvidia_smi(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "args"
    folder = _fake_smi(tmp_path / "bin", f'echo "$@" > {log}\necho "{SMI_ROW}"\n')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    info = machine.describe_machine("cpu")
    assert "--format=csv,noheader,nounits" in log.read_text()
    assert "clocks_throttle_reasons.active" in log.read_text()
    gpu = info["gpus"][0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["driver"] == "550.54.15"
    assert gpu["memory_total_mib"] == 81559 and gpu["sm_clock_mhz"] == 1980
    assert gpu["mem_clock_mhz"] == 2619 and gpu["temperature_c"] == 34
    assert gpu["power_w"] == pytest.approx(71.23) and gpu["power_limit_w"] == 700
    assert gpu["throttle_reasons"] == "0x0000000000000004" and gpu["throttle"] == ["sw_power_cap"]
    assert "nvidia_smi_error" not in info
    for key in ("cpu", "cpu_count", "cpu_usable", "torch_threads", "os", "platform"):
        assert info[key] not in (None, ""), key


def test_machine_tries_the_renamed_throttle_field(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    row = SMI_ROW.replace("1980, 2619, 34", "[N/A], 2619, 34")
    body = ('case "$*" in *clocks_throttle_reasons*) echo "Field is not valid" >&2; exit 2;; '
            f'esac\necho "{row}"\n')
    monkeypatch.setenv("PATH", str(_fake_smi(tmp_path / "bin", body)))
    gpu = machine.describe_machine("cpu")["gpus"][0]
    assert gpu["sm_clock_max_mhz"] is None and gpu["mem_clock_max_mhz"] == 2619  # [N/A]
    assert gpu["throttle"] == ["sw_power_cap"]  # read from clocks_event_reasons.active


@pytest.mark.parametrize("body, error", [
    ('echo "NVIDIA-SMI has failed" >&2\nexit 9\n', "exited with 9: NVIDIA-SMI has failed"),
    ('echo "1, 2"\n', "gave 2 values"),
    ("exec sleep 5\n", "did not answer"),
])
def test_machine_survives_a_failing_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               body: str, error: str) -> None:
    folder = _fake_smi(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(machine, "SMI_TIMEOUT_S", 0.5)
    info = machine.describe_machine("cpu")
    assert error in info["nvidia_smi_error"] and "gpus" not in info


def test_machine_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    info = machine.describe_machine("cpu")
    assert info["nvidia_smi_error"] == "nvidia-smi not found on PATH"
    assert info["description"].startswith("CPU (")


def test_manifest_records_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _fake_smi(tmp_path / "bin", f'echo "{SMI_ROW}"\n')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    manifest = runner._manifest(_suite(METHODS), "run-x", None)
    records.write_manifest(tmp_path / "run", manifest)  # validates against the schema
    device = records.read_manifest(tmp_path / "run")["device"]
    assert device["torch_threads"] == torch.get_num_threads() == 1
    assert device["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert {"cpu", "cpu_count", "os", "description"} <= set(device)
