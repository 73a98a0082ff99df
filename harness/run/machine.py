"""What the manifest records about the machine, the code and the packages."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("wsfm-bench", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas",
            "seaborn", "matplotlib", "torch-fidelity", "evaluate", "torchdiffeq")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    """The commit of the working tree the harness runs from, and whether it is dirty."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout
        return {"commit": commit, "dirty": bool(dirty.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cpus() -> int | None:
    """CPUs this process may run on (affinity, cgroup-pinned containers); None if unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


# nvidia-smi --query-gpu fields, and the names the manifest gives them. The throttle reasons
# field was renamed clocks_event_reasons in newer drivers; the old name is tried first.
SMI_FIELDS = (
    ("index", "index"), ("uuid", "uuid"), ("name", "name"), ("driver", "driver_version"),
    ("memory_total_mib", "memory.total"), ("memory_used_mib", "memory.used"),
    ("pstate", "pstate"), ("sm_clock_mhz", "clocks.sm"), ("mem_clock_mhz", "clocks.mem"),
    ("sm_clock_max_mhz", "clocks.max.sm"), ("mem_clock_max_mhz", "clocks.max.mem"),
    ("temperature_c", "temperature.gpu"), ("power_w", "power.draw"),
    ("power_limit_w", "power.limit"), ("utilization_pct", "utilization.gpu"),
    ("throttle_reasons", "clocks_throttle_reasons.active"),
)
THROTTLE_ALIASES = ("clocks_throttle_reasons.active", "clocks_event_reasons.active")
# NVML's nvmlClocksThrottleReasons bits, decoded so a reader needs no lookup table.
THROTTLE_BITS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
SMI_TIMEOUT_S = 15


def _smi_value(key: str, raw: str) -> Any:
    raw = raw.strip()
    if not raw or raw.startswith("[") or raw in ("N/A", "Unknown"):  # [N/A], [Not Supported]
        return None
    if key in ("name", "uuid", "driver", "pstate", "throttle_reasons"):
        return raw
    try:
        number = float(raw)
    except ValueError:
        return raw
    return int(number) if number.is_integer() and key != "power_w" else number


def _throttle_names(mask: str | None) -> list[str] | None:
    if mask is None:
        return None
    try:
        bits = int(mask, 16)
    except ValueError:
        return None
    names = [name for bit, name in THROTTLE_BITS.items() if bits & bit]
    unknown = bits & ~sum(THROTTLE_BITS)
    return names + ([f"other:{unknown:#x}"] if unknown else [])


def nvidia_smi() -> dict[str, Any]:
    """Every GPU's state from ``nvidia-smi --query-gpu`` ({"gpus": [...]}), or {"error": why}
    when nvidia-smi is missing, fails or times out; never raises."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"error": "nvidia-smi not found on PATH"}
    keys = [k for k, _ in SMI_FIELDS]
    error = ""
    for throttle_field in THROTTLE_ALIASES:
        fields = [f for _, f in SMI_FIELDS[:-1]] + [throttle_field]
        try:
            done = subprocess.run(
                [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"error": f"nvidia-smi did not answer within {SMI_TIMEOUT_S} s"}
        except OSError as exc:
            return {"error": f"nvidia-smi could not run: {exc}"}
        if done.returncode == 0:
            break
        error = (f"nvidia-smi exited with {done.returncode}: "
                 f"{(done.stderr or done.stdout).strip()[:300]}")
    else:
        return {"error": error}
    gpus = []
    for line in done.stdout.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(keys):
            return {"error": f"nvidia-smi gave {len(values)} values for {len(keys)} fields: "
                             f"{line[:300]!r}"}
        gpu = {k: _smi_value(k, v) for k, v in zip(keys, values, strict=True)}
        gpu["throttle"] = _throttle_names(gpu["throttle_reasons"])
        gpus.append(gpu)
    return {"gpus": gpus}


def _match_gpu(gpus: list[dict[str, Any]], device: torch.device) -> dict[str, Any] | None:
    """The nvidia-smi row of ``device``: by UUID when torch gives one (nvidia-smi ignores
    CUDA_VISIBLE_DEVICES), else by index."""
    index = device.index or 0
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except (AttributeError, RuntimeError, AssertionError):
        uuid = None
    for gpu in gpus:
        if uuid and gpu.get("uuid") and uuid in str(gpu["uuid"]):
            return gpu
    return next((g for g in gpus if g.get("index") == index), None) if not uuid else None


def describe_machine(device: str) -> dict[str, Any]:
    """The machine a run uses: CPU, cores, torch threads, OS, and (where nvidia-smi exists)
    each GPU's name, memory, driver, clocks, temperature, power and throttle reasons."""
    dev = torch.device(device)
    info: dict[str, Any] = {
        "device": device,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": _usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "os": f"{platform.system()} {platform.release()}".strip(),
        "platform": platform.platform(),
        "torch_cuda": torch.version.cuda,
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    gpu_capability=f"{props.major}.{props.minor}")
    smi = nvidia_smi()
    if "error" in smi:
        info["nvidia_smi_error"] = smi["error"]
    else:
        info["gpus"] = smi["gpus"]
        if dev.type == "cuda":
            state = _match_gpu(smi["gpus"], dev)
            if state is not None:
                info["gpu_state"] = state
                info["gpu_driver"] = state.get("driver")
    info["description"] = (
        f"{info.get('gpu', 'CPU')} ({info['cpu']}, {info['cpu_count']} cores, "
        f"{info['torch_threads']} torch threads)"
    )
    return info
