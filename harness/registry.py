"""Plugin registry: one `Registry` per plugin kind (task, method, draft, refiner, metric).

Built-in plugins register themselves with a decorator when their module is imported;
third-party packages add plugins through entry points (one group per kind, for example
``wsfm_bench.methods``), which are loaded lazily, the first time a registry is asked for
a name it does not know or for its full listing.

    @methods.register("my-method")
    class MyMethod: ...

An entry point ``my-method = my_pkg.plugins:MyMethod`` registers the object it points at
under the entry point's name (unless importing the module already registered it).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from harness.errors import RegistryError

T = TypeVar("T")

# Modules whose import registers the built-in plugins.
BUILTIN_MODULES = (
    "harness.tasks.toy2d",
    "harness.tasks.images",
    "harness.tasks.text",
    "harness.drafts",
    "harness.image_drafts",
    "harness.text.draft",
    "harness.refiners",
    "harness.text.refiners",
    "harness.metrics.points",
    "harness.metrics.fidelity",
    "harness.text.metrics",
    "wsfm.methods",
    "baselines.diffusion",
    "baselines.draft_only",
    "baselines.autoregressive",
    "baselines.masked_diffusion",
)


@dataclass(frozen=True)
class Entry:
    """A registered plugin: the object, a one-line description and who registered it."""

    name: str
    obj: Any
    description: str
    owner: str


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "description", None) or (obj.__doc__ or "")
    doc = doc.strip()
    return doc.splitlines()[0].strip() if doc else "(no description)"


def _owner_of(obj: Any) -> str:
    return getattr(obj, "__module__", None) or type(obj).__module__


class Registry:
    """Plugins of one kind, by name."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._entry_points_loaded = False
        self._loading_entry_points = False

    def register(
        self, name: str, *, description: str | None = None
    ) -> Callable[[T], T]:
        """Decorator registering a class, function or object under ``name``."""

        def decorate(obj: T) -> T:
            self.add(name, obj, description=description)
            return obj

        return decorate

    def add(
        self, name: str, obj: Any, *, description: str | None = None, owner: str | None = None
    ) -> None:
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind} plugin names must be non-empty strings, got {name!r}")
        owner = owner or _owner_of(obj)
        existing = self._entries.get(name)
        if existing is not None:
            if existing.obj is obj:
                return  # the same object registered again (module re-import): harmless
            raise RegistryError(
                f"{self.kind} plugin {name!r} is registered twice: by {existing.owner} and by "
                f"{owner}; rename one of them"
            )
        self._entries[name] = Entry(name, obj, description or _first_line(obj), owner)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._loading_entry_points:
            return
        self._loading_entry_points = True
        try:
            for ep in entry_points(group=self.group):
                owner = f"{ep.dist.name if ep.dist else '?'} (entry point {ep.value})"
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken third-party plugin must say whose it is
                    raise RegistryError(
                        f"cannot load {self.kind} plugin {ep.name!r} from {owner}: {exc}"
                    ) from exc
                self.add(ep.name, obj, owner=owner)
            self._entry_points_loaded = True
        finally:
            self._loading_entry_points = False

    def get(self, name: str) -> Any:
        """The plugin object registered under ``name``; a clear error if there is none."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        load_builtins()
        if name not in self._entries:
            self._load_entry_points()
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))}; "
                f"`wsfm-bench list` shows all)"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        load_builtins()
        self._load_entry_points()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return (self._entries[n] for n in self.names())

    def __contains__(self, name: object) -> bool:
        try:
            self.entry(str(name))
        except RegistryError:
            return False
        return True


tasks = Registry("task", "wsfm_bench.tasks")
methods = Registry("method", "wsfm_bench.methods")
drafts = Registry("draft", "wsfm_bench.drafts")
refiners = Registry("refiner", "wsfm_bench.refiners")
metrics = Registry("metric", "wsfm_bench.metrics")

REGISTRIES: dict[str, Registry] = {
    r.kind: r for r in (tasks, methods, drafts, refiners, metrics)
}

_builtins_loaded = False


def load_builtins() -> None:
    """Import the modules that register the built-in plugins (once)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
