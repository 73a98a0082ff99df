"""wsfm-bench harness: registry, suites, runner, records and reports."""

__version__ = "0.1.0"
