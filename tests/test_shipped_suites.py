"""The suites shipped in harness/suites: every CPU suite parses, and the default suite carries
the headline's ingredients for two moons, digits and text (issue 13: small, not hollow; issue
19: controls, the data floor, converged models and stated margins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.registry import methods
from harness.roles import Role
from harness.run.expand import expand_cells
from harness.run.suite import (
    DEFAULT_SUITE,
    SUITES_DIR,
    parse_suite,
    read_suite_file,
)

CPU_SUITES = sorted(p for p in SUITES_DIR.glob("*.toml")
                    if read_suite_file(p).get("device", "cpu") == "cpu"
                    and "tasks" in read_suite_file(p))


@pytest.mark.parametrize("path", CPU_SUITES, ids=lambda p: p.stem)
def test_shipped_cpu_suites_parse(path: Path) -> None:
    assert expand_cells(parse_suite(read_suite_file(path), str(path)))


def test_the_default_suite_carries_the_headline_for_three_tasks() -> None:
    suite = parse_suite(read_suite_file(DEFAULT_SUITE), "default")
    cells = expand_cells(suite)
    assert [name for name, _ in suite.tasks] == ["two-moons", "digits", "text"]
    for task, _ in suite.tasks:
        selection, evaluation = suite.seeds_for(task)
        assert selection and len(evaluation) >= 3 and not set(selection) & set(evaluation)
        mine = [c for c in cells if c.task == task]
        full = {c.n_steps for c in mine if c.method == "full-fm"}
        assert min(full) == 1 and max(full) >= 20, (task, full)  # the frontier, from N = 1
        drafts = {c.method_options.get("draft") for c in mine if c.method == "draft-only"}
        warm = {c.method_options.get("draft") for c in mine
                if methods.get(c.method).role == Role.WARM_START}
        trained = {c.method_options.get("draft") for c in mine if c.method == "ws-fm"}
        # Both drafts and both controls, alone and warm-started; the data floor beside them.
        # The negative control's draft holds nothing to learn: its warm start is the
        # training-free one (full FM's own network from the noise at t0 = 0.9).
        assert drafts == warm == {"good", "poor", "positive", "negative"}, task
        assert trained == {"good", "poor", "positive"}, task
        assert any(c.method == "data" for c in mine), task
        assert {c.seed for c in mine} == set(selection) | set(evaluation)
        # Every flow model trains until its held-out loss stops (or a stated cap) on points
        # and images; each task states its margin in its primary metric's units, with a reason.
        settings = suite.task_settings.get(task, {})
        if task != "text":
            assert settings["training"]["patience"] > 0, task
            # Warm starts' own models fine-tune full FM's, within their own cap.
            assert {c.method_options.get("init") for c in mine
                    if c.method == "ws-fm"} == {"finetune"}, task
            assert settings["training"]["pairs_max_steps"] > 0, task
        (metric, margin), = settings["margins"].items()
        assert "abs" in margin and margin["reason"], task
