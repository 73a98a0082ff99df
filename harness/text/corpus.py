"""Text corpora for the text tasks, normalised to the Text-8 alphabet, and their windows.

``load_corpus`` returns one long normalised string (lowercase a-z and single spaces):

- ``"pydoc"``: CPython's own documentation topics (``pydoc_data.topics``, about 465K
  characters); always present, the offline default.
- ``"text8"``: Matt Mahoney's Text-8 (100M characters of cleaned Wikipedia). Read from
  ``path`` (the ``text8`` file or ``text8.zip``), else from ``<root>`` or the benchmark cache's
  ``datasets/text8/`` folder, else downloaded there when ``download=True`` (checked against
  the zip's sha256; never downloaded otherwise).
- ``"wikitext103"``: the WikiText-103 train split, from local ``wiki.train.raw`` /
  ``wiki.train.tokens`` files, else through the ``datasets`` library when ``download=True``.
- ``"file"``: any UTF-8 text file at ``path``.

``make_windows`` cuts a normalised text into fixed-length id sequences with a seeded,
leak-free train/test split (see ``window_starts``).
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from harness.cache import default_cache_dir
from harness.checks import positive_int
from harness.errors import ConfigError
from harness.text.alphabet import ALPHABET, encode, normalise

CORPORA = ("pydoc", "text8", "wikitext103", "file")
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
# sha256 of text8.zip (31,344,016 bytes) and of the text8 file inside it (100,000,000 bytes),
# as pinned by independent public projects that download it.
TEXT8_ZIP_SHA256 = "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232"
TEXT8_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"
WIKITEXT_DATASET = ("Salesforce/wikitext", "wikitext-103-raw-v1")

_SOCKET_TIMEOUT_S = 60.0  # a stalled connection fails after this long without data
_DOWNLOAD_DEADLINE_S = 1800.0  # and a trickling one after this long in all
_BLOCK_BYTES = 1 << 22  # files are read and decoded in blocks of this many bytes
_CHUNK_CHARS = 1 << 20  # and normalised in chunks of about this many characters
_BLOCK_WINDOWS = 8  # a split block holds this many windows (fewer for small corpora)
_IN_ALPHABET = re.compile(r"[a-z ]*")
_SPACES = re.compile(r"  +")  # runs of two or more: single spaces need no rewrite
_LUT = np.full(256, 255, dtype=np.uint8)  # ASCII byte -> alphabet id; 255 = not in the alphabet
_LUT[np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)] = encode(ALPHABET)


class CorpusError(ConfigError):
    """A corpus is missing, unreadable, empty, or too short for the requested windows."""


# --- normalisation in chunks -------------------------------------------------------------


def _normalise_chunk(text: str) -> str:
    if _IN_ALPHABET.fullmatch(text):
        # Already Text-8 text (as text8 itself is): what normalise() returns, without its
        # per-character pass, which would take minutes on 100M characters.
        return _SPACES.sub(" ", text).strip()
    return normalise(text)


def _normalise_stream(pieces: Iterable[str], drop: str | None = None) -> str:
    """``normalise("".join(pieces))``, computed chunk by chunk to bound memory and time.

    Chunks are cut only at whitespace, which normalise() turns into a word boundary, so
    joining the normalised chunks with single spaces gives exactly the one-shot result.
    ``drop`` (e.g. WikiText's ``<unk>``) is replaced by a space before normalising.
    """
    out: list[str] = []

    def emit(chunk: str) -> None:
        if drop:
            chunk = chunk.replace(drop, " ")
        if chunk := _normalise_chunk(chunk):
            out.append(chunk)

    carry = ""
    for piece in pieces:
        carry += piece
        if len(carry) < _CHUNK_CHARS:
            continue
        cut = max(carry.rfind(c) for c in " \n\t\r")
        if cut > 0:
            emit(carry[:cut])
            carry = carry[cut:]
    emit(carry)
    return " ".join(out)


def _decoded_blocks(stream: IO[bytes], name: str) -> Iterator[str]:
    """Strict UTF-8 decoding in blocks; a bad byte is reported with its offset in the file."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    fed = 0  # bytes given to the decoder so far
    while True:
        block = stream.read(_BLOCK_BYTES)
        pending = len(decoder.getstate()[0])  # bytes of an unfinished character it holds
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            offset = fed - pending + exc.start
            bad = exc.object[exc.start : exc.start + 1].hex()
            raise CorpusError(
                f"{name} is not valid UTF-8: byte 0x{bad} at byte offset {offset} "
                f"({exc.reason}); re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            ) from None
        fed += len(block)
        if text:
            yield text
        if not block:
            return


def _read_stream(stream: IO[bytes], name: str, size: int, drop: str | None = None) -> str:
    if size == 0:
        raise CorpusError(f"{name} is empty; give a file that holds text")
    text = _normalise_stream(_decoded_blocks(stream, name), drop=drop)
    if not text:
        raise CorpusError(
            f"{name} holds no letters once normalised to the Text-8 alphabet (a-z and "
            f"space); give a file of (English) prose"
        )
    return text


def _read_file(path: Path, drop: str | None = None) -> str:
    if not path.exists():
        raise CorpusError(f"corpus file {path} does not exist; check the path")
    if not path.is_file():
        raise CorpusError(f"corpus path {path} is not a file; point it at a text file")
    with open(path, "rb") as fh:
        return _read_stream(fh, str(path), path.stat().st_size, drop=drop)


def _read_zip(path: Path, member: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if member not in names:
                if len(names) != 1:
                    raise CorpusError(f"{path} has no member {member!r} (it holds {names})")
                member = names[0]
            with zf.open(member) as fh:
                return _read_stream(fh, f"{path}:{member}", zf.getinfo(member).file_size)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorpusError(f"{path} is not a readable zip file ({exc}); replace it") from exc


# --- the corpora -------------------------------------------------------------------------


def _pydoc() -> str:
    from pydoc_data.topics import topics

    return normalise("\n".join(topics[key] for key in sorted(topics)))


def _check_sha256(sha256: str) -> str:
    digest = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CorpusError(f"sha256={sha256!r} is not a sha256 digest (64 hex digits)")
    return digest


def _download(url: str, dest: Path, sha256: str) -> None:
    """Fetch ``url`` to ``dest`` via a temporary file, renamed into place only if it matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    deadline = time.monotonic() + _DOWNLOAD_DEADLINE_S
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "wsfm-bench"})
            with urllib.request.urlopen(request, timeout=_SOCKET_TIMEOUT_S) as response:
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"not finished after {_DOWNLOAD_DEADLINE_S:.0f} s")
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            raise CorpusError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; the "
                f"download was discarded (check the url and sha256 options)"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache is read by others
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise CorpusError(
            f"could not download {url} ({exc}); fetch it yourself and put it at {dest}"
        ) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def _text8(path: str | None, root: str | None, download: bool, url: str | None,
           sha256: str | None) -> str:
    if path:
        p = Path(path).expanduser()
        if p.suffix == ".zip" and p.is_file():
            return _read_zip(p, "text8")
        return _read_file(p)
    folder = Path(root).expanduser() if root else default_cache_dir() / "datasets" / "text8"
    if (folder / "text8").is_file():
        return _read_file(folder / "text8")
    if not (folder / "text8.zip").is_file():
        url = url or TEXT8_URL
        if not download:
            raise CorpusError(
                f"Text-8 not found: put text8 or text8.zip in {folder}, or set path to a "
                f"local copy, or set download = true to fetch {url} there (about 31 MB)"
            )
        if sha256 is None and url != TEXT8_URL:
            raise CorpusError(f"downloading from url={url} needs its sha256 option")
        _download(url, folder / "text8.zip", _check_sha256(sha256 or TEXT8_ZIP_SHA256))
    return _read_zip(folder / "text8.zip", "text8")


def _wikitext_rows(rows: Any, batch: int = 10_000) -> Iterator[str]:
    for start in range(0, len(rows), batch):
        yield "\n".join(rows[start : start + batch]["text"]) + "\n"


def _wikitext103(root: str | None, download: bool) -> str:
    """The train split of WikiText-103 (``wiki.train.raw``, else ``wiki.train.tokens``)."""
    folder = Path(root).expanduser() if root else default_cache_dir() / "datasets" / "wikitext103"
    for sub in (".", "wikitext-103-raw", "wikitext-103"):
        for name, drop in (("wiki.train.raw", None), ("wiki.train.tokens", "<unk>")):
            if (folder / sub / name).is_file():
                return _read_file(folder / sub / name, drop=drop)
    if not download:
        raise CorpusError(
            f"WikiText-103 not found: put wiki.train.raw (or wiki.train.tokens) in {folder}, "
            f"or set root to the folder that holds it, or set download = true to fetch it "
            f"with the datasets library"
        )
    try:
        import datasets
    except ImportError as exc:
        raise CorpusError(
            "downloading WikiText-103 needs the datasets library: pip install 'wsfm-bench[text]'"
        ) from exc
    try:
        rows = datasets.load_dataset(*WIKITEXT_DATASET, split="train")
        text = _normalise_stream(_wikitext_rows(rows))
    except Exception as exc:  # the library raises many kinds: connection, hub, offline mode
        raise CorpusError(
            f"could not load {'/'.join(WIKITEXT_DATASET)} with the datasets library "
            f"({type(exc).__name__}: {exc}); put wiki.train.raw in {folder} instead"
        ) from exc
    if not text:
        raise CorpusError(f"{'/'.join(WIKITEXT_DATASET)} came back empty")
    return text


def load_corpus(corpus: str, path: str | None = None, root: str | None = None,
                download: bool = False, url: str | None = None,
                sha256: str | None = None) -> str:
    """The normalised text (a-z and single spaces) of ``corpus``, one of ``CORPORA``.

    ``path``: the file for "file", or a local text8 / text8.zip for "text8". ``root``: the
    folder holding text8 or the WikiText-103 files (default: the benchmark cache's
    ``datasets/<name>/``). ``download``: allow fetching text8 (from ``url``, default
    ``TEXT8_URL``, checked against ``sha256``, default ``TEXT8_ZIP_SHA256``; another url
    needs its sha256) or WikiText-103 (with the datasets library). Raises CorpusError.
    """
    if corpus not in CORPORA:
        raise CorpusError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    given = {"path": path, "root": root, "download": download or None, "url": url,
             "sha256": sha256}
    allowed = {"pydoc": (), "file": ("path",), "wikitext103": ("root", "download"),
               "text8": ("path", "root", "download", "url", "sha256")}[corpus]
    extra = [k for k, v in given.items() if v is not None and k not in allowed]
    if extra:
        raise CorpusError(
            f"corpus {corpus!r} takes no {', '.join(extra)} option"
            + (f" (it takes {', '.join(allowed)})" if allowed else "")
        )
    if corpus == "pydoc":
        return _pydoc()
    if corpus == "file":
        if not path:
            raise CorpusError('corpus "file" needs path = the text file to read')
        return _read_file(Path(path).expanduser())
    if corpus == "text8":
        return _text8(path, root, download, url, sha256)
    return _wikitext103(root, download)


# --- windows -----------------------------------------------------------------------------


def window_starts(n_chars: int, seq_len: int, n_train: int, n_test: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Start positions of the train and test windows that ``make_windows`` cuts.

    The text is cut into contiguous blocks of ``k * seq_len`` characters (k = 8, fewer for
    corpora under 256 windows so that a split stays possible; a tail shorter than a block is
    unused). A seeded permutation gives each block wholly to test or to train (test gets
    about its share n_test / (n_train + n_test) of blocks, and at least enough for its
    windows), and every window lies inside one block, so no character is in both sets.
    Test windows are distinct non-overlapping slots of the test blocks; train windows start
    at distinct offsets anywhere in the train blocks (they may overlap, like random crops).
    """
    for name, value in (("seq_len", seq_len), ("n_train", n_train), ("n_test", n_test)):
        positive_int(value, name)
    if n_chars < seq_len:
        raise CorpusError(
            f"the corpus has {n_chars} characters, fewer than seq_len={seq_len}: use a longer "
            f"corpus or a smaller seq_len"
        )
    k = max(1, min(_BLOCK_WINDOWS, n_chars // (seq_len * 32)))
    block = k * seq_len
    n_blocks = n_chars // block
    per_block = block - seq_len + 1  # train start positions in one block
    need_test, need_train = math.ceil(n_test / k), math.ceil(n_train / per_block)
    if need_test + need_train > n_blocks:
        fit = max(0, n_blocks - need_train) * k
        raise CorpusError(
            f"not enough text for n_test={n_test} test windows of seq_len={seq_len} beside "
            f"n_train={n_train}: the corpus ({n_chars} characters, {n_blocks} blocks of "
            f"{block}) fits at most {fit} test windows; use a longer corpus or a smaller "
            f"n_test, n_train or seq_len"
        )
    share = round(n_blocks * n_test / (n_train + n_test))
    n_test_blocks = min(max(share, need_test), n_blocks - need_train)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_blocks)
    test_blocks, train_blocks = np.sort(perm[:n_test_blocks]), np.sort(perm[n_test_blocks:])
    slot = rng.choice(n_test_blocks * k, size=n_test, replace=False)
    test = test_blocks[slot // k] * block + (slot % k) * seq_len
    flat = rng.choice(len(train_blocks) * per_block, size=n_train, replace=False)
    train = train_blocks[flat // per_block] * block + flat % per_block
    return train.astype(np.int64), test.astype(np.int64)


def make_windows(text: str, seq_len: int, n_train: int, n_test: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) torch.long tensors of shape (n, seq_len) with ids 0..26 of ``text``.

    ``text`` must be normalised (``load_corpus`` output). Deterministic for the same
    inputs; train and test never share a character of the source (see ``window_starts``).
    """
    try:
        raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as exc:
        raise CorpusError(
            f"character {text[exc.start]!r} at position {exc.start} is not in the Text-8 "
            f"alphabet; normalise the text first (load_corpus does)"
        ) from None
    train, test = window_starts(len(raw), seq_len, n_train, n_test, seed)
    out = []
    for starts in (train, test):
        chars = raw[starts[:, None] + np.arange(seq_len)]
        ids = _LUT[chars]
        if (ids == 255).any():
            bad = chr(chars[ids == 255][0])
            raise CorpusError(
                f"character {bad!r} is not in the Text-8 alphabet; normalise the text first "
                f"(load_corpus does)"
            )
        out.append(torch.from_numpy(ids.astype(np.int64)))
    return out[0], out[1]
