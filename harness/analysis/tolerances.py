"""Tolerances of run-to-run comparison (harness.analysis.compare): per metric, a change in
the worse direction up to max(rel * |base|, abs) is tolerated; the defaults are documented
in harness/suites/tolerances.toml, overridden by a file or the command line."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.checks import non_negative
from harness.errors import ConfigError

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "suites" / "tolerances.toml"


@dataclass(frozen=True)
class Tol:
    """A change in the worse direction up to max(rel * |base|, abs) is tolerated."""

    rel: float = 0.05
    abs: float = 0.0

    def allowed(self, base: float) -> float:
        return max(self.rel * abs(base), self.abs)


def _tolerance(value: Any, key: str, source: str) -> float:
    return non_negative(value, f"{source}: {key}", "tolerances")


def tol_from_table(table: Any, where: str, source: str, inherit: Tol) -> Tol:
    """A Tol from a TOML table {rel, abs}, missing keys inherited; errors name ``where``."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}] must be a table with rel and/or abs")
    for key in sorted(set(table) - {"rel", "abs"}):
        raise ConfigError(f"{source}: unknown key {where}.{key!r}; allowed: 'rel', 'abs'")
    return Tol(*(_tolerance(table.get(k, getattr(inherit, k)), f"{where}.{k}", source)
                 for k in ("rel", "abs")))


@dataclass(frozen=True)
class Tolerances:
    """Per-metric quality tolerances plus the wall_speedup timing tolerance."""

    default_tol: Tol = Tol()
    metrics: dict[str, Tol] = field(default_factory=dict)
    wall_speedup_rel: float = 0.25
    source: str = "built-in"

    def for_metric(self, metric: str) -> Tol:
        return self.metrics.get(metric, self.default_tol)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "tolerances") -> Tolerances:
        for key in sorted(set(data) - {"default", "metrics", "timing"}):
            raise ConfigError(f"{source}: unknown key {key!r}; allowed: default, metrics, timing")
        default = tol_from_table(data.get("default", {}), "default", source, Tol())
        metrics, timing = data.get("metrics", {}), data.get("timing", {})
        for name, table in (("metrics", metrics), ("timing", timing)):
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
        for key in sorted(set(timing) - {"wall_speedup_rel"}):
            raise ConfigError(f"{source}: unknown key timing.{key!r}; allowed: wall_speedup_rel")
        return cls(default, {m: tol_from_table(t, f"metrics.{m}", source, default)
                             for m, t in metrics.items()},
                   _tolerance(timing.get("wall_speedup_rel", 0.25), "timing.wall_speedup_rel",
                           source), source)

    @classmethod
    def from_file(cls, path: str | Path) -> Tolerances:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"tolerance file {path} not found") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"tolerance file {path} is not valid TOML: {exc}") from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def default(cls) -> Tolerances:
        """The documented defaults shipped in harness/suites/tolerances.toml."""
        return cls.from_file(DEFAULT_FILE)

    def with_overrides(self, rel: float | None = None, abs_: float | None = None,
                       metric_tols: list[str] | tuple[str, ...] = ()) -> Tolerances:
        """--rel/--abs set that key for every metric; then each 'metric:rel=x,abs=y' one."""
        set_all = {k: _tolerance(v, f"--{k}", "command line")
                   for k, v in (("rel", rel), ("abs", abs_)) if v is not None}
        default = replace(self.default_tol, **set_all)
        metrics = {m: replace(t, **set_all) for m, t in self.metrics.items()}
        for text in metric_tols:
            name, colon, rest = text.partition(":")
            items = [p.strip().partition("=") for p in rest.split(",") if p.strip()]
            if not colon or not name.strip() or not items or any(not eq for _, eq, _ in items):
                raise ConfigError(f"--metric-tol {text!r}: expected METRIC:rel=X[,abs=Y]")
            try:
                table = {k.strip(): float(v) for k, _, v in items}
            except ValueError as exc:
                raise ConfigError(f"--metric-tol {text!r}: {exc}") from exc
            name = name.strip()
            metrics[name] = tol_from_table(table, f"metrics.{name}", "--metric-tol",
                                 metrics.get(name, default))
        return replace(self, default_tol=default, metrics=metrics)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "default": asdict(self.default_tol),
                "metrics": {m: asdict(t) for m, t in self.metrics.items()},
                "timing": {"wall_speedup_rel": self.wall_speedup_rel}}
