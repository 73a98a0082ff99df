"""What a method sees while it prepares a cell: the task's data, fitted drafts, refiner
pairs and trained networks, each built once, cached on disk and memoised in the process."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

import torch
from torch import nn

from harness import __version__
from harness.cache import Cache, stable_hash, tensor_sha256
from harness.nn.training import TrainConfig
from harness.plugins import Draft, Metric, Task, TaskData, instantiate
from harness.registry import drafts, refiners, tasks

# Artefacts already loaded in this process, by (kind, key hash, device): cells of one run
# that share a model (every budget of a method, say) load it once.
_MEMO: dict[tuple[str, str, str], Any] = {}
# sha256 of each task's training split, by the hash of the task's options: computed once.
_DATA_HASH: dict[str, str] = {}


def clear_memo() -> None:
    """Forget the artefacts (and data hashes) loaded in this process; the disk cache stays."""
    _MEMO.clear()
    _DATA_HASH.clear()


def seeded_generator(seed: int, purpose: str, device: torch.device | str = "cpu"):
    """A generator whose stream depends only on (seed, purpose): reproducible, independent."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).hexdigest()
    return torch.Generator(device=device).manual_seed(int(digest[:15], 16))


def plugin_key(name: str, obj: Any) -> dict[str, Any]:
    """What identifies a plugin instance in a cache key: name, options and ``version``."""
    options = asdict(obj) if is_dataclass(obj) else {}
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
    ) -> None:
        self.task_name = task_name
        self.task: Task = instantiate(tasks, task_name, task_options)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.cache = cache
        self.train_config = train_config or self.task.train_config
        self.progress = progress
        # The task without its data: what the data (and its hash) are memoised under.
        self._task_spec = {"harness": __version__, "task": plugin_key(task_name, self.task)}

    @property
    def data_sha256(self) -> str:
        """sha256 of the task's training split (computed once per task and process)."""
        spec = stable_hash(self._task_spec)
        if spec not in _DATA_HASH:
            _DATA_HASH[spec] = tensor_sha256(self.data.train)
        return _DATA_HASH[spec]

    @property
    def task_key(self) -> dict[str, Any]:
        """The part of every key naming the task: harness version, task, options, data hash."""
        return {**self._task_spec, "data_sha256": self.data_sha256}

    def _memo(self, kind: str, key: dict[str, Any], build: Callable[[], Any]) -> Any:
        memo_key = (kind, stable_hash(key), str(self.device))
        if memo_key not in _MEMO:
            _MEMO[memo_key] = build()
        return _MEMO[memo_key]

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
        """'good'/'poor' (or any key of the task's drafts), else a draft plugin by name."""
        if name in self.task.drafts:
            return self.task.drafts[name]
        return name, {}

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

            draft.load_state_dict(self.cache.load_or_build("drafts", key, fit))
            return draft.to(self.device)

        return self._memo("draft", key, build)

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
            # Built whole before the cache writes anything: a refiner that fails part-way
            # (an LLM endpoint going down, say) leaves no half-written pairs behind.
            x_d = self.draft(draft_name).sample(self.task.n_pairs, self.generator("pairs"))
            refiner.fit(self.data.train)
            x_r = refiner.refine(x_d).cpu()
            return {"draft": x_d.cpu(), "refined": x_r, "refiner_stats": refiner.stats()}

        def load() -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
            state = self.cache.load_or_build("pairs", key, build_pairs)
            return (state["draft"].to(self.device), state["refined"].to(self.device),
                    dict(state.get("refiner_stats") or {}))

        return self._memo("pairs", key, load)

    def pairs(self, draft_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_d, x_r): draft samples and their refinements, the warm-start training pairs."""
        return self._pairs(draft_name)[:2]

    def refiner_stats(self, draft_name: str) -> dict[str, Any]:
        """The refiner's counts from building the pairs for ``draft_name`` (retries, ...)."""
        return self._pairs(draft_name)[2]

    def network_key(self, kind: str, key: dict[str, Any]) -> dict[str, Any]:
        """The cache key of network ``kind`` with the method's ``key`` (training is on-device)."""
        return {
            **self.task_key,
            "model": kind,
            "train_config": asdict(self.train_config),
            "seed": self.seed,
            "device": self.device.type,
            **key,
        }

    def network(
        self,
        kind: str,
        key: dict[str, Any],
        train: Callable[[nn.Module], None],
        make: Callable[[], nn.Module] | None = None,
    ) -> nn.Module:
        """A trained network, built by ``train`` on a cache miss.

        The architecture is the task's (``task.make_network``) unless ``make`` builds another
        (an autoregressive transformer, say); ``kind`` and ``key`` must then name it.
        """
        full_key = self.network_key(kind, key)
        make = make or self.task.make_network

        def build() -> dict[str, Any]:
            with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
                torch.manual_seed(self.seed)
                net = make().to(self.device)
            train(net)
            return {k: v.cpu() for k, v in net.state_dict().items()}

        def load() -> nn.Module:
            net = make()
            net.load_state_dict(self.cache.load_or_build("models", full_key, build))
            return net.to(self.device).eval()

        return self._memo("network", full_key, load)

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
