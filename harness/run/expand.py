"""A suite expanded into its cells: task x seed x method x budget (and wall-clock budget), each
once per compile variant, ordered so that cells sharing trained models are adjacent."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from harness.records.cell import Cell, TimeCell
from harness.registry import methods
from harness.roles import Role

if TYPE_CHECKING:  # the suite module imports this one: types only, no cycle
    from harness.run.suite import MethodSpec, Suite


def expand_cells(suite: Suite) -> list[Cell]:
    """task x seed x method x budget, ordered so cells sharing trained models are adjacent."""
    cells = []
    for task, task_options in suite.tasks:
        settings = suite.task_settings.get(task, {})
        training = {**suite.training, **settings.get("training", {})}
        selection, evaluation = suite.seeds_for(task)
        for seed in [*selection, *evaluation]:
            for spec in suite.methods:
                if spec.tasks is None or task in spec.tasks:
                    own = {**training, **(spec.training or {})}
                    cells += _budget_cells(suite, spec, settings, task, task_options, seed, own)
                    cells += _time_cells(suite, spec, settings, task, task_options, seed, own)
    return _with_compile(suite, cells)


def _budget_cells(suite: Suite, spec: MethodSpec, settings: dict[str, Any], task: str,
                  task_options: dict[str, Any], seed: int,
                  training: dict[str, Any]) -> list[Cell]:
    """The NFE-budget cells of one method variant on one task and seed."""
    uses_budget = methods.get(spec.name).uses_budget
    budgets = spec.budgets or settings.get("budgets") or suite.budgets
    return [Cell(
        task=task, task_options=task_options, method=spec.name, method_options=spec.options,
        n_steps=n, seed=seed, device=suite.device,
        n_samples=settings.get("n_samples", suite.n_samples),
        n_eval=settings.get("n_eval", suite.n_eval), repeats=settings.get("repeats", suite.repeats),
        warmup=suite.warmup, training=training, metrics=settings.get("metrics"),
        metric_options=settings.get("metric_options"), reference=settings.get("reference"),
    ) for n in (budgets if uses_budget else [0])]


def _time_cells(suite: Suite, spec: MethodSpec, settings: dict[str, Any], task: str,
                task_options: dict[str, Any], seed: int,
                training: dict[str, Any]) -> list[TimeCell]:
    """The wall-clock cells of one method variant on one task and seed (N chosen at run time)."""
    budgets = spec.time_budgets
    if budgets is None:
        budgets = settings.get("time_budgets", suite.time_budgets)
    n_samples = settings.get("n_samples", suite.n_samples)
    batch = settings.get("time_batch", suite.time_batch) or n_samples
    return [TimeCell(
        task=task, task_options=task_options, method=spec.name, method_options=spec.options,
        n_steps=0, seed=seed, device=suite.device, n_samples=n_samples,
        n_eval=settings.get("n_eval", suite.n_eval), repeats=settings.get("repeats", suite.repeats),
        warmup=suite.warmup, training=training, time_budget=float(b), time_batch=int(batch),
        metrics=settings.get("metrics"), metric_options=settings.get("metric_options"),
        reference=settings.get("reference"),
    ) for b in budgets]


def _with_compile(suite: Suite, cells: list[Cell]) -> list[Cell]:
    """Each cell once per compile value (a compiled twin right after its eager cell), except
    for a draft alone (the floor) and real data: no network to compile, so they run once,
    eager."""
    if suite.compile == [False]:
        return cells
    out = []
    for cell in cells:
        has_network = methods.get(cell.method).role not in (Role.FLOOR, Role.DATA)
        out += [replace(cell, compile=c) for c in (suite.compile if has_network else [False])]
    return out
