"""Errors the harness raises on bad input. Each says what was wrong and how to fix it."""

from __future__ import annotations

import signal


def given(value: object) -> str:
    """``repr(value)`` for an error message, saying so when it is a string where a number or
    flag was wanted (TOML's "200" is text): every check words it the same way."""
    return f"{value!r} (a string: write it without quotes)" if isinstance(value, str) \
        else repr(value)


class WsfmBenchError(Exception):
    """Base class: the CLI prints these as one line, without a traceback, and exits
    ``exit_code`` (2: bad input)."""

    exit_code = 2


class ConfigError(WsfmBenchError, ValueError):
    """A suite, option or command-line value is invalid."""


class RegistryError(WsfmBenchError, LookupError):
    """A plugin name is unknown or registered twice."""


class RunDirError(WsfmBenchError):
    """A results directory is missing, not a run, or belongs to another suite."""


class SchemaError(RunDirError):
    """A results file (cell record or manifest) does not match the results schema."""


class RunFailed(WsfmBenchError):
    """A run stopped on a failure that is not bad input (a full disk, workers that keep
    dying): its manifest says "failed", what it recorded stays, and the CLI exits 1."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped the work. A KeyboardInterrupt, not an Exception, so
    no error handler on the way swallows it; the CLI prints it as one line and exits
    128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), the shell's convention."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        name = signal.Signals(self.signum).name
        return f"{name} (Ctrl-C)" if self.signum == signal.SIGINT else name
