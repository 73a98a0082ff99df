"""Running a suite: parse and expand it into cells, run each cell through one measurement
path (NFE counting, timing on the device clock, metrics, the bound check), wall-clock budgets,
pre-run advice, the machine description."""
