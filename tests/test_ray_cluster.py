"""--executor ray --address on a cluster of one's own (issue 20, item 14): a real two-node Ray
cluster on this machine (a head, and a second node that joins it), with token authentication
on as the user's would have it. A run with the cluster's token works; without it, or with an
address where nothing listens, the command says what to do in one line within seconds.

The test starts its nodes itself (`ray start --block`, each in a process group of its own, in
a temporary folder, on ports it picked, with a throwaway HOME) and stops exactly
those process groups: never `ray stop`, which would stop every Ray on the machine."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
SUITE = """
name = "on-ray"
seeds = [0]
budgets = [2, 4]
n_samples = 200
n_eval = 200
repeats = 1
threads = 1
[training]
steps = 20
[[tasks]]
name = "two-moons"
n_train = 400
n_test = 200
[[methods]]
name = "full-fm"
[[methods]]
name = "draft-only"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ports(*flags: str) -> list[str]:
    return [part for flag in flags for part in (flag, str(free_port()))]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*RAY, "start", "--block", "--num-cpus", "1", "--object-store-memory",
         str(100 * 2**20), "--disable-usage-stats", *args,
         *_ports("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                 "--metrics-export-port", "--runtime-env-agent-port")],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(node: subprocess.Popen) -> None:
    """End the node's process group (`ray start --block` and what it started) and nothing
    else: SIGTERM first, which the node handles by stopping its processes."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            node.poll()  # reap it: a zombie would keep its group alive
            try:
                os.killpg(node.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    """How many nodes the cluster at ``address`` has up (0 while its head is not up)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return 0
    code = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return 0
    return int(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.split() else 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(address, the environment of a driver holding the cluster's token)."""
    tmp = tmp_path_factory.mktemp("ray-cluster")
    (tmp / "home").mkdir()
    short = Path(tempfile.mkdtemp(prefix="wsfm-ray-"))  # Ray's socket paths: 107 bytes at most
    env = {**os.environ, "HOME": str(tmp / "home"), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # SIGTERM: stop at once, no draining
    port = free_port()
    address = f"{ray.util.get_node_ip_address()}:{port}"  # where the nodes listen
    nodes = [_start(["--head", "--port", str(port), "--temp-dir", str(short),
                     "--include-dashboard", "false",
                     *_ports("--dashboard-port")],
                    env, tmp / "head.log")]
    try:
        deadline = time.time() + 180
        while _alive_nodes(address, env) < 1:
            assert nodes[0].poll() is None, (tmp / "head.log").read_text()[-3000:]
            assert time.time() < deadline, "the head node did not start"
            time.sleep(1)
        nodes.append(_start(["--address", address], env, tmp / "node.log"))
        while _alive_nodes(address, env) < 2:
            assert nodes[1].poll() is None, (tmp / "node.log").read_text()[-3000:]
            assert time.time() < deadline, "the second node did not join"
            time.sleep(1)
        yield address, env
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(short, ignore_errors=True)


def _cli(tmp_path: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.CompletedProcess,
                                                                   float]:
    suite = tmp_path / "on-ray.toml"
    suite.write_text(SUITE)
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--out",
                          str(tmp_path / "results"), "--cache", str(tmp_path / "cache"),
                          "--run-id", "r", "--quiet", "--no-report", "--executor", "ray",
                          *extra], env=env, capture_output=True, text=True, timeout=600)
    return out, time.time() - start


def test_a_run_on_a_two_node_cluster_with_its_token(tmp_path: Path, cluster) -> None:
    address, env = cluster
    out, _ = _cli(tmp_path, env, "--address", address)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "results" / "r"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["executor"]["address"] == address
    records = [json.loads(p.read_text()) for p in (run / "cells").glob("*.json")]
    assert len(records) == 3 and {r["identity"]["executor"] for r in records} == {"ray"}


def test_without_the_token_one_line_says_how_to_give_it(tmp_path: Path, cluster) -> None:
    address, env = cluster
    bare = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    bare["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    out, seconds = _cli(tmp_path, bare, "--address", address)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"--executor ray --address {address}: the cluster asks for a token and this " \
        "process has no token (RAY_AUTH_MODE is not 'token'): set RAY_AUTH_MODE=token" \
        in out.stderr and "RAY_AUTH_TOKEN" in out.stderr
    assert seconds < 25, seconds  # Ray alone retried for 20 s before, then three tracebacks
    assert not (tmp_path / "results").exists()


def test_an_address_where_nothing_listens_fails_at_once(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    out, seconds = _cli(tmp_path, dict(os.environ), "--address", address)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"--address {address}: nothing answers there" in out.stderr
    assert "check the address" in out.stderr
    assert seconds < 25, seconds  # Ray alone waited past 60 s before
