"""Advice before any training: each method that gives advice (a warm start's t0 for its
draft, ``Method.advice_topic`` / ``Method.advise``) is asked once per task and topic, at the
task's first selection seed (its first seed when it has none), and the answers go to
run_dir/advisor.json for the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.cache import Cache
from harness.context import CellContext
from harness.plugins import instantiate
from harness.records import atomic
from harness.records.store import ADVICE_FILE
from harness.registry import methods
from harness.run.suite import Suite


def advise_run(suite: Suite, run_dir: str | Path, cache: Cache,
               progress: bool = True) -> dict[str, Any]:
    """{"seeds": {task: seed}, "tasks": {task: {topic: advice}}}, written to
    run_dir/advisor.json."""
    advice: dict[str, Any] = {"seeds": {}, "tasks": {}}
    for task, options in suite.tasks:
        selection, evaluation = suite.seeds_for(task)
        seed = advice["seeds"][task] = (selection or evaluation)[0]
        ctx = None
        for spec in suite.methods:
            if spec.tasks is not None and task not in spec.tasks:
                continue
            method = instantiate(methods, spec.name, spec.options)
            topic = method.advice_topic()
            given = advice["tasks"].get(task, {})
            if topic is None or topic in given:
                continue
            ctx = ctx or CellContext(task, options, seed, suite.device, cache,
                                     progress=progress)
            advice["tasks"].setdefault(task, {})[str(topic)] = method.advise(ctx)
    atomic.write_json(Path(run_dir) / ADVICE_FILE, advice)
    return advice
