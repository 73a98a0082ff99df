"""Validation of a parsed suite against the registry, before any work starts: training
settings, seeds, the device, every plugin name and option, each task's metrics and data
(``Task.check``), and which methods can run on which tasks. Errors name the bad key."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from harness.checks import check_device, positive_int, sample_count
from harness.errors import ConfigError
from harness.hashing import stable_hash
from harness.nn.training import TrainConfig
from harness.plugins import instantiate
from harness.records.cell import Cell, TimeCell
from harness.registry import methods, metrics, tasks

if TYPE_CHECKING:
    from harness.run.suite import MethodSpec, Suite


def _check_training(training: Any, where: str) -> None:
    allowed = [f.name for f in fields(TrainConfig)]
    if not isinstance(training, dict):
        raise ConfigError(f"{where} = {training!r} must be a table with keys "
                          f"{', '.join(allowed)}, e.g. [training] steps = 500")
    bad = sorted(set(training) - set(allowed))
    if bad:
        raise ConfigError(
            f"{where} has no key {', '.join(map(repr, bad))}; allowed: {', '.join(allowed)}"
        )
    for key in ("steps", "batch_size", "max_steps", "pairs_batch_size", "pairs_max_steps"):
        if key in training:
            positive_int(training[key], f"{where}: {key}")
    patience = training.get("patience", 0)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ConfigError(f"{where}: patience must be a whole number >= 0 (0: train for "
                          f"steps; k: until k cycles in a row do not improve), got {patience!r}")
    delta = training.get("min_delta", 0.01)
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 <= delta < 1:
        raise ConfigError(f"{where}: min_delta must be a number in [0, 1), got {delta!r}")
    lr = training.get("lr", 1.0)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"{where}: lr must be a positive number, got {lr!r}")


def _check_cycles(suite: Suite, name: str, task: Any, source: str,
                  method: MethodSpec | None = None) -> None:
    """With patience, the first cycle (``steps``) fits under each cap of the task's training
    as its cells get it (the task's defaults, the suite's, the task's and ``method``'s (a
    method entry's) overrides): a cap below it would leave the network untrained."""
    training = {**suite.training, **suite.task_settings.get(name, {}).get("training", {}),
                **((method and method.training) or {})}
    config = replace(task.train_config, **training)
    where = f"task {name!r}" + (f" method {method.name!r}" if method and method.training else "")
    for cap in ("max_steps", "pairs_max_steps"):
        value = getattr(config, cap)
        if config.patience and value and value < config.steps:
            raise ConfigError(f"{source}: {where} training: {cap} = {value} is shorter "
                              f"than the first cycle (steps = {config.steps}), so nothing "
                              f"would train: raise {cap} or lower steps")


def _check_metrics(suite: Suite, name: str, task: Any, source: str) -> None:
    """The task's metrics (the suite's choice or its own) exist and take their options."""
    settings = suite.task_settings.get(name, {})
    where = f"{source}: task {name!r}"
    chosen = settings.get("metrics")
    if chosen is not None and (not isinstance(chosen, list) or not chosen
                               or not all(isinstance(m, str) for m in chosen)):
        raise ConfigError(f"{where}: metrics must be a non-empty list of metric names")
    options = settings.get("metric_options", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError(f"{where}: metric_options must be a table of metric = {{options}}")
    names = suite.metrics_for(name, task)
    for metric in sorted(set(options) - set(names)):
        raise ConfigError(f"{where}: metric_options names {metric!r}, which the task is not "
                          f"judged by ({', '.join(names)})")
    counts = {key: settings.get(key, getattr(suite, key)) for key in ("n_samples", "n_eval")}
    for metric in names:
        need = _build(metrics, metric, {**task.metric_options.get(metric, {}),
                                        **options.get(metric, {})}, source).min_points()
        for key, n in counts.items():
            if n < need:
                raise ConfigError(f"{where}: {key} = {n} is too few for metric {metric!r}, "
                                  f"which needs at least {need}; raise {key}")
    if settings.get("reference", "test") not in ("test", "train"):
        raise ConfigError(f"{where}: reference = {settings['reference']!r}; allowed: \"test\" "
                          "(the held-out split, default) or \"train\" (e.g. FID against the "
                          "training set, the CIFAR-10 protocol)")
    primary = settings.get("primary_metric")
    if primary is not None and primary not in names:
        raise ConfigError(f"{where}: primary_metric {primary!r} is not one of its metrics "
                          f"({', '.join(names)})")


def _build(registry: Any, name: str, options: dict[str, Any], source: str) -> Any:
    """``instantiate``, its errors naming the suite as every other check does."""
    try:
        return instantiate(registry, name, options)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def validate(suite: Suite, source: str = "suite") -> None:
    """Check every name and option against the registry; raises ConfigError."""
    if not suite.seeds:
        raise ConfigError(f"{source}: seeds must not be empty")
    for name, _ in suite.tasks:
        selection, evaluation = suite.seeds_for(name)
        shared = sorted(set(selection) & set(evaluation))
        if shared:
            raise ConfigError(f"{source}: task {name!r}: seeds {shared} are both selection and "
                              "evaluation seeds; settings must be chosen on other seeds than "
                              "those that report them")
    check_device(suite.device)
    scopes = {"": vars(suite), **{f"task {name!r}: ": settings
                                  for name, settings in suite.task_settings.items()}}
    for where, settings in scopes.items():
        for key in ("n_samples", "time_batch"):
            if settings.get(key) is not None:
                sample_count(settings[key], f"{source}: {where}{key}")
    _check_training(suite.training, f"{source}: [training]")
    for name, settings in suite.task_settings.items():
        _check_training(settings.get("training", {}), f"{source}: task {name!r} training")

    task_objs = {name: _build(tasks, name, opts, source) for name, opts in suite.tasks}
    for name, task in task_objs.items():
        _check_cycles(suite, name, task, source)
        _check_metrics(suite, name, task, source)
        try:
            task.check()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{source}: task {name!r}: {exc}") from exc
    for spec in suite.methods:
        method = _build(methods, spec.name, spec.options, source)
        if spec.training is not None:
            _check_training(spec.training, f"{source}: method {spec.name!r} training")
        for name in spec.tasks or []:
            if name not in task_objs:
                raise ConfigError(
                    f"{source}: method {spec.name!r} names task {name!r}, which the suite does "
                    f"not run; its tasks are {', '.join(task_objs)}"
                )
        for name in spec.tasks or list(task_objs):
            if spec.training:
                _check_cycles(suite, name, task_objs[name], source, spec)
            try:
                method.check_task(task_objs[name])
            except ValueError as exc:
                raise ConfigError(
                    f"{source}: method {spec.name!r} on task {name!r}: {exc}"
                ) from exc


def check_cells(cells: list[Cell], source: str = "suite") -> None:
    """Refuse a suite that expands to no cells (a run "complete" with nothing in it), or
    that runs the same work twice: two [[methods]] entries giving the same variant (the same
    options once defaults are filled in) on one task, seed and budget."""
    if not cells:
        raise ConfigError(f"{source}: the suite gives no cells to run (check each method's "
                          "tasks and budgets)")
    seen: set[str] = set()
    full: dict[str, dict[str, Any]] = {}
    for cell in cells:
        raw = stable_hash([cell.method, cell.method_options])
        if raw not in full:
            method = instantiate(methods, cell.method, cell.method_options)
            full[raw] = (method.options() if dataclasses.is_dataclass(method)
                         else cell.method_options)
        # Training stays out: two entries that differ only in it would share a variant's name.
        key = stable_hash({**cell.to_dict(), "method_options": full[raw], "training": None})
        if key in seen:
            at = (f" at time budget {cell.time_budget:g} s" if isinstance(cell, TimeCell)
                  else f" at N = {cell.n_steps}" if cell.n_steps else "")
            options = ", ".join(f"{k}={v!r}" for k, v in full[raw].items())
            raise ConfigError(
                f"{source}: method {cell.method!r} ({options or 'no options'}) is given twice "
                f"by [[methods]] entries, on task {cell.task!r}{at}: the same cells would run "
                "twice; remove one entry, or give them different options or budgets")
        seen.add(key)
