"""Records: a run folder (manifest, one JSON per cell, samples, records.csv), the results
schema it follows, and the atomic writes that keep it whole. No torch: reports read it."""
