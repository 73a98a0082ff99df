"""Plugin registry: one `Registry` per plugin kind (task, method, draft, refiner, metric).

Every plugin, built-in or third-party, is found the same way: through an entry point of its
package, one group per kind (``wsfm_bench.tasks``, ``wsfm_bench.methods``, ...). The
built-ins are declared in wsfm-bench's own pyproject.toml exactly as another package
declares its plugins; the host (this package) imports no plugin module by name:

    [project.entry-points."wsfm_bench.methods"]
    my-method = "my_pkg.plugins:MyMethod"

An entry point is loaded (its module imported) only when its name is asked for, or when
the whole listing is. Code can also register a plugin in-process (tests, notebooks):

    @methods.register("my-method")
    class MyMethod(Method): ...

A plugin is a class deriving from its kind's base in harness.plugins (``methods`` holds
``Method`` subclasses) that implements the base's abstract methods; one that does not is
refused when it is registered or loaded, naming what it lacks (``wsfm-bench list`` shows it
as BROKEN). Two plugins under one name (two packages, or a package and an in-process
registration) are an error naming both owners.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Generic, TypeVar

from harness.errors import RegistryError
from harness.plugins import Draft, Method, Metric, Refiner, Task

P = TypeVar("P")  # a registry's plugin base class (Method for ``methods``)
C = TypeVar("C", bound=type)
DISTRIBUTION = "wsfm-bench"  # the package whose entry points hold the built-in plugins


@dataclass(frozen=True)
class Entry(Generic[P]):
    """A registered plugin: the class, a one-line description and who registered it."""

    name: str
    obj: type[P]
    description: str
    owner: str
    package: str | None = None  # the distribution that declared it (None: in-process)
    version: str | None = None

    def provenance(self) -> dict[str, str | None]:
        """Where the plugin comes from, as a run's manifest records it."""
        return {"package": self.package, "version": self.version, "source": self.owner}


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "description", None) or (obj.__doc__ or "")
    doc = doc.strip()
    return doc.splitlines()[0].strip() if doc else "(no description)"


def _owner_of(obj: Any) -> str:
    return getattr(obj, "__module__", None) or type(obj).__module__


def _ep_owner(ep: EntryPoint) -> str:
    return f"{ep.dist.name if ep.dist else '?'} (entry point {ep.value})"


def _doc_from_source(ep: EntryPoint) -> str | None:
    """The first docstring line of an entry point's object, read from its module's source
    without importing the module (None when that is not possible)."""
    module, _, attr = ep.value.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
        tree = ast.parse(source)
    except (ImportError, ValueError, OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == attr.strip():
            for stmt in node.body:  # a `description = "..."` attribute wins, as on import
                if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                        and any(getattr(t, "id", None) == "description" for t in stmt.targets)):
                    return _first_line(SimpleNamespace(description=stmt.value.value))
            doc = ast.get_docstring(node)
            return _first_line(SimpleNamespace(description=doc)) if doc else "(no description)"
    return None


def _required_methods(base: type) -> list[str]:
    """What a plugin deriving from ``base`` must implement: its abstract methods, in order."""
    return [n for n, v in vars(base).items() if getattr(v, "__isabstractmethod__", False)]


def _call(func: Callable[..., Any]) -> str:
    """'compute(samples, reference, seed, stats=None)': how a method is called, less self."""
    params = list(inspect.signature(func).parameters.values())[1:]
    shown = (p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params)
    return f"{func.__name__}({', '.join(shown)})"


def _contract_error(kind: str, name: str, obj: Any, base: type) -> str | None:
    """Why ``obj`` cannot be the ``kind`` plugin ``name`` (None: it can)."""
    where = f"{obj.__module__}:{obj.__qualname__}" if isinstance(obj, type) else repr(obj)
    plugin = f"{kind} plugin {name!r} ({where})"
    must = ", ".join(_call(getattr(base, m)) for m in _required_methods(base))
    see = f"{base.__module__}.{base.__qualname__}"
    if not (isinstance(obj, type) and issubclass(obj, base)):
        return (f"{plugin} is not a subclass of {see}; a {kind} plugin is a class deriving "
                f"from it that implements {must}")
    # getattr, not __abstractmethods__ alone, so that a virtual subclass is checked too.
    missing = [m for m in _required_methods(base) if getattr(obj, m, None) is None
               or getattr(getattr(obj, m), "__isabstractmethod__", False)]
    missing += sorted(set(getattr(obj, "__abstractmethods__", ())) - set(missing))
    if missing:
        return (f"{plugin} does not implement {', '.join(missing)}; a {kind} must implement "
                f"{must} (see {see})")
    return None


@dataclass(frozen=True)
class Listing:
    """One name of a registry as ``wsfm-bench list`` shows it; ``error`` when the plugin is
    broken (fails to import) or clashes with another of the same name."""

    name: str
    description: str
    owner: str
    package: str | None
    version: str | None
    error: str | None = None


class Registry(Generic[P]):
    """Plugins of one kind, by name: subclasses of ``base`` that implement its abstract
    methods."""

    # ``base`` is a plain type: type checkers refuse an abstract class as ``type[P]``, so P
    # comes from the annotation (``methods: Registry[Method] = Registry(..., Method)``).
    def __init__(self, kind: str, group: str, base: type) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._entries: dict[str, Entry[P]] = {}
        self._points: dict[str, list[EntryPoint]] | None = None

    def register(self, name: str, *, description: str | None = None) -> Callable[[C], C]:
        """Decorator registering a plugin class under ``name`` in-process."""

        def decorate(cls: C) -> C:
            self.add(name, cls, description=description)
            return cls

        return decorate

    def add(
        self, name: str, obj: type[P], *, description: str | None = None,
        owner: str | None = None, package: str | None = None, version: str | None = None,
    ) -> None:
        """Register the class ``obj`` under ``name`` (in-process unless ``owner`` names an
        entry point); a RegistryError if it is not a complete plugin of this kind."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind} plugin names must be non-empty strings, got {name!r}")
        error = _contract_error(self.kind, name, obj, self.base)
        if error:
            raise RegistryError(error)
        if owner is None and name not in self._entries and name in self.entry_points():
            self._load(name)  # a package's plugin of that name: the clash check below sees it
        owner = owner or _owner_of(obj)
        existing = self._entries.get(name)
        if existing is not None:
            if existing.obj is obj:
                return  # the same object registered again (module re-import): harmless
            raise RegistryError(
                f"{self.kind} plugin {name!r} is registered twice: by {existing.owner} and by "
                f"{owner}; rename one of them"
            )
        self._entries[name] = Entry(name, obj, description or _first_line(obj), owner, package,
                                    version)

    def entry_points(self) -> dict[str, list[EntryPoint]]:
        """The group's entry points by name (read from package metadata; nothing imported)."""
        if self._points is None:
            points: dict[str, list[EntryPoint]] = {}
            for ep in entry_points(group=self.group):
                points.setdefault(ep.name, []).append(ep)
            self._points = points
        return self._points

    def _load(self, name: str) -> None:
        """Load the entry point(s) named ``name`` into the registry (once)."""
        points = self.entry_points().get(name, [])
        if len(points) > 1:
            owners = " and by ".join(_ep_owner(ep) for ep in points)
            raise RegistryError(f"{self.kind} plugin {name!r} is registered twice: by {owners}; "
                                "uninstall or rename one of them")
        for ep in points:
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must say whose it is
                why = (f"it calls sys.exit({exc.code!r}) when imported"
                       if isinstance(exc, SystemExit) else str(exc))
                raise RegistryError(
                    f"cannot load {self.kind} plugin {name!r} from {_ep_owner(ep)}: {why}"
                ) from exc
            dist = ep.dist
            self.add(name, obj, owner=_ep_owner(ep), package=dist.name if dist else None,
                     version=dist.version if dist else None)

    def get(self, name: str) -> type[P]:
        """The plugin class registered under ``name``; a clear error if there is none."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[P]:
        if name not in self._entries:
            self._load(str(name))
        if name not in self._entries:
            known = self.names()
            close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known) or 'none'}; "
                f"`wsfm-bench list` shows all){_install_hint()}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        """Every name, in-process and from entry points (nothing is loaded)."""
        return sorted(set(self._entries) | set(self.entry_points()))

    def listing(self) -> list[Listing]:
        """Every name with its description, read without importing what is not loaded yet
        (fast: no torch), a broken or clashing plugin reported in place, never raised."""
        out = []
        for name in self.names():
            points = self.entry_points().get(name, [])
            if name in self._entries and not (len(points) > 1):
                e = self._entries[name]
                out.append(Listing(name, e.description, e.owner, e.package, e.version))
                continue
            # Built-ins are read from source (no torch); another package's plugin is imported,
            # so that one that fails to import is reported here, not in the middle of a run.
            ours = len(points) == 1 and points[0].dist is not None and \
                points[0].dist.name == DISTRIBUTION
            doc = _doc_from_source(points[0]) if ours else None
            error = None
            if doc is None:
                try:
                    e = self.entry(name)
                    doc = e.description
                except RegistryError as exc:
                    error, doc = str(exc), ""
            dist = points[0].dist if points else None
            out.append(Listing(name, doc, _ep_owner(points[0]) if points else "?",
                               dist.name if dist else None, dist.version if dist else None,
                               error))
        return out

    def __iter__(self) -> Iterator[Entry[P]]:
        return (self.entry(n) for n in self.names())

    def __contains__(self, name: object) -> bool:
        try:
            self.entry(str(name))
        except RegistryError:
            return False
        return True


def _install_hint() -> str:
    """Why no built-in is known, when wsfm-bench's own entry points are missing."""
    ours = [ep for ep in entry_points(group="wsfm_bench.methods")
            if ep.dist is not None and ep.dist.name == DISTRIBUTION]
    if ours:
        return ""
    return ("; wsfm-bench's built-in plugins are declared as entry points, so the package must "
            "be installed: pip install -c constraints.txt -e .")


tasks: Registry[Task] = Registry("task", "wsfm_bench.tasks", Task)
methods: Registry[Method] = Registry("method", "wsfm_bench.methods", Method)
drafts: Registry[Draft] = Registry("draft", "wsfm_bench.drafts", Draft)
refiners: Registry[Refiner] = Registry("refiner", "wsfm_bench.refiners", Refiner)
metrics: Registry[Metric] = Registry("metric", "wsfm_bench.metrics", Metric)

REGISTRIES: dict[str, Registry[Any]] = {
    r.kind: r for r in (tasks, methods, drafts, refiners, metrics)
}


def check_draft(task: Task, draft: str) -> None:
    """Raise ValueError unless ``draft`` is one of the task's drafts (its controls included)
    or a draft plugin."""
    if draft not in task.all_drafts and draft not in drafts:
        raise ValueError(
            f"draft {draft!r} is neither one of the task's drafts "
            f"({', '.join(task.all_drafts)}) nor a draft plugin"
        )
