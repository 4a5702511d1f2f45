"""What a certificate loses by using the anytime bound at the stopping point instead of a running maximum.

A live certificate (``CertifyStream``) is the anytime lower bound on pA at the n where the run stopped. A running
maximum of the bounds read after every batch would be slightly tighter, but batch boundaries follow the server's
load, so it would make the certificate depend on who else was sampling. This measures the price, on simulated vote
sequences (Bernoulli(pA) votes for c_A, no model): for each pA, ``--runs`` sequences of n = 100,000 votes, the radius
σΦ⁻¹(p_lower) at n with the bound at n alone, with the maximum over looks every 1,000 samples, and with the maximum
over a geometric schedule (×1.25) fixed in advance. Prints a Markdown table of the radius lost (mean and max).

    .venv/bin/python benchmarks/bench_stream_bound.py [--runs 40] [--sigma 0.5] [--alpha 0.001] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from rs_core.smoothing.bounds import radius_from_p_lower
from rs_core.smoothing.stats import anytime_lower_bound_complement

N = 100_000


def _radius(q: float, sigma: float) -> float:
    return radius_from_p_lower(1.0 - q, sigma, complement=q) if q < 0.5 else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    every = np.arange(1000, N + 1, 1000)
    geometric = np.array(sorted({int(np.ceil(1000 * 1.25 ** j)) for j in range(40) if 1000 * 1.25 ** j <= N} | {N}))
    print(f"Radius lost against a running maximum (n = {N:,}, σ = {args.sigma}, α = {args.alpha}, "
          f"{args.runs} simulated runs per pA)\n")
    print("| pA | radius at n (mean) | lost vs max every 1,000 (mean / max) | lost vs max on ×1.25 schedule "
          "(mean / max) |")
    print("|---|---|---|---|")
    for p_a in (0.9, 0.99, 0.999):
        at_n, lost_every, lost_geo = [], [], []
        for _ in range(args.runs):
            cum = np.cumsum(rng.random(N) < p_a)

            def q(ns: np.ndarray, cum: np.ndarray = cum) -> np.ndarray:
                return np.array([anytime_lower_bound_complement(int(cum[n - 1]), int(n), args.alpha) for n in ns])

            q_every, q_geo = q(every), q(geometric)
            r_final = _radius(q_every[-1], args.sigma)
            at_n.append(r_final)
            lost_every.append(_radius(q_every.min(), args.sigma) - r_final)
            lost_geo.append(_radius(q_geo.min(), args.sigma) - r_final)
        print(f"| {p_a} | {np.mean(at_n):.4f} | {np.mean(lost_every):.4f} / {np.max(lost_every):.4f} "
              f"| {np.mean(lost_geo):.4f} / {np.max(lost_geo):.4f} |")


if __name__ == "__main__":
    main()
