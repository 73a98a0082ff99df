"""Plugin contracts fail early: a plugin class that lacks one of its kind's required methods,
or is not a subclass of its kind's base, is refused when it is registered, and listed as
BROKEN (naming what it lacks) when it comes from another package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import RegistryError
from harness.plugins import Draft, Method, Metric, Refiner, Task, instantiate
from harness.registry import REGISTRIES, Registry, methods
from tests.test_third_party_plugin import cli, install_plugin


class NoNetwork(Task):
    def load(self):
        raise AssertionError("not run")


class NoState(Draft):
    def fit(self, train, generator):
        raise AssertionError("not run")

    def sample(self, n, generator):
        raise AssertionError("not run")


class NoRefine(Refiner):
    def fit(self, train):
        raise AssertionError("not run")


class NoCompute(Metric):
    higher_is_better = True


@dataclass
class NoPrepare(Method):
    steps: int = 1

    def prepar(self, ctx, n_steps):  # a typo is a missing method
        raise AssertionError("not run")


HERE = __name__
INCOMPLETE = [
    ("task", NoNetwork, "does not implement make_network; a task must implement load(), "
     "make_network() (see harness.plugins.Task)"),
    ("draft", NoState, "does not implement state_dict, load_state_dict; a draft must implement "
     "fit(train, generator), sample(n, generator), state_dict(), load_state_dict(state) "
     "(see harness.plugins.Draft)"),
    ("refiner", NoRefine, "does not implement refine; a refiner must implement fit(train), "
     "refine(drafts) (see harness.plugins.Refiner)"),
    ("metric", NoCompute, "does not implement compute; a metric must implement "
     "compute(samples, reference, seed, stats=None) (see harness.plugins.Metric)"),
    ("method", NoPrepare, "does not implement prepare; a method must implement "
     "prepare(ctx, n_steps) (see harness.plugins.Method)"),
]


@pytest.mark.parametrize(("kind", "cls", "message"), INCOMPLETE, ids=[k for k, *_ in INCOMPLETE])
def test_a_plugin_lacking_a_required_method_is_refused_when_registered(kind, cls, message):
    registry = REGISTRIES[kind]
    name = f"contract-test-{kind}"
    expected = f"{kind} plugin '{name}' ({HERE}:{cls.__qualname__}) {message}"
    with pytest.raises(RegistryError) as by_decorator:
        registry.register(name)(cls)
    assert str(by_decorator.value) == expected
    with pytest.raises(RegistryError) as by_add:
        registry.add(name, cls)
    assert str(by_add.value) == expected
    assert name not in registry.names()


def test_a_complete_dataclass_plugin_registers_and_instantiates() -> None:
    @dataclass
    class Complete(NoPrepare):
        """Test method: NoPrepare with its prepare."""

        def prepare(self, ctx, n_steps):
            raise AssertionError("not run")

    registry = Registry("method", "wsfm_bench.test_nothing", Method)
    registry.register("complete")(Complete)
    made = instantiate(registry, "complete", {"steps": 3})
    assert type(made) is Complete and made.steps == 3
    assert registry.entry("complete").description == "Test method: NoPrepare with its prepare."


class Duck:
    """Has prepare, but is no Method."""

    def prepare(self, ctx, n_steps):
        raise AssertionError("not run")


@pytest.mark.parametrize(("obj", "shown"), [
    (Duck, f"{HERE}:Duck"),
    (NoNetwork, f"{HERE}:NoNetwork"),  # a plugin of another kind
    (Duck(), "<tests.test_contracts.Duck object"),  # an instance, not a class
])
def test_an_object_that_is_not_a_subclass_of_its_kind_is_refused(obj, shown) -> None:
    registry = Registry("method", "wsfm_bench.test_nothing", Method)
    with pytest.raises(RegistryError) as refused:
        registry.add("duck", obj)
    message = str(refused.value)
    assert message.startswith(f"method plugin 'duck' ({shown}")
    assert message.endswith(") is not a subclass of harness.plugins.Method; a method plugin is "
                            "a class deriving from it that implements prepare(ctx, n_steps)")
    assert registry.names() == []


def test_registries_hold_classes_and_instantiate_builds_instances() -> None:
    from wsfm.methods import FullFM

    bases = {kind: registry.base for kind, registry in REGISTRIES.items()}
    assert bases == {"task": Task, "method": Method, "draft": Draft, "refiner": Refiner,
                     "metric": Metric}
    assert methods.get("full-fm") is FullFM
    made = instantiate(methods, "full-fm", {})
    assert isinstance(made, FullFM) and isinstance(made, Method)


BROKEN_PLUGIN = '''
from harness.plugins import Method


class NoPrepare(Method):
    """Third-party test method that forgot prepare."""
'''


def test_an_entry_point_plugin_lacking_a_method_is_listed_broken_and_refused(
    tmp_path: Path, tiny_suite_text: str
) -> None:
    env = install_plugin(tmp_path, "wsfm-bench-broken-demo", "broken_demo", BROKEN_PLUGIN,
                         "method", {"no-prepare": "broken_demo:NoPrepare"})
    message = ("method plugin 'no-prepare' (broken_demo:NoPrepare) does not implement prepare; "
               "a method must implement prepare(ctx, n_steps) (see harness.plugins.Method)")

    listing = cli(["list", "method"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    line = next(x for x in listing.stdout.splitlines() if x.strip().startswith("no-prepare"))
    assert line.split(None, 1)[1] == f"BROKEN: {message}"
    assert any(x.strip().startswith("full-fm") for x in listing.stdout.splitlines())
    assert "1 plugin(s) cannot be used" in listing.stderr

    # A suite naming it is refused before any work, with the same message.
    suite = tmp_path / "suite.toml"
    suite.write_text(tiny_suite_text + '[[methods]]\nname = "no-prepare"\n')
    refused = cli(["run", str(suite), "--quiet"], env, tmp_path)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert not (tmp_path / "results").exists()
