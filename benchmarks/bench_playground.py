"""How long the Playground page's computations take on this machine: what a class waits for after each move.

For each preset: training its base classifier (once per server, cached), a σ change (the smoothed classifier on
the 61 × 61 grid, then CERTIFY at the point with n = 10,000 and the exact pA), and a point move (CERTIFY, exact pA
and the nearest boundary point; the grids are cached). Median of 5 repetitions, seconds.

    python benchmarks/bench_playground.py
"""

from __future__ import annotations

import statistics
import time

import torch

from rs_core.smoothing import playground as pg


def _time(fn, reps: int = 5) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    print(f"rs_core.smoothing.playground, CPU ({torch.get_num_threads()} threads), median of 5")
    print()
    print("| preset | train (once) | σ change | point move |")
    print("|---|---|---|---|")
    for preset in pg.PRESETS:
        pg.base_classifier.cache_clear()
        t = time.perf_counter()
        model = pg.base_classifier(preset)
        train = time.perf_counter() - t
        grid = pg.smoothed_grid(model, 0.5)

        def sigma_change(model=model):
            pg.certify_point(model, (0.5, 0.6), 0.75, n=10_000, alpha=0.001, seed=0)
            pg.smoothed_grid(model, 0.75)

        def point_move(model=model, grid=grid):
            pg.certify_point(model, (-1.0, 0.3), 0.5, n=10_000, alpha=0.001, seed=0)
            pg.nearest_boundary(model, (-1.0, 0.3), grid)

        print(f"| {preset} | {train:.2f} s | {_time(sigma_change):.2f} s | {_time(point_move):.2f} s |")


if __name__ == "__main__":
    main()
