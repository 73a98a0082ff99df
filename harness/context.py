"""What a method sees while it prepares a cell: the task's data, fitted drafts, refiner
pairs and trained networks, each built once, cached on disk and memoised by the worker that
runs the cell (``Memo``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

import torch
from torch import nn

from harness import __version__
from harness.cache import Cache, tensor_sha256
from harness.hashing import stable_hash
from harness.nn.training import TrainConfig
from harness.plugins import Draft, Metric, Task, TaskData, instantiate
from harness.registry import drafts, refiners, tasks


class Memo:
    """What a worker keeps loaded between the cells it runs (its own, not the module's):
    artefacts by (kind, key hash, device, cache folder), so cells of one run that share a model
    (every budget of a method, say) load it once, and the sha256 of each task's training split;
    ``enter`` frees them when the worker moves on to another (task, seed). ``measured`` keeps
    what was measured on this machine for the worker's lifetime (wall-clock budget probes,
    harness.run.budgets)."""

    def __init__(self) -> None:
        self.artefacts: dict[tuple[str, str, str, str], Any] = {}
        self.data_hashes: dict[str, str] = {}
        self.measured: dict[str, Any] = {}
        self.group: tuple[str, int] | None = None

    def enter(self, task: str, seed: int) -> None:
        """Free the previous (task, seed)'s artefacts when the worker moves on to another."""
        if self.group != (task, seed):
            self.artefacts.clear()
            self.data_hashes.clear()
            self.group = (task, seed)

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        """The artefact under ``key``, built once."""
        if key not in self.artefacts:
            self.artefacts[key] = build()
        return self.artefacts[key]


def seeded_generator(seed: int, purpose: str, device: torch.device | str = "cpu"):
    """A generator whose stream depends only on (seed, purpose): reproducible, independent."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).hexdigest()
    return torch.Generator(device=device).manual_seed(int(digest[:15], 16))


def plugin_key(name: str, obj: Any, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """What identifies a plugin instance in a cache key: name, options (less ``leave_out``)
    and ``version``."""
    options = asdict(obj) if is_dataclass(obj) else {}
    options = {k: v for k, v in options.items() if k not in leave_out}
    return {"name": name, "options": options, "version": getattr(obj, "version", "1")}


class CellContext:
    """Shared, cached building blocks for one (task, seed, device)."""

    def __init__(
        self,
        task_name: str,
        task_options: dict[str, Any],
        seed: int,
        device: str,
        cache: Cache,
        train_config: TrainConfig | None = None,
        progress: bool = True,
        memo: Memo | None = None,
    ) -> None:
        self.task_name = task_name
        self.task: Task = instantiate(tasks, task_name, task_options)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.cache = cache
        self.train_config = train_config or self.task.train_config
        self.progress = progress
        # What the worker running this cell keeps loaded (a fresh one: nothing shared).
        self.memo = memo if memo is not None else Memo()
        # The task without its data: what the data (and its hash) are memoised under, and
        # what every key starts from. Not its judging options (no artefact depends on them)
        # nor its draft options (each keys only the draft or pairs that read it, through
        # their own keys: ``Task.draft_options``).
        leave_out = tuple(self.task.judging_options) + tuple(self.task.draft_options)
        self._task_spec = {"harness": __version__, "task": plugin_key(
            task_name, self.task, leave_out=leave_out)}
        # "kind/hash" -> seconds it took to build, of every draft, pair set and network this
        # context used (and what each needed to be built, a fine-tune's full model say);
        # None where the cache entry predates the record (harness.cache, "build_s").
        self.costs: dict[str, float | None] = {}
        # "kind/hash" -> what training reported for each network used (full FM's convergence).
        self.training: dict[str, dict[str, Any]] = {}

    @property
    def data_sha256(self) -> str:
        """sha256 of the task's training split (computed once per task and process)."""
        spec = stable_hash(self._task_spec)
        if spec not in self.memo.data_hashes:
            self.memo.data_hashes[spec] = tensor_sha256(self.data.train)
        return self.memo.data_hashes[spec]

    @property
    def task_key(self) -> dict[str, Any]:
        """The part of every key naming the task: harness version, task, options (less its
        judging and draft options), data hash."""
        return {**self._task_spec, "data_sha256": self.data_sha256}

    def _cached(self, kind: str, key: dict[str, Any], build: Callable[[], dict[str, Any]],
                info: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
        """``cache.load_or_build``, noting the entry's cost (and, on a build, the costs of what
        the build used and ``info()``, what training reported, so a warm cache has them too)."""
        before = set(self.costs)
        state = self.cache.load_or_build(kind, key, build, sidecar=lambda: {
            "needs": {k: v for k, v in self.costs.items() if k not in before},
            "training": info() if info else None})
        self._note_cost(kind, key)
        return state

    def _note_cost(self, kind: str, key: dict[str, Any]) -> None:
        meta = self.cache.meta(kind, key)
        seconds = meta.get("build_s")
        name = f"{kind}/{self.cache.path(kind, key).stem}"
        self.costs[name] = float(seconds) if isinstance(seconds, int | float) else None
        if isinstance(meta.get("training"), dict):
            self.training[name] = meta["training"]
        needs = meta.get("needs")
        if isinstance(needs, dict):
            self.costs.update(needs)

    def _memo(self, kind: str, key: dict[str, Any], build: Callable[[], Any]) -> Any:
        # The cache folder is part of it: an artefact memoised from another cache folder (a
        # test's, say) has no sidecar in this one to tell its cost.
        return self.memo.get((kind, stable_hash(key), str(self.device), str(self.cache.root)),
                             build)

    def generator(self, purpose: str) -> torch.Generator:
        return seeded_generator(self.seed, purpose, self.device)

    @property
    def data(self) -> TaskData:
        def load() -> TaskData:
            d = self.task.load()
            labels = None if d.train_labels is None else d.train_labels.to(self.device)
            return TaskData(d.train.to(self.device), d.test.to(self.device), labels)

        return self._memo("data", self._task_spec, load)

    def draft_spec(self, name: str) -> tuple[str, dict[str, Any]]:
        """'good'/'poor' (or any key of the task's drafts, or a control: 'positive',
        'negative'), else a draft plugin by name."""
        return self.task.all_drafts.get(name, (name, {}))

    def draft_key(self, name: str) -> dict[str, Any]:
        """The cache key of draft ``name`` (fitted on the CPU: no device in it)."""
        plugin, options = self.draft_spec(name)
        draft = instantiate(drafts, plugin, options)
        return {**self.task_key, "draft": plugin_key(plugin, draft), "seed": self.seed}

    def draft(self, name: str) -> Draft:
        plugin, options = self.draft_spec(name)
        draft = instantiate(drafts, plugin, options)
        key = self.draft_key(name)

        def build() -> Draft:
            def fit() -> dict[str, Any]:
                draft.fit(self.data.train.cpu(), seeded_generator(self.seed, f"draft-fit:{plugin}"))
                return draft.state_dict()

            draft.load_state_dict(self._cached("drafts", key, fit))
            return draft.to(self.device)

        drafted = self._memo("draft", key, build)
        self._note_cost("drafts", key)
        return drafted

    def pairs_key(self, draft_name: str) -> dict[str, Any]:
        """The cache key of the (draft, refined) pairs for ``draft_name``."""
        ref_name, ref_options = self.task.refiner
        return {
            **self.draft_key(draft_name),
            "refiner": plugin_key(ref_name, instantiate(refiners, ref_name, ref_options)),
            "n_pairs": self.task.n_pairs,
            "device": self.device.type,  # drafts are sampled on the device
        }

    def _pairs(self, draft_name: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        ref_name, ref_options = self.task.refiner
        refiner = instantiate(refiners, ref_name, ref_options)
        key = self.pairs_key(draft_name)

        def build_pairs() -> dict[str, Any]:
            draft, g = self.draft(draft_name), self.generator("pairs")
            made = draft.pairs(self.task.n_pairs, g)  # a control draft pairs its own samples
            if made is not None:
                return {"draft": made[0].cpu(), "refined": made[1].cpu(), "refiner_stats": {}}
            # Built whole before the cache writes anything: a refiner that fails part-way
            # (an LLM endpoint going down, say) leaves no half-written pairs behind.
            x_d = draft.sample(self.task.n_pairs, g)
            refiner.fit(self.data.train)
            x_r = refiner.refine(x_d).cpu()
            return {"draft": x_d.cpu(), "refined": x_r, "refiner_stats": refiner.stats()}

        def load() -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
            state = self._cached("pairs", key, build_pairs)
            return (state["draft"].to(self.device), state["refined"].to(self.device),
                    dict(state.get("refiner_stats") or {}))

        pairs = self._memo("pairs", key, load)
        self._note_cost("pairs", key)
        return pairs

    def pairs(self, draft_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_d, x_r): draft samples and their refinements, the warm-start training pairs."""
        return self._pairs(draft_name)[:2]

    def draft_control(self, name: str) -> str | None:
        """"positive" or "negative" when draft ``name`` is a control (harness.controls)."""
        return drafts.get(self.draft_spec(name)[0]).control

    def refiner_stats(self, draft_name: str) -> dict[str, Any]:
        """The refiner's counts from building the pairs for ``draft_name`` (retries, ...)."""
        return self._pairs(draft_name)[2]

    def network_key(self, kind: str, key: dict[str, Any]) -> dict[str, Any]:
        """The cache key of network ``kind`` with the method's ``key`` (training is on-device).

        The task's draft options are not in it (``task_key``): a network trained on pairs has
        their key in ``key`` (a warm start's), and one that no draft feeds does not depend on
        them."""
        return {
            **self.task_key,
            "model": kind,
            "train_config": self.train_config.key(),
            "seed": self.seed,
            "device": self.device.type,
            **key,
        }

    def network(
        self,
        kind: str,
        key: dict[str, Any],
        train: Callable[[nn.Module], dict[str, Any] | None],
        make: Callable[[], nn.Module] | None = None,
    ) -> nn.Module:
        """A trained network, built by ``train`` on a cache miss (what ``train`` returns, if
        anything, is kept in the cache entry's sidecar: full FM's convergence record).

        The architecture is the task's (``task.make_network``) unless ``make`` builds another
        (an autoregressive transformer, say); ``kind`` and ``key`` must then name it.
        """
        full_key = self.network_key(kind, key)
        make = make or self.task.make_network

        reported: dict[str, Any] = {}

        def build() -> dict[str, Any]:
            with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
                torch.manual_seed(self.seed)
                net = make().to(self.device)
            reported.update(train(net) or {})
            return {k: v.cpu() for k, v in net.state_dict().items()}

        def load() -> nn.Module:
            net = make()
            net.load_state_dict(self._cached("models", full_key, build,
                                             info=lambda: dict(reported)))
            return net.to(self.device).eval()

        trained = self._memo("network", full_key, load)
        self._note_cost("models", full_key)
        return trained

    def training_cost(self) -> tuple[float | None, dict[str, float | None]]:
        """(seconds, {"kind/hash": seconds}) of training everything the cell's method used:
        its networks, drafts and refiner pairs; seconds is None if any part is unrecorded."""
        parts = dict(sorted(self.costs.items()))
        known = [v for v in parts.values() if v is not None]
        return (sum(known) if len(known) == len(parts) else None), parts

    def metric_stats(
        self, name: str, metric: Metric, reference: torch.Tensor, seed: int
    ) -> dict[str, torch.Tensor]:
        """The metric's reference-side features/statistics, computed once and cached."""
        if type(metric).reference_stats is Metric.reference_stats:
            return {}  # the metric precomputes nothing
        key = {
            **self.task_key,
            "metric": plugin_key(name, metric),
            "reference_sha256": tensor_sha256(reference),
            "seed": seed,
            "device": self.device.type,
        }

        def build() -> dict[str, Any]:
            return {k: v.cpu() for k, v in metric.reference_stats(reference, seed).items()}

        def load() -> dict[str, torch.Tensor]:
            state = self.cache.load_or_build("features", key, build)
            return {k: v.to(self.device) for k, v in state.items()}

        return self._memo("features", key, load)
