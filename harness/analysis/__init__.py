"""Analysis of stored results: statistics over seeds, the speed-up arithmetic, the cost model
and run-to-run comparison. Pure numpy/pandas/scipy: no model code, no torch."""
