"""Suite values that used to change a run without a word, or fail only after the training
(issue 20, items 6 and 7): empty or repeated option lists, repeated method variants, numbers
given as strings, too few samples for a metric, far too many for memory, a [training] that
is not a table. Each is refused before any work, in one line naming the key."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

import pytest

from harness.checks import MAX_SAMPLES_ENV
from harness.cli import main
from harness.errors import ConfigError
from harness.plugins import Method, check_option_type, instantiate
from harness.registry import Registry
from harness.run.expand import expand_cells
from harness.run.suite import parse_suite
from tests.conftest import TINY_SUITE

WS_FM = '[[methods]]\nname = "ws-fm"\n'


def _parse(methods_text: str, **top: object):
    data = tomllib.loads(TINY_SUITE + methods_text)
    data.update(top)
    return parse_suite(data, "s.toml")


def _refused(methods_text: str, **top: object) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(methods_text, **top)
    message = str(info.value)
    assert "\n" not in message and message.startswith("s.toml: "), message
    return message


@pytest.mark.parametrize(("text", "message"), [
    (WS_FM + "t0 = []", "method 'ws-fm': t0 = [] has no value, so nothing would run with it"),
    (WS_FM + 'tasks = []', "method 'ws-fm': tasks = [] has no value"),
    (WS_FM + "t0 = [0.5, 0.9, 0.5]", "method 'ws-fm': t0 = [0.5, 0.9, 0.5] lists 0.5 twice: "
                                     "the same cells would run twice"),
    (WS_FM + "budgets = [4, 8, 4]", "budgets of method 'ws-fm' = [4, 8, 4] lists 4 twice"),
])
def test_empty_and_repeated_option_lists_are_refused(text: str, message: str) -> None:
    assert message in _refused(text)


def test_repeated_budgets_are_refused() -> None:
    assert "s.toml: budgets = [4, 4] lists 4 twice" in _refused(WS_FM, budgets=[4, 4])


def test_two_entries_giving_the_same_variant_are_refused() -> None:
    # t0 = 0.8 is ws-fm's default: both entries are one variant once defaults are filled in.
    message = _refused(WS_FM + "t0 = [0.5, 0.8]\n" + WS_FM)
    assert "method 'ws-fm' (draft='good', t0=0.8, solver='euler', start='draft', " \
        "init='scratch') is given twice by [[methods]] entries, on task 'two-moons' at N = 4" \
        in message
    # The same variant at other budgets is other work: allowed, and every cell is distinct.
    suite = _parse(WS_FM + "t0 = 0.8\n" + WS_FM + "budgets = [8]\n")
    cells = expand_cells(suite)
    assert len(cells) == 2 == len({c.cell_id for c in cells})


def test_a_string_for_a_number_is_refused_alike_for_the_suite_and_every_plugin() -> None:
    quoted = "(a string: write it without quotes)"
    assert f"n_samples must be a positive integer, got '200' {quoted}" in _refused(
        WS_FM, n_samples="200")
    assert f"method 'ws-fm': t0 must be a number, got '0.5' {quoted}" in _refused(
        WS_FM + 't0 = "0.5"')
    tasks = [{"name": "two-moons", "n_train": "600"}]
    assert f"task 'two-moons': n_train must be an integer, got '600' {quoted}" in _refused(
        WS_FM, tasks=tasks)
    assert "method 'ws-fm': t0 must be a number, got True" in _refused(WS_FM + "t0 = true")


@dataclass
class Typed(Method):
    """A third-party method with typed options."""

    steps: int = 3
    scale: float | None = None
    exact: bool = False

    def prepare(self, ctx, n_steps):  # pragma: no cover - never run
        raise NotImplementedError


def test_option_types_are_checked_from_the_dataclass_fields_of_any_plugin() -> None:
    registry = Registry("method", "wsfm_bench.test-typed-options", Method)  # not the global one
    registry.add("typed", Typed)
    for options, message in [({"steps": 2.5}, "method 'typed': steps must be an integer, got 2.5"),
                             ({"scale": "1e-3"}, "scale must be a number, got '1e-3' (a string"),
                             ({"exact": 1}, "exact must be true or false, got 1")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            instantiate(registry, "typed", options)
    assert instantiate(registry, "typed", {"steps": 2, "scale": 1, "exact": True}).scale == 1
    check_option_type("float | None", None, "scale")  # None where the type allows it
    check_option_type("str", "0.5", "name")  # not a number's type: the plugin's to check


@pytest.mark.parametrize(("top", "message"), [
    ({"n_samples": 1}, "task 'two-moons': n_samples = 1 is too few for metric 'mmd', which "
                       "needs at least 2; raise n_samples"),
    ({"n_samples": 3}, "n_samples = 3 is too few for metric 'precision', which needs at least 4"),
    ({"n_eval": 1}, "n_eval = 1 is too few for metric 'mmd', which needs at least 2"),
    ({"training": 3}, "[training] = 3 must be a table with keys steps, batch_size, lr"),
])
def test_values_found_only_after_training_are_refused_first(top: dict, message: str) -> None:
    assert message in _refused(WS_FM, **top)


def test_far_too_many_samples_are_refused_with_the_limit_and_how_to_raise_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refused(WS_FM, n_samples=10**9)
    assert "n_samples = 1000000000 is more than the 1000000 samples one cell may make" in message
    assert f"set {MAX_SAMPLES_ENV}=1000000000 if you really want that many" in message
    assert "time_batch = 2000000 is more than" in _refused(WS_FM, time_batch=2 * 10**6)
    monkeypatch.setenv(MAX_SAMPLES_ENV, str(2 * 10**6))
    assert _parse(WS_FM, n_samples=2 * 10**6).n_samples == 2 * 10**6


def test_the_command_line_gets_the_same_checks(tmp_path, capsys) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(TINY_SUITE + WS_FM)
    out = ["--out", str(tmp_path / "results"), "--quiet"]
    assert main(["run", str(suite), *out, "--n-samples", "1000000000"]) == 2
    assert main(["run", str(suite), *out, "--budgets", "4", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("wsfm-bench: error: ") == 2 and "Traceback" not in err
    assert "n_samples = 1000000000 is more than" in err and "lists 4 twice" in err
    assert not (tmp_path / "results").exists()
