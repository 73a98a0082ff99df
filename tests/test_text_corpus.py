"""Text corpora and windows: normaliser, loaders (offline, loopback download), splits, errors."""

from __future__ import annotations

import hashlib
import http.server
import io
import sys
import threading
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import ConfigError
from harness.text import corpus as corpus_mod
from harness.text.alphabet import decode, encode, normalise
from harness.text.corpus import (
    CORPORA,
    TEXT8_URL,
    CorpusError,
    load_corpus,
    make_windows,
    window_starts,
)

PROSE = "The Quick brown fox, aged 42, jumped over the lazy dog.\n" * 40


@pytest.fixture(scope="module")
def pydoc_text() -> str:
    return load_corpus("pydoc")


def _cache() -> Path:
    import os

    return Path(os.environ["WSFM_BENCH_CACHE"]) / "datasets" / "text8"


def _zip_bytes(member: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, text)
    return buf.getvalue()


# --- normaliser ----------------------------------------------------------------------------


def test_normalise_text8_style() -> None:
    assert normalise("Hello WORLD") == "hello world"
    assert normalise("route 66") == "route six six"
    assert normalise("a, b; c! (d) e-f") == "a b c d e f"
    assert normalise("Café naïve Ångström") == "cafe naive angstrom"
    assert normalise("  lots \t\n of   space  ") == "lots of space"
    assert normalise("42") == "four two"


def test_chunked_normalisation_equals_one_shot(monkeypatch: pytest.MonkeyPatch,
                                               pydoc_text: str) -> None:
    from pydoc_data.topics import topics

    raw = "\n".join(topics[k] for k in sorted(topics))[:60_000] + " Déjà vu 12\t\u0301x"
    monkeypatch.setattr(corpus_mod, "_CHUNK_CHARS", 997)  # many cuts, at odd places
    pieces = [raw[i : i + 300] for i in range(0, len(raw), 300)]
    assert corpus_mod._normalise_stream(pieces) == normalise(raw)
    already = "  abc def  " * 500  # the in-alphabet fast path agrees too
    assert corpus_mod._normalise_stream([already]) == normalise(already)


# --- corpora -------------------------------------------------------------------------------


def test_pydoc_corpus_is_long_and_normalised(pydoc_text: str) -> None:
    assert len(pydoc_text) > 300_000  # about 387K once normalised
    assert set(pydoc_text) <= set(" abcdefghijklmnopqrstuvwxyz")
    assert "  " not in pydoc_text and pydoc_text == pydoc_text.strip()
    assert " the " in pydoc_text


def test_unknown_corpus_and_misplaced_options() -> None:
    with pytest.raises(CorpusError, match="choose one of pydoc, text8, wikitext103, file"):
        load_corpus("shakespeare")
    with pytest.raises(CorpusError, match="'pydoc' takes no path option"):
        load_corpus("pydoc", path="x.txt")
    with pytest.raises(CorpusError, match="needs path"):
        load_corpus("file")
    assert issubclass(CorpusError, ConfigError) and issubclass(CorpusError, ValueError)
    assert CORPORA == ("pydoc", "text8", "wikitext103", "file")


def test_file_corpus_reads_and_normalises(tmp_path: Path) -> None:
    f = tmp_path / "prose.txt"
    f.write_text(PROSE, encoding="utf-8")
    assert load_corpus("file", path=str(f)) == normalise(PROSE)


def test_file_corpus_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus("file", path=str(tmp_path / "missing.txt"))
    with pytest.raises(CorpusError, match="is not a file"):
        load_corpus("file", path=str(tmp_path))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match="is empty"):
        load_corpus("file", path=str(empty))
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("!!! ... ??? ---\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no letters"):
        load_corpus("file", path=str(symbols))
    # A Latin-1 byte at offset 10; also across a block boundary, where a multi-byte
    # character is split between two reads.
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"hello caf\xc3\xa9\xe9 more text")
    with pytest.raises(CorpusError, match=r"latin1\.txt is not valid UTF-8: byte 0xe9 at "
                                          r"byte offset 11.*re-encode"):
        load_corpus("file", path=str(bad))
    monkeypatch.setattr(corpus_mod, "_BLOCK_BYTES", 4)
    ok = tmp_path / "ok.txt"
    ok.write_bytes("héllo wörld ".encode() * 5)
    assert load_corpus("file", path=str(ok)) == " ".join(["hello world"] * 5)
    with pytest.raises(CorpusError, match="byte offset 11"):
        load_corpus("file", path=str(bad))


# --- text8 ---------------------------------------------------------------------------------


def test_text8_from_local_file_zip_and_cache_folder(tmp_path: Path) -> None:
    text = " anarchism originated as a term of abuse  first used " * 30
    plain = tmp_path / "text8"
    plain.write_text(text, encoding="ascii")
    expected = normalise(text)
    assert load_corpus("text8", path=str(plain)) == expected
    zipped = tmp_path / "text8.zip"
    zipped.write_bytes(_zip_bytes("text8", text))
    assert load_corpus("text8", path=str(zipped)) == expected
    # In the cache folder (no path), the zip is found there too.
    _cache().mkdir(parents=True)
    (_cache() / "text8.zip").write_bytes(zipped.read_bytes())
    assert load_corpus("text8") == expected
    # And under an explicit root.
    assert load_corpus("text8", root=str(tmp_path)) == expected


def test_text8_missing_without_download_says_where_to_put_it() -> None:
    with pytest.raises(CorpusError) as info:
        load_corpus("text8")
    msg = str(info.value)
    assert str(_cache()) in msg and "download = true" in msg and TEXT8_URL in msg
    assert not _cache().exists() or not any(_cache().iterdir())
    with pytest.raises(CorpusError, match="needs its sha256"):
        load_corpus("text8", download=True, url="http://127.0.0.1:9/text8.zip")


class _Server:
    """A loopback HTTP server serving one body at /text8.zip and counting requests."""

    def __init__(self, body: bytes) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/text8.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Server, str, bytes]]:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    text = " the fake text eight corpus " * 50
    body = _zip_bytes("text8", text)
    srv = _Server(body)
    srv.thread.start()
    try:
        yield srv, text, body
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def test_text8_download_checksum_mismatch_leaves_nothing(server) -> None:
    srv, _, body = server
    wrong = "0" * 64
    actual = hashlib.sha256(body).hexdigest()
    with pytest.raises(CorpusError) as info:
        load_corpus("text8", download=True, url=srv.url, sha256=wrong)
    assert wrong in str(info.value) and actual in str(info.value)
    assert srv.requests == 1
    assert list(_cache().iterdir()) == []  # no zip, no temporary file


def test_text8_download_verified_then_cached(server) -> None:
    srv, text, body = server
    digest = hashlib.sha256(body).hexdigest()
    assert load_corpus("text8", download=True, url=srv.url, sha256=digest) == normalise(text)
    assert (_cache() / "text8.zip").read_bytes() == body
    assert [p.name for p in _cache().iterdir()] == ["text8.zip"]
    assert load_corpus("text8", download=True, url=srv.url, sha256=digest) == normalise(text)
    assert load_corpus("text8") == normalise(text)
    assert srv.requests == 1  # later calls read the cached copy


def test_text8_download_failure_is_clear() -> None:
    with pytest.raises(CorpusError, match="could not download"):
        load_corpus("text8", download=True, url="http://127.0.0.1:9/text8.zip",
                    sha256="0" * 64)
    assert list(_cache().iterdir()) == []


# --- wikitext103 ---------------------------------------------------------------------------


def test_wikitext103_from_local_files(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "wiki.train.raw").write_text(" = Valkyria = \n\n The game began in 2010 .\n")
    (raw / "wiki.valid.raw").write_text(" validation text \n")
    expected = "valkyria the game began in two zero one zero"
    assert load_corpus("wikitext103", root=str(raw)) == expected
    tok = tmp_path / "tok" / "wikitext-103"
    tok.mkdir(parents=True)
    (tok / "wiki.train.tokens").write_text(" = Song = \n The <unk> sang @-@ well .\n")
    assert load_corpus("wikitext103", root=str(tmp_path / "tok")) == "song the sang well"


def test_wikitext103_missing_and_download_paths(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CorpusError, match="WikiText-103 not found.*download = true"):
        load_corpus("wikitext103", root=str(tmp_path))
    calls = []

    class Rows:
        data = [" = Title = \n", "", " Body text 7 .\n"]

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, s: slice) -> dict[str, list[str]]:
            return {"text": self.data[s]}

    def fake_load(name: str, config: str, split: str) -> Rows:
        calls.append((name, config, split))
        return Rows()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load))
    assert load_corpus("wikitext103", root=str(tmp_path), download=True) == "title body text seven"
    assert calls == [("Salesforce/wikitext", "wikitext-103-raw-v1", "train")]

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach the Hugging Face Hub (offline mode)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(CorpusError, match="could not load .*ConnectionError.*wiki.train.raw"):
        load_corpus("wikitext103", root=str(tmp_path), download=True)


# --- windows -------------------------------------------------------------------------------


def test_windows_shapes_range_and_determinism(pydoc_text: str) -> None:
    train, test = make_windows(pydoc_text, seq_len=64, n_train=2000, n_test=300, seed=3)
    assert train.shape == (2000, 64) and test.shape == (300, 64)
    assert train.dtype == torch.long and test.dtype == torch.long
    assert int(train.min()) >= 0 and int(train.max()) <= 26
    again = make_windows(pydoc_text, seq_len=64, n_train=2000, n_test=300, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    other = make_windows(pydoc_text, seq_len=64, n_train=2000, n_test=300, seed=4)
    assert not torch.equal(train, other[0])
    # Each row is the text at its start position, encoded as alphabet.encode does.
    tr, te = window_starts(len(pydoc_text), 64, 2000, 300, 3)
    for row, s in ((train[0], tr[0]), (test[-1], te[-1])):
        assert row.tolist() == encode(pydoc_text[s : s + 64])
        assert decode(row) == pydoc_text[s : s + 64]


def test_windows_train_and_test_disjoint_in_source(pydoc_text: str) -> None:
    n, seq = len(pydoc_text), 64
    train, test = window_starts(n, seq, 5000, 700, seed=0)
    used_train, used_test = np.zeros(n, bool), np.zeros(n, bool)
    for s in train:
        used_train[s : s + seq] = True
    cover = np.zeros(n, int)
    for s in test:
        used_test[s : s + seq] = True
        cover[s : s + seq] += 1
    assert not (used_train & used_test).any()
    assert cover.max() == 1  # test windows do not overlap each other
    assert len(set(train.tolist())) == 5000 and len(set(test.tolist())) == 700
    assert (train + seq <= n).all() and (test + seq <= n).all()
    # Small corpora still split (smaller blocks) without leakage.
    tr, te = window_starts(1000, 10, 20, 5, seed=1)
    assert not set(range(0, 1000)).intersection(
        {i for s in tr for i in range(s, s + 10)} & {i for s in te for i in range(s, s + 10)})


def test_windows_errors(pydoc_text: str) -> None:
    with pytest.raises(CorpusError, match="the corpus has 11 characters, fewer than "
                                          "seq_len=64: use a longer corpus or a smaller seq_len"):
        make_windows("hello world", seq_len=64, n_train=1, n_test=1, seed=0)
    with pytest.raises(CorpusError, match=r"not enough text for n_test=100.*fits at most \d+ test"):
        make_windows("abc " * 200, seq_len=16, n_train=10, n_test=100, seed=0)
    with pytest.raises(CorpusError, match="not in the Text-8 alphabet"):
        make_windows("Not Normalised " * 100, seq_len=8, n_train=4, n_test=4, seed=0)
    with pytest.raises(CorpusError, match="not in the Text-8 alphabet"):
        make_windows("café " * 100, seq_len=8, n_train=4, n_test=4, seed=0)
    with pytest.raises(ConfigError, match="seq_len must be a positive integer, got 0"):
        make_windows(pydoc_text, seq_len=0, n_train=4, n_test=4, seed=0)


def test_windows_fast_on_large_text() -> None:
    import time

    text = ("the quick brown fox jumps over the lazy dog " * 230_000)[:10_000_000]
    t0 = time.perf_counter()
    train, test = make_windows(text, seq_len=64, n_train=20_000, n_test=2_000, seed=0)
    assert time.perf_counter() - t0 < 5.0
    assert train.shape == (20_000, 64) and test.shape == (2_000, 64)
