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

import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from harness.cache import Cache
from harness.errors import ConfigError
from harness.records.cell import Cell
from harness.run.jobs import cell_job, prepare_job

if TYPE_CHECKING:
    from harness.run.executors import ExecutorSpec


def check_ray(address: str | None = None) -> None:
    """Ray is an optional extra: a clear error when it is missing. With ``address``, join
    that cluster now, so that a wrong address or a missing token fails before any work (the
    run's Ray backend then uses this connection)."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install "
                          f"ray), then run again ({exc})") from exc
    if address and not ray.is_initialized():
        with _sigterm_kept():
            connect(ray, address)


PROBE_TIMEOUT_S = 3.0  # a head node that is up answers a TCP connect at once
GCS_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"  # Ray's retries of the cluster, about 1 s each
GCS_WAIT_S = "2"  # instead of Ray's 20 tries: a refused token fails on the first
AUTH_HINT = ("set RAY_AUTH_MODE=token and give this process the cluster's token: "
             "RAY_AUTH_TOKEN=<token>, or the file ~/.ray/auth_token (RAY_AUTH_TOKEN_PATH names "
             "another); `ray get-auth-token` on the head node prints it")


def check_reachable(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A ConfigError at once when nothing answers at ``address`` (HOST:PORT, or
    ray://HOST:PORT), where Ray would retry for minutes."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray's to resolve
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"--address {address}: nothing answers there ({exc.strerror or exc}); check the "
            "address: the head node's IP and the port of its `ray start --head --port` (6379 "
            "unless given), and that the head is running and reachable from here") from None


def connect(ray: Any, address: str) -> None:
    """``ray.init`` on the cluster at ``address``, failing within seconds with one line
    saying what to do: nothing answers there (check the address), or the cluster wants a
    token this process lacks. Ray's own output while connecting is kept apart, and shown
    only when it connected."""
    check_reachable(address)
    previous = os.environ.get(GCS_WAIT_ENV)
    os.environ.setdefault(GCS_WAIT_ENV, GCS_WAIT_S)  # the user's own setting wins
    try:
        with _stderr_set_aside() as said:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # noqa: BLE001 - Ray's failures are many; all end here
                said.failed = True
                raise _connect_error(address, exc, said.text()) from None
    finally:
        if previous is None:
            os.environ.pop(GCS_WAIT_ENV, None)


def _connect_error(address: str, exc: BaseException, output: str) -> ConfigError:
    """One line for a failed connection to a cluster, from Ray's errors and output."""
    text, cause = output, exc
    while cause is not None:
        text += f"\n{cause}"
        cause = cause.__cause__ or cause.__context__
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        mode = os.environ.get("RAY_AUTH_MODE", "")
        why = ("this process has no token (RAY_AUTH_MODE is not 'token')" if mode != "token"
               else "this process's token is not the cluster's")
        return ConfigError(f"--executor ray --address {address}: the cluster asks for a token "
                           f"and {why}: {AUTH_HINT}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"--executor ray --address {address}: cannot connect ({first}); check "
                       "the address and that every node runs the same Ray version")


class _StderrText:
    """What the process wrote to its stderr (fd 2, C++ included) meanwhile."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.failed = False

    def text(self) -> str:
        self.file.flush()
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")


@contextmanager
def _stderr_set_aside() -> Iterator[_StderrText]:
    """File descriptor 2 into a temporary file meanwhile; written out afterwards unless
    ``failed`` (the failure is then said in one line instead)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as file:
        said = _StderrText(file)
        os.dup2(file.fileno(), 2)
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not said.failed:
                sys.stderr.write(said.text())


@contextmanager
def _sigterm_kept() -> Iterator[None]:
    """ray.init replaces this process's SIGTERM handler (with sys.exit); the run's own one
    (harness.run.stopping: mark the run interrupted) must stay."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


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
            with _sigterm_kept():
                if spec.address:
                    connect(ray, spec.address)
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
