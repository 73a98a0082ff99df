"""Atomic file writes: write a temporary file in the same folder, then rename over the target.

A reader never sees a half-written file, and a killed process leaves either the old file or
the new one (plus, at worst, a stray temporary that is ignored and cleaned up later).

Folders (a report and its figures) are written whole the same way: ``staged_dir`` gives a
fresh folder next to the target, swapped in for it when complete, so the target is at every
moment the complete old folder or the complete new one.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(fh)``, atomically. An OSError (a full disk, a read-only
    folder) names ``path``, the file being written, not the temporary one or none at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # its own error names the folder
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:  # OSError picks the subclass
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one step (Linux renameat2 RENAME_EXCHANGE); False
    where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _sweep(target: Path) -> None:
    """Remove the staged folders of writers of ``target`` that died (killed mid-write); if one
    died between the two renames of the fallback swap, put the old folder back first."""
    for stale in sorted(target.parent.glob(f".{target.name}.*.tmp")):
        pid = stale.name[len(target.name) + 2:].split(".")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if stale.name.endswith(".old.tmp") and not target.exists():
            os.rename(stale, target)
        else:
            shutil.rmtree(stale, ignore_errors=True)


def swap_dir(staged: Path, target: Path) -> None:
    """Put the folder ``staged`` in the place of ``target``; what was there ends up at
    ``staged`` (removed by the caller). Where the system cannot swap in one step, two renames:
    for a moment ``target`` is absent, and ``_sweep`` restores it if the writer dies then."""
    if not target.exists():
        os.rename(staged, target)
    elif not _exchange(staged, target):
        old = staged.with_name(staged.name.removesuffix(".tmp") + ".old.tmp")
        os.rename(target, old)
        os.rename(staged, target)
        os.rename(old, staged)


@contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """A fresh folder next to ``target`` to write into, swapped in whole for ``target`` when
    the block ends without an error (and removed if it raises, ``target`` untouched)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep(target)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=target.parent))
    try:
        yield staged
        os.chmod(staged, 0o777 & ~_UMASK)  # mkdtemp makes 0700; results are meant to be shared
        swap_dir(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # after a swap: the old folder
