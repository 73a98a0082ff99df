"""Cells as Ray tasks (``wsfm-bench run --executor ray [--address ADDR]``).

Without ``--address`` a local Ray instance is started for the run with ``--workers`` x the
threads per worker CPUs, and stopped after it; with one, the run joins that cluster (every
node needs this package installed, as for any Ray job). Each task asks for the CPUs it pins
(its torch threads) and, with ``--device cuda``, one GPU.

A preparation (harness.run.plan) is a task whose result holds the cache entries it built or
loaded (kind, hash, bytes, sidecar); a cell is a task given that result, so Ray schedules
it after its preparation and ships the artefacts to whichever node runs it, where they are
installed into that node's cache folder (the same path as the driver's) and checked against
their sidecars as usual. A worker or node that dies is retried by the driver's schedule
(harness.run.executors), not by Ray, so there is one retry rule for every executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.cache import Cache
from harness.errors import ConfigError
from harness.records.cell import Cell
from harness.run.jobs import cell_job, prepare_job

if TYPE_CHECKING:
    from harness.run.executors import ExecutorSpec


def check_ray() -> None:
    """Ray is an optional extra: a clear error when it is missing."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install "
                          f"ray), then run again ({exc})") from exc


def _pin(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def ray_prepare(cell_data: dict[str, Any], cache_root: str, threads: int) -> dict[str, Any]:
    """A preparation; its result carries the artefacts it used, for the cells that follow."""
    _pin(threads)
    result = prepare_job(cell_data, cache_root)
    result["artefacts"] = Cache(cache_root).export(result["touched"])
    return result


def ray_cell(cell_data: dict[str, Any], cache_root: str, threads: int,
             prepared: dict[str, Any]) -> dict[str, Any]:
    """A cell, after installing its preparation's artefacts into this node's cache."""
    _pin(threads)
    Cache(cache_root).install(prepared["artefacts"])
    return cell_job(cell_data, cache_root)


class RayBackend:
    """Jobs as Ray tasks; ``slots`` is how many the driver keeps in flight."""

    def __init__(self, spec: ExecutorSpec, cache: Cache, device: str) -> None:
        import ray

        self.ray = ray
        self.threads = int(spec.threads or 1)
        self.cache_root = str(cache.root)
        self._started = False
        if not ray.is_initialized():
            if spec.address:
                ray.init(address=spec.address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=spec.workers * self.threads, include_dashboard=False,
                         log_to_driver=False)
            self._started = True
        gpus = 1 if device.startswith("cuda") else 0
        resources = ray.cluster_resources()
        if spec.address:  # as many as the cluster can run at once
            fit = int(resources.get("CPU", 1) // self.threads)
            if gpus:
                fit = min(fit, int(resources.get("GPU", 0)))
            self.slots = max(1, fit)
        else:
            self.slots = spec.workers
        if gpus and not resources.get("GPU"):
            raise ConfigError(f"--device {device}: the Ray cluster has no GPU")
        options = {"num_cpus": self.threads, "num_gpus": gpus, "max_retries": 0}
        self._prepare = ray.remote(ray_prepare).options(**options)
        self._cell = ray.remote(ray_cell).options(**options)

    def submit(self, kind: str, cell: Cell, prepared: Any) -> Any:
        if kind == "prep":
            return self._prepare.remote(cell.to_dict(), self.cache_root, self.threads)
        return self._cell.remote(cell.to_dict(), self.cache_root, self.threads, prepared)

    def prepared(self, handle: Any) -> Any:
        return handle  # the cell task depends on the preparation's result in the object store

    def wait(self, handles: list[Any]) -> list[tuple[Any, str, Any]]:
        from ray import exceptions

        lost = (exceptions.WorkerCrashedError, exceptions.NodeDiedError,
                exceptions.ObjectLostError, exceptions.OwnerDiedError)
        done, _ = self.ray.wait(handles, num_returns=1)
        out = []
        for ref in done:
            try:
                out.append((ref, "ok", self.ray.get(ref)))
            except lost as exc:
                out.append((ref, "lost", type(exc).__name__))
            except exceptions.RayTaskError as exc:
                out.append((ref, "error", exc.as_instanceof_cause()))
        return out

    def close(self, abort: bool = False) -> None:
        if self._started:  # a local instance: its workers, and their work, end with it
            self.ray.shutdown()
