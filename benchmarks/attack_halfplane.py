"""How far above the exact boundary distance the attack's finding lies, on the half-plane (g = f, exact distance D).

    python benchmarks/attack_halfplane.py [--seeds 10]

For each method (pgd, ddn, boundary) and setting (D, σ, n_predict), the mean and largest relative overshoot
(found − D) / D over the seeds, and how many seeds found the boundary at all. The README's figures come from this.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from rs_core.attacks import attack_smoothed
from rs_core.smoothing.playground import HalfPlane

SETTINGS = [(2.0, 0.1, 10_000), (1.0, 0.25, 1_000), (1.0, 0.25, 10_000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    f = HalfPlane(angle=0.6, offset=0.0)
    print("| method | D | σ | n_predict | found | mean overshoot | max overshoot |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in ("pgd", "ddn", "boundary"):
        for d, sigma, n in SETTINGS:
            x = (-d * f.w).float().view(1, 1, 2)
            over = []
            for seed in range(args.seeds):
                r = attack_smoothed(f, x, sigma, eps_max=1.5 * d, steps=100, n_predict=n, clip=None, seed=seed,
                                    method=method)
                if r.found:
                    over.append((r.distance - d) / d)
            mean = f"{100 * statistics.mean(over):.1f} %" if over else "–"
            top = f"{100 * max(over):.1f} %" if over else "–"
            print(f"| {method} | {d:g} | {sigma:g} | {n:,} | {len(over)}/{args.seeds} | {mean} | {top} |", flush=True)


if __name__ == "__main__":
    main()
