"""Randomized smoothing itself: seeds, noise sampling, confidence bounds, radii, results, the smoothed
classifier (CERTIFY, PREDICT), live streams, adaptive certification, σ sweeps, the 2-D playground and the
server-wide job scheduler. Depends on :mod:`rs_core.models` for where a model runs; nothing here trains or
reads files."""
