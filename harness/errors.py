"""Errors the harness raises on bad input. Each says what was wrong and how to fix it."""

from __future__ import annotations


class WsfmBenchError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(WsfmBenchError, ValueError):
    """A suite, option or command-line value is invalid."""


class RegistryError(WsfmBenchError, LookupError):
    """A plugin name is unknown or registered twice."""


class RunDirError(WsfmBenchError):
    """A results directory is missing, not a run, or belongs to another suite."""


class SchemaError(RunDirError):
    """A results file (cell record or manifest) does not match the results schema."""
