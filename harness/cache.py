"""On-disk cache of trained models, fitted drafts and refiner pairs, keyed by content.

The key is a JSON-able dict naming everything that changes the artefact (task, its options
and a hash of its data; plugins, their options and versions; seed, training settings, device
type, code version). Each entry ``<kind>/<hash>.pt`` has a sidecar ``<hash>.json`` holding
the key, the sha256 and size of the .pt bytes, the creation time and the kind. Entries are
written atomically under a per-key lock, so concurrent runs sharing a cache build each entry
once; an entry whose bytes do not match its sidecar, or that cannot be read, is discarded
and rebuilt, never used. ``wsfm-bench cache list|clear`` manages the folder.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from harness.errors import ConfigError
from harness.hashing import stable_hash
from harness.records import atomic

log = logging.getLogger(__name__)
SUFFIXES = (".pt", ".json", ".lock")
# The kinds of artefact the harness and its built-in plugins cache (plugins may add others).
KINDS = ("models", "drafts", "pairs", "features", "extractors", "advisor", "judges",
         "targets")


def training_steps(kind: str, key: dict[str, Any]) -> int | None:
    """The training steps an entry's key names (a network's train_config, a draft's options)."""
    part = {"models": key.get("train_config"),
            "drafts": (key.get("draft") or {}).get("options")}.get(kind)
    steps = part.get("steps") if isinstance(part, dict) else None
    return steps if isinstance(steps, int) else None


def default_cache_dir() -> Path:
    """$WSFM_BENCH_CACHE, else $XDG_CACHE_HOME/wsfm-bench, else ~/.cache/wsfm-bench."""
    env = os.environ.get("WSFM_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wsfm-bench"


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive flock on ``lock_path``; safe against the file being deleted by ``clear``."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = open(lock_path, "a")  # closed below, or on retry
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()  # we locked a file that was unlinked meanwhile: lock the new one
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


@dataclass(frozen=True)
class CacheEntry:
    """One cached artefact as found on disk (``key`` is None when its sidecar is unreadable)."""

    kind: str
    hash: str
    bytes: int
    created: datetime
    key: dict[str, Any] | None
    path: Path

    def age_days(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.created).total_seconds() / 86400


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _entry(folder: Path, stem: str) -> CacheEntry | None:
    """The entry ``folder/stem``; its age comes from the sidecar, else the file's mtime."""
    pt, sidecar = folder / f"{stem}.pt", folder / f"{stem}.json"
    meta = _read_sidecar(sidecar) or {}
    try:
        size = pt.stat().st_size if pt.exists() else 0
        created = datetime.fromisoformat(str(meta.get("created")))
    except ValueError:
        try:
            created = datetime.fromtimestamp((pt if pt.exists() else sidecar).stat().st_mtime, UTC)
        except FileNotFoundError:  # removed meanwhile
            return None
    except FileNotFoundError:
        return None
    created = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    key = meta.get("key")
    return CacheEntry(folder.name, stem, size, created, key if isinstance(key, dict) else None, pt)


class Cache:
    """Content-keyed store of torch-serialisable state (dicts of tensors and plain values)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0
        self.built: Counter[str] = Counter()  # misses by kind ("models", "scores", ...)
        self.discarded = 0
        # Entries this Cache object loaded or built ("kind/stem"): what a cell used, so an
        # executor on other machines can ship them (harness.run.ray_executor).
        self.touched: set[str] = set()
        self._nested: list[float] = []  # seconds of builds inside the builds under way

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.root / kind / f"{stable_hash(key)[:32]}.pt"

    def _verified(self, path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
        """The entry's state if its sidecar matches its bytes and key and it loads, else None."""
        meta = _read_sidecar(path.with_suffix(".json"))
        if meta is None:
            return None
        data = path.read_bytes()
        if (meta.get("sha256") != hashlib.sha256(data).hexdigest()
                or meta.get("bytes") != len(data)
                or stable_hash(meta.get("key")) != stable_hash(key)):
            return None
        try:  # load the very bytes that were verified
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception:
            return None

    def load_or_build(
        self, kind: str, key: dict[str, Any], build: Callable[[], dict[str, Any]],
        sidecar: Callable[[], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The cached state for ``key``, or ``build()``'s, stored first (built once per key).

        The sidecar of a built entry records how long ``build`` took (``build_s``) and where
        (``device``), plus what ``sidecar()`` adds after the build (what it depended on), so a
        warm cache reports the training cost the cold run paid (``meta``)."""
        path = self.path(kind, key)
        self.touched.add(f"{kind}/{path.stem}")
        with _locked(path.with_suffix(".lock")):
            if path.exists():
                state = self._verified(path, key)
                if state is not None:
                    self.hits += 1
                    return state
                log.warning("cache entry %s failed its integrity check: rebuilding", path)
                self.discarded += 1
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)
            # build_s is this entry's own time: entries built inside its build (a fine-tune's
            # full model) record theirs, and are counted once, through "needs".
            start = time.perf_counter()
            self._nested.append(0.0)
            try:
                state = build()
            finally:
                nested = self._nested.pop()
            total = time.perf_counter() - start
            seconds = total - nested
            if self._nested:
                self._nested[-1] += total
            buf = io.BytesIO()
            torch.save(state, buf)
            data = buf.getvalue()
            atomic.write_bytes(path, data)
            atomic.write_json(path.with_suffix(".json"), {
                **(sidecar() if sidecar else {}),
                "key": key, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                "created": datetime.now(UTC).isoformat(timespec="seconds"), "kind": kind,
                "build_s": seconds, "device": str(key.get("device", "cpu")),
                "steps": training_steps(kind, key),
            })
            self.misses += 1
            self.built[kind] += 1
            return state

    def meta(self, kind: str, key: dict[str, Any]) -> dict[str, Any]:
        """The sidecar of the entry for ``key`` ({} when absent or unreadable)."""
        return _read_sidecar(self.path(kind, key).with_suffix(".json")) or {}

    def export(self, names: set[str] | list[str]) -> dict[str, bytes]:
        """{"kind/stem.pt" | "kind/stem.json": bytes} of the named entries, as on disk."""
        blobs = {}
        for name in sorted(names):
            for suffix in (".pt", ".json"):
                path = self.root / f"{name}{suffix}"
                if path.exists():
                    blobs[f"{name}{suffix}"] = path.read_bytes()
        return blobs

    def install(self, blobs: dict[str, bytes]) -> int:
        """Write exported entries that this cache lacks (atomically, under each entry's lock);
        returns how many were written. Their sidecars are checked on load as for any entry."""
        written = 0
        for name in sorted({n.rsplit(".", 1)[0] for n in blobs}):
            kind, _, stem = name.partition("/")
            if kind.startswith(".") or not stem or "/" in stem or stem.startswith("."):
                raise ConfigError(f"cache entry name {name!r} is not kind/hash")
            path = self.root / kind / f"{stem}.pt"
            with _locked(path.with_suffix(".lock")):
                if path.exists() or f"{name}.pt" not in blobs or f"{name}.json" not in blobs:
                    continue
                atomic.write_bytes(path, blobs[f"{name}.pt"])
                atomic.write_bytes(path.with_suffix(".json"), blobs[f"{name}.json"])
                written += 1
        return written

    def entries(self) -> list[CacheEntry]:
        """Every entry (a .pt file or a sidecar) under the root, oldest first."""
        found = []
        for folder in sorted(p for p in self.root.glob("*") if p.is_dir()):
            stems = {p.stem for s in (".pt", ".json") for p in folder.glob(f"*{s}")}
            for stem in sorted(stems):
                entry = _entry(folder, stem)
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: e.created)

    def clear(
        self,
        older_than_days: float | None = None,
        key_prefix: str | None = None,
        kind: str | None = None,
        everything: bool = False,
    ) -> list[CacheEntry]:
        """Remove the entries matching every filter given (hash prefix, kind, age); returns them.

        With no filter, ``everything=True`` is required: a bare clear is refused.
        """
        if older_than_days is None and not key_prefix and kind is None and not everything:
            raise ConfigError("cache clear needs a filter (--older-than, --key, --kind) or --all")
        if older_than_days is not None and not (math.isfinite(older_than_days)
                                                and older_than_days >= 0):
            # An age compared with NaN is never "newer", so NaN would remove every entry.
            raise ConfigError(f"--older-than {older_than_days}: {AGE_HELP}")
        if kind is not None:
            present = sorted(p.name for p in self.root.glob("*") if p.is_dir())
            if kind not in set(present) | set(KINDS):
                raise ConfigError(f"--kind {kind!r}: no such cache kind; kinds: "
                                  f"{', '.join(sorted(set(present) | set(KINDS)))}")
        now = datetime.now(UTC)
        removed = []
        for e in self.entries():
            if ((kind is not None and e.kind != kind)
                    or (key_prefix and not e.hash.startswith(key_prefix.lower()))
                    or (older_than_days is not None and e.age_days(now) < older_than_days)):
                continue
            with _locked(e.path.with_suffix(".lock")):  # never under a writer's feet
                for suffix in SUFFIXES:  # the lock last, while still held
                    e.path.with_suffix(suffix).unlink(missing_ok=True)
            removed.append(e)
        return removed


AGE_HELP = ("give a finite age of at least 0, in days (30, 0.5, 30d) or hours (12h); "
            "nothing was removed")
_AGE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>[dh]?)")


def parse_age(text: str) -> float:
    """``--older-than`` in days: "30", "0.5", "30d" or "12h" (hours). Anything else (nan, inf,
    a negative or signed number, another unit) is refused: it must never widen what is removed."""
    match = _AGE.fullmatch(str(text).strip().lower())
    if match is None:
        raise ConfigError(f"--older-than {text!r}: {AGE_HELP}")
    days = float(match["number"]) / (24 if match["unit"] == "h" else 1)
    if not math.isfinite(days):  # a number of 400 digits overflows to inf
        raise ConfigError(f"--older-than {text!r}: {AGE_HELP}")
    return days


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _age(days: float) -> str:
    seconds = max(days * 86400, 0.0)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.1f}{unit}"
    return f"{seconds:.0f}s"


def key_summary(key: dict[str, Any] | None, width: int = 60) -> str:
    """A short human summary of a key: task, plugins, model, seed, device."""
    if key is None:
        return "(no readable sidecar)"
    parts = []
    for field in ("task", "draft", "refiner"):
        value = key.get(field)
        name = value.get("name") if isinstance(value, dict) else value
        if name is not None:
            parts.append(str(name) if field == "task" else f"{field}={name}")
    parts += [f"{f}={key[f]}" for f in ("model", "seed", "device") if f in key]
    text = " ".join(parts) or json.dumps(key, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``list`` and ``clear`` subcommands (and ``--cache DIR``) to the `cache` command."""
    help_dir = f"cache folder (default: {default_cache_dir()})"
    parser.add_argument("--cache", default=None, metavar="DIR", help=help_dir)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", default=argparse.SUPPRESS, metavar="DIR", help=help_dir)
    sub = parser.add_subparsers(dest="cache_command", required=True)
    sub.add_parser("list", parents=[common], help="print the cached entries and their size")
    p = sub.add_parser("clear", parents=[common], help="remove cached entries")
    p.add_argument("--older-than", metavar="AGE", dest="older_than",
                   help="only entries created at least AGE ago: days (30, 0.5, 30d) or hours "
                        "(12h)")
    p.add_argument("--key", metavar="PREFIX", dest="key_prefix",
                   help="only entries whose hash starts with PREFIX")
    p.add_argument("--kind", help=f"only this kind ({', '.join(KINDS)})")
    p.add_argument("--all", action="store_true", dest="everything",
                   help="remove every entry (needed when no other filter is given)")


def run(args: argparse.Namespace) -> int:
    """Carry out `wsfm-bench cache list|clear`; returns the exit code."""
    cache = Cache(getattr(args, "cache", None) or default_cache_dir())
    if args.cache_command == "clear":
        age = None if args.older_than is None else parse_age(args.older_than)
        gone = cache.clear(age, args.key_prefix, args.kind, args.everything)
        missing = "" if cache.root.is_dir() else " (the folder does not exist)"
        print(f"removed {len(gone)} entries ({_size(sum(e.bytes for e in gone))}) "
              f"from {cache.root}{missing}")
        return 0
    if not cache.root.is_dir():
        what = "is not a folder" if cache.root.exists() else "does not exist"
        raise ConfigError(f"cache folder {cache.root} {what}: give the folder your runs cache "
                          "into (--cache DIR or $WSFM_BENCH_CACHE)")
    entries = cache.entries()
    now = datetime.now(UTC)
    print(f"{'kind':<8} {'hash':<12} {'size':>10} {'age':>7}  key")
    for e in entries:
        print(f"{e.kind:<8} {e.hash[:12]:<12} {_size(e.bytes):>10} {_age(e.age_days(now)):>7}"
              f"  {key_summary(e.key)}")
    print(f"{len(entries)} entries, {_size(sum(e.bytes for e in entries))} total in {cache.root}")
    return 0


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' dtypes, shapes and raw bytes (the same on every device)."""
    h = hashlib.sha256()
    for x in tensors:
        flat = x.detach().cpu().contiguous().reshape(-1)
        h.update(f"{flat.dtype}{tuple(x.shape)}".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()
