"""The cache: complete keys, sha256-verified entries, one build under concurrency, list/clear."""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.cache import Cache, add_arguments, run
from harness.errors import ConfigError
from harness.hashing import stable_hash

# harness.context is imported lazily: the spawned workers below import this module, and
# need only harness.cache (the plugin registry and scikit-learn would slow their start).
TASK = {"n_train": 200, "n_test": 100}


# What one worker keeps loaded (harness.context.Memo): the contexts of a test share it, as a
# worker's cells do; each test starts with a fresh one (``_new_worker``: as a new process).
_WORKER: list[Any] = []


def _new_worker() -> None:
    from harness.context import Memo

    _WORKER[:] = [Memo()]


@pytest.fixture(autouse=True)
def _fresh_memo():
    _new_worker()
    yield


def _ctx(tmp_path: Path, options: dict[str, Any] | None = None, seed: int = 0,
         device: str = "cpu") -> Any:
    from harness.context import CellContext

    return CellContext("two-moons", {**TASK, **(options or {})}, seed, device,
                       Cache(tmp_path / "cache"), progress=False, memo=_WORKER[0])


def _keys(ctx: Any) -> dict[str, str]:
    """The hash of every kind of key the context would use."""
    return {
        "draft": stable_hash(ctx.draft_key("good")),
        "pairs": stable_hash(ctx.pairs_key("good")),
        "network": stable_hash(ctx.network_key("flow", {"t_start": 0.0, "source": "noise"})),
    }


def _changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {k for k in a if a[k] != b[k]}


def test_keys_are_stable_and_json_able(tmp_path) -> None:

    ctx = _ctx(tmp_path)
    first = _keys(ctx)
    json.dumps(ctx.network_key("flow", {}))  # plain JSON, no default needed
    assert _keys(_ctx(tmp_path)) == first
    _new_worker()  # recomputing the data hash gives the same keys
    assert _keys(_ctx(tmp_path)) == first
    assert len(ctx.task_key["data_sha256"]) == 64


def test_keys_change_with_every_input(tmp_path, monkeypatch) -> None:
    from harness.points.drafts import GaussianMixtureDraft

    ctx = _ctx(tmp_path)
    base = _keys(ctx)
    everything = {"draft", "pairs", "network"}
    assert _changed(base, _keys(_ctx(tmp_path, {"hidden": 64}))) == everything  # task option
    assert _changed(base, _keys(_ctx(tmp_path, seed=1))) == everything
    assert ctx.draft_key("good") != ctx.draft_key("poor")  # draft option (n_components)

    other = _ctx(tmp_path)
    other.task.refiner = ("nearest-neighbour", {"batch_size": 7})  # refiner option
    assert _changed(base, _keys(other)) == {"pairs"}
    other = _ctx(tmp_path)
    other.train_config = replace(other.train_config, steps=7)
    assert _changed(base, _keys(other)) == {"network"}

    monkeypatch.setattr(GaussianMixtureDraft, "version", "2")  # plugin version
    assert _changed(base, _keys(_ctx(tmp_path))) == {"draft", "pairs"}
    monkeypatch.undo()
    monkeypatch.setattr(type(ctx.task), "version", "2", raising=False)
    assert _changed(base, _keys(_ctx(tmp_path))) == everything
    monkeypatch.undo()
    assert _keys(_ctx(tmp_path)) == base


# Each built-in task's draft options, a changed value for each, and the drafts it must re-key
# (their pairs too; "pairs" alone: every draft's pairs, not the drafts themselves).
DRAFT_OPTION_CHANGES: dict[str, tuple[dict[str, Any], dict[str, tuple[Any, set[str]]]]] = {
    "two-moons": (TASK, {
        "good_components": (3, {"good"}), "poor_components": (3, {"poor"}),
        "control_noise": (0.3, {"positive"}), "refiner_name": ("nearest-neighbour", {"pairs"}),
        "refiner_options": ({"block": 50}, {"pairs"})}),
    "digits": ({"n_test": 60}, {
        "gan_steps": (7, {"good"}), "gan_width": (8, {"good"}),
        "pca_components": (3, {"poor"}), "control_blur": (0.3, {"positive"}),
        "refiner_name": ("nearest-neighbour", {"pairs"}),
        "refiner_options": ({"block": 50}, {"pairs"}), "n_pairs": (64, {"pairs"})}),
    "text": ({"n_train": 64, "n_test": 32}, {
        "good_draft": ({"hidden": 8, "steps": 5}, {"good"}),
        "poor_draft": ({"hidden": 8, "steps": 5}, {"poor"}),
        "control_substitute": (0.5, {"positive"}),
        "refiner_name": ("text-nearest-neighbour", {"pairs"}),
        "refiner_options": ({"min_count": 2}, {"pairs"}), "n_pairs": (64, {"pairs"})}),
}
DRAFTS = ("good", "poor", "positive", "negative")


@pytest.mark.parametrize("task", sorted(DRAFT_OPTION_CHANGES))
def test_a_draft_option_keys_its_own_draft_and_pairs_and_nothing_else(tmp_path, task) -> None:
    from harness.context import CellContext
    from harness.registry import tasks

    base_options, changes = DRAFT_OPTION_CHANGES[task]
    assert set(changes) == set(tasks.get(task).draft_options)  # a new option needs a row here
    cache = Cache(tmp_path / "cache")

    def keys(**options: Any) -> dict[str, str]:
        ctx = CellContext(task, {**base_options, **options}, 0, "cpu", cache, progress=False,
                          memo=_WORKER[0])
        full_fm = ctx.network_key("flow", {"t_start": 0.0, "source": "noise"})
        return {"full-fm": stable_hash(full_fm), "task": stable_hash(ctx.task_key),
                **{f"draft {d}": stable_hash(ctx.draft_key(d)) for d in DRAFTS},
                **{f"pairs {d}": stable_hash(ctx.pairs_key(d)) for d in DRAFTS}}

    base = keys()
    for option, (value, moved) in changes.items():
        every = moved == {"pairs"}
        expected = ({f"pairs {d}" for d in DRAFTS} if every
                    else {f"{kind} {d}" for d in moved for kind in ("draft", "pairs")})
        assert _changed(base, keys(**{option: value})) == expected, option
    # A warm start's network names its pairs in its own key: a new good draft retrains the
    # good draft's warm start, and only it.
    good_option, (good_value, good_moved) = next(iter(changes.items()))
    assert good_moved == {"good"}  # each table starts with a good-draft option
    ctx, other = (CellContext(task, {**base_options, **o}, 0, "cpu", cache, progress=False,
                              memo=_WORKER[0])
                  for o in ({}, {good_option: good_value}))

    def warm_start(c: Any, draft: str) -> str:
        return stable_hash(c.network_key("flow", {"pairs": stable_hash(c.pairs_key(draft))}))

    assert warm_start(ctx, "good") != warm_start(other, "good")
    assert warm_start(ctx, "poor") == warm_start(other, "poor")


def test_judging_options_key_nothing_and_every_listed_option_is_a_task_field(tmp_path) -> None:
    from dataclasses import fields

    from harness.context import CellContext
    from harness.registry import tasks

    for name in tasks.names():
        task_class = tasks.get(name)
        names = {f.name for f in fields(task_class)}
        listed = set(task_class.draft_options) | set(task_class.judging_options)
        assert listed <= names, (name, listed - names)  # a misspelt option would key on
    cache = Cache(tmp_path / "cache")

    def keys(**options: Any) -> dict[str, str]:
        ctx = CellContext("text", {"n_train": 64, "n_test": 32, **options}, 0, "cpu", cache,
                          progress=False, memo=_WORKER[0])
        return {**_keys(ctx), "task": stable_hash(ctx.task_key)}

    base = keys()
    assert keys(judge_samples=7, judge_precision="float32", judge="none") == base
    # The task's own key leaves out its draft options too: the good draft's own key holds them.
    assert _changed(base, keys(good_draft={"hidden": 8, "steps": 5})) == {"draft", "pairs"}
    assert _changed(base, keys(d_model=32, n_head=4)) == {"draft", "pairs", "network", "task"}


def test_keys_change_with_data_content_and_device_type(tmp_path) -> None:
    from harness.plugins import TaskData

    base = _keys(_ctx(tmp_path))
    cuda = _ctx(tmp_path, device="cuda")  # the data hash is memoised: nothing goes to cuda
    assert _changed(base, _keys(cuda)) == {"pairs", "network"}  # drafts are fitted on CPU

    _new_worker()
    ctx = _ctx(tmp_path)
    data = ctx.task.load()
    train = data.train.clone()
    train[0, 0] += 1e-6  # same task options, one value of the data changed
    ctx.task.load = lambda: TaskData(train, data.test)  # type: ignore[method-assign]
    assert _changed(base, _keys(ctx)) == {"draft", "pairs", "network"}


def test_network_and_draft_are_stored_under_the_tested_keys(tmp_path) -> None:
    ctx = _ctx(tmp_path)
    ctx.network("flow", {"t_start": 0.0}, lambda net: None)
    ctx.draft("good")
    assert ctx.cache.path("models", ctx.network_key("flow", {"t_start": 0.0})).exists()
    assert ctx.cache.path("drafts", ctx.draft_key("good")).exists()
    assert ctx.cache.misses == 2


def test_sidecar_records_key_checksum_size_and_time(tmp_path) -> None:
    cache, key = Cache(tmp_path), {"seed": 0, "lr": 1e-3}
    cache.load_or_build("models", key, lambda: {"w": torch.arange(4.0)})
    path = cache.path("models", key)
    meta = json.loads(path.with_suffix(".json").read_text())
    data = path.read_bytes()
    assert meta["key"] == key and meta["kind"] == "models" and meta["bytes"] == len(data)
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert abs(datetime.fromisoformat(meta["created"]) - datetime.now(UTC)) < timedelta(60)


def _tamper(path: Path, how: str) -> None:
    sidecar = path.with_suffix(".json")
    if how == "tampered":  # a valid torch file, other content: only the sha256 can tell
        torch.save({"w": torch.full((2,), 666.0)}, path)
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "no-sidecar":
        sidecar.unlink()
    elif how == "corrupt-sidecar":
        sidecar.write_text('{"key": ')
    elif how == "legacy-sidecar":  # the old format: the key alone
        sidecar.write_text(json.dumps({"seed": 0}))
    elif how == "other-key":
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "key": {"seed": 1}}))


@pytest.mark.parametrize("how", ["tampered", "truncated", "no-sidecar", "corrupt-sidecar",
                                 "legacy-sidecar", "other-key"])
def test_damaged_entry_is_discarded_and_rebuilt(tmp_path, how) -> None:
    cache, key = Cache(tmp_path), {"seed": 0}
    cache.load_or_build("models", key, lambda: {"w": torch.ones(2)})
    _tamper(cache.path("models", key), how)
    state = cache.load_or_build("models", key, lambda: {"w": torch.zeros(2)})
    assert torch.equal(state["w"], torch.zeros(2))
    assert (cache.hits, cache.misses, cache.discarded) == (0, 2, 1)
    again = Cache(tmp_path).load_or_build("models", key, lambda: {"w": torch.ones(2)})
    assert torch.equal(again["w"], torch.zeros(2))  # the rebuilt entry verifies


def _build_logged(log: str, value: int) -> dict[str, Any]:
    with open(log, "a") as fh:
        fh.write(f"built by {os.getpid()}\n")
    time.sleep(0.3)
    return {"w": torch.randn(64) + value}


def _worker(root: str, log: str, keys: list[int], barrier: Any, out: Any) -> None:
    """Load or build every key (after all workers are ready); report a digest of each."""
    barrier.wait()
    cache = Cache(root)
    for k in keys:
        state = cache.load_or_build("models", {"k": k, "blob": "x" * 100},
                                    lambda k=k: _build_logged(log, k))
        out.put((k, hashlib.sha256(state["w"].numpy().tobytes()).hexdigest()))


def _run_workers(tmp_path: Path, keys_per_worker: list[list[int]]) -> tuple[list, list[str]]:
    ctx = mp.get_context("spawn")
    barrier, out, log = ctx.Barrier(len(keys_per_worker)), ctx.Queue(), tmp_path / "log"
    log.touch()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "c"), str(log), keys, barrier,
                                               out)) for keys in keys_per_worker]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(sum(map(len, keys_per_worker)))]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results, log.read_text().splitlines()


def test_concurrent_processes_build_a_key_once(tmp_path) -> None:
    results, log = _run_workers(tmp_path, [[0], [0], [0]])
    assert len(log) == 1  # one build, the other two waited and loaded it
    assert len({digest for _, digest in results}) == 1


def test_concurrent_writers_of_different_keys_do_not_interfere(tmp_path) -> None:
    results, log = _run_workers(tmp_path, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    assert len(log) == 9
    cache = Cache(tmp_path / "c")
    for k, digest in results:  # every entry verifies and holds what its writer built
        state = cache.load_or_build("models", {"k": k, "blob": "x" * 100}, pytest.fail)
        assert hashlib.sha256(state["w"].numpy().tobytes()).hexdigest() == digest
    assert (cache.hits, cache.discarded, len(cache.entries())) == (9, 0, 9)


def _filled(tmp_path: Path) -> Cache:
    """Entries: models {m: 0} 10 days old, models {m: 1} new, drafts {d: 0} 3 days old."""
    cache = Cache(tmp_path)
    for kind, key, days in (("models", {"m": 0}, 10), ("models", {"m": 1}, 0),
                            ("drafts", {"d": 0}, 3)):
        cache.load_or_build(kind, key, lambda: {"w": torch.zeros(100)})
        sidecar = cache.path(kind, key).with_suffix(".json")
        meta = json.loads(sidecar.read_text())
        meta["created"] = (datetime.now(UTC) - timedelta(days=days)).isoformat()
        sidecar.write_text(json.dumps(meta))
    return cache


def _left(cache: Cache) -> list[dict[str, Any] | None]:
    return [e.key for e in cache.entries()]


def test_entries_lists_kind_hash_size_age_and_key(tmp_path) -> None:
    cache = _filled(tmp_path)
    entries = cache.entries()
    assert [e.key for e in entries] == [{"m": 0}, {"d": 0}, {"m": 1}]  # oldest first
    e = entries[0]
    assert e.kind == "models" and e.path == cache.path("models", {"m": 0})
    assert e.hash == e.path.stem and e.bytes == e.path.stat().st_size
    assert 9.9 < e.age_days() < 10.1


def test_clear_by_age_prefix_kind_and_all(tmp_path) -> None:
    cache = _filled(tmp_path)
    with pytest.raises(ConfigError, match="--all"):
        cache.clear()
    assert [e.key for e in cache.clear(older_than_days=5)] == [{"m": 0}]
    assert _left(cache) == [{"d": 0}, {"m": 1}]
    assert not list((tmp_path / "models").glob(f"{stable_hash({'m': 0})[:32]}.*"))
    prefix = stable_hash({"m": 1})[:6]
    assert [e.key for e in cache.clear(key_prefix=prefix)] == [{"m": 1}]
    assert [e.key for e in cache.clear(kind="models")] == []
    assert [e.key for e in cache.clear(kind="drafts")] == [{"d": 0}]
    cache = _filled(tmp_path / "again")
    assert len(cache.clear(everything=True)) == 3 and _left(cache) == []
    assert not [p for p in (tmp_path / "again").rglob("*") if p.is_file()]


def test_age_falls_back_to_mtime_without_a_sidecar(tmp_path) -> None:
    cache = _filled(tmp_path)
    path = cache.path("models", {"m": 1})
    path.with_suffix(".json").unlink()
    old = time.time() - 20 * 86400
    os.utime(path, (old, old))
    assert [e.hash for e in cache.clear(older_than_days=15)] == [path.stem]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wsfm-bench cache")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_run_lists_a_table_and_clears(tmp_path, capsys) -> None:
    cache = _filled(tmp_path)
    assert run(_parse(["list", "--cache", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "kind" in out and stable_hash({"m": 0})[:12] in out and "10.0d" in out
    assert "3 entries" in out and "total" in out
    assert run(_parse(["--cache", str(tmp_path), "clear", "--kind", "drafts"])) == 0
    assert "removed 1 entries" in capsys.readouterr().out and len(cache.entries()) == 2
    with pytest.raises(ConfigError):
        run(_parse(["clear", "--cache", str(tmp_path)]))
    assert run(_parse(["clear", "--all"])) == 0  # default folder: $WSFM_BENCH_CACHE
    assert str(os.environ["WSFM_BENCH_CACHE"]) in capsys.readouterr().out


@pytest.mark.parametrize("age", ["nan", "NaN", "inf", "-inf", "infinity", "-1", "-0.5", "1e3",
                                 "30x", "30 days", "", "1" + "0" * 400])
def test_clear_refuses_an_age_that_is_not_a_number_of_days_or_hours(
        tmp_path, capsys, age: str) -> None:
    """NaN compares false with every age, so --older-than nan used to remove every entry."""
    from harness.cli import main

    cache = _filled(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert main(["cache", "clear", f"--older-than={age}", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"wsfm-bench: error: --older-than {age!r}: ")
    assert "days" in err[0] and "nothing was removed" in err[0]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == before
    assert len(cache.entries()) == 3


def test_clear_refuses_a_non_finite_age_from_python_too(tmp_path) -> None:
    cache = _filled(tmp_path)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ConfigError, match="finite age of at least 0"):
            cache.clear(older_than_days=bad)
    assert len(cache.entries()) == 3


@pytest.mark.parametrize("age, removed", [("5", 1), ("5d", 1), ("2.5", 2), ("48h", 2),
                                          ("100h", 1), ("300h", 0), ("0", 3), (".5", 2)])
def test_clear_takes_days_or_hours(tmp_path, age: str, removed: int) -> None:
    cache = _filled(tmp_path)  # entries 10 days, 3 days and 0 days old
    assert run(_parse(["clear", "--older-than", age, "--cache", str(tmp_path)])) == 0
    assert len(cache.entries()) == 3 - removed


def test_list_of_a_missing_folder_says_so(tmp_path, capsys) -> None:
    from harness.cli import main

    missing = tmp_path / "no-such-cache"
    assert main(["cache", "list", "--cache", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no empty table
    [line] = captured.err.strip().splitlines()
    assert line == (f"wsfm-bench: error: cache folder {missing} does not exist: give the "
                    "folder your runs cache into (--cache DIR or $WSFM_BENCH_CACHE)")
    (tmp_path / "a-file").write_text("x")
    assert main(["cache", "list", "--cache", str(tmp_path / "a-file")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not missing.exists()  # listing creates nothing


def test_a_warm_starts_training_stream_is_named_by_its_purpose_not_its_cache_key(
        tmp_path, monkeypatch) -> None:
    """A change that only re-keys a warm start (here the harness's version) retrains it from
    the same stream, to the same weights; another seed's stream differs."""
    import harness.context
    from harness.nn.config import TrainConfig
    from harness.plugins import instantiate
    from harness.registry import methods

    tiny = TrainConfig(steps=8, batch_size=32)

    def trained(seed: int = 0) -> tuple[str, dict[str, torch.Tensor]]:
        ctx = _ctx(tmp_path, seed=seed)
        ctx.train_config = tiny
        method = instantiate(methods, "ws-fm", {"draft": "poor", "t0": 0.5})
        net = method.prepare(ctx, n_steps=4).network
        models = ",".join(sorted(k for k in ctx.costs if k.startswith("models/")))
        return models, {k: v.clone() for k, v in net.state_dict().items()}

    key, weights = trained()
    monkeypatch.setattr(harness.context, "__version__", "re-keyed")
    _new_worker()
    other_key, other = trained()
    assert other_key != key  # a new cache entry: trained again, not loaded
    assert all(torch.equal(weights[k], other[k]) for k in weights)
    _, seed_1 = trained(seed=1)
    assert not all(torch.equal(weights[k], seed_1[k]) for k in weights)
