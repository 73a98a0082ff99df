"""On-disk cache of trained models, fitted drafts and refiner pairs, keyed by content.

The key is a JSON-able dict naming everything that changes the artefact (task and its
options, plugin and its options, seed, training settings, code version). Entries are
written atomically under a per-key lock, so concurrent runs sharing a cache build each
entry once; an entry that cannot be read is discarded and rebuilt, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from harness import atomic


def stable_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    env = os.environ.get("WSFM_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wsfm-bench"


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Cache:
    """Content-keyed store of torch-serialisable state (dicts of tensors and plain values)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.root / kind / f"{stable_hash(key)[:32]}.pt"

    def load_or_build(
        self, kind: str, key: dict[str, Any], build: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        path = self.path(kind, key)
        with _locked(path.with_suffix(".lock")):
            if path.exists():
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                    self.hits += 1
                    return state
                except Exception:  # truncated or corrupt: discard and rebuild
                    path.unlink(missing_ok=True)
            state = build()
            atomic.atomic_write(path, lambda fh: torch.save(state, fh))
            atomic.write_json(path.with_suffix(".json"), key)
            self.misses += 1
            return state
