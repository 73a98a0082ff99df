"""Warm-Start Flow Matching: one flow-matching mechanism (path, source, start time, solver,
loss) that gives full FM at t0 = 0 with a noise source and WS-FM at t0 > 0 with a draft.

The core (paths, sources, schedule, solvers, loss, theory, advisor) needs only torch and the
standard library; ``wsfm.methods`` holds the benchmark's method plugins built on it."""
