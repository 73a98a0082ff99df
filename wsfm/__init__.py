"""Warm-Start Flow Matching: one flow-matching mechanism (path, source, start time, solver,
trainer) that gives full FM at t0 = 0 with a noise source and WS-FM at t0 > 0 with a draft."""
