from __future__ import annotations

import pytest

from harness.errors import RegistryError
from harness.plugins import Method, Task
from harness.registry import Registry, methods


class _Method(Method):
    def prepare(self, ctx, n_steps):
        raise AssertionError("not run")


def test_duplicate_name_names_both_owners() -> None:
    reg = Registry("method", "wsfm_bench.test_nothing", Method)
    reg.add("m", type("A", (_Method,), {}), owner="pkg_a")
    with pytest.raises(RegistryError, match=r"'m' is registered twice: by pkg_a and by pkg_b"):
        reg.add("m", type("B", (_Method,), {}), owner="pkg_b")


def test_same_object_twice_is_harmless() -> None:
    reg = Registry("method", "wsfm_bench.test_nothing", Method)
    reg.add("m", _Method)
    reg.add("m", _Method)
    assert reg.get("m") is _Method


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(RegistryError, match=r"unknown method 'ws_fm'.*did you mean 'ws-fm'"):
        methods.get("ws_fm")


def test_decorator_registers_with_first_docstring_line() -> None:
    reg = Registry("task", "wsfm_bench.test_nothing", Task)

    @reg.register("thing")
    class Thing(Task):
        """One line.

        More detail."""

        def load(self):
            raise AssertionError("not run")

        def make_network(self):
            raise AssertionError("not run")

    assert reg.get("thing") is Thing
    assert reg.entry("thing").description == "One line."
    assert reg.entry("thing").owner == __name__


def test_builtins_cover_every_kind() -> None:
    from harness.registry import REGISTRIES

    names = {kind: reg.names() for kind, reg in REGISTRIES.items()}
    assert {"two-moons", "8gaussians", "checkerboard", "spirals"} <= set(names["task"])
    assert {"full-fm", "ws-fm", "warm-start", "ddpm", "ddim", "draft-only"} <= set(names["method"])
    assert "gmm" in names["draft"] and "nearest-neighbour" in names["refiner"]
    assert {"swd", "mmd", "energy", "precision", "recall"} <= set(names["metric"])
