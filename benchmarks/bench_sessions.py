"""Aggregate throughput of the app's scheduler with several sessions certifying at once, as a ratio to one alone.

Each "session" submits one CERTIFY job (shipped MNIST model, σ = 0.5, its own input and seed) to a
:class:`rs_core.smoothing.jobs.Scheduler`, as the app's pages do. Measured, interleaved round by round:

  1 session       one job of n samples: n / wall time;
  k sessions      k jobs of n samples submitted together: k·n / wall time from the first submission
                  to the last certificate (with the default cap of 4 running jobs, the fifth waits
                  in the queue and starts when a slot frees).

Prints a Markdown table of the median ratio (k sessions / 1 session) with its range over rounds.
The goal (issue 10): ≥ 0.8 with 5 sessions.

    python benchmarks/bench_sessions.py [--sessions 5] [--num 20000] [--rounds 5] [--max-running 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rs_core import CertifyStream
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint
from rs_core.smoothing.jobs import Scheduler


def _rate(scheduler: Scheduler, model, xs: list[torch.Tensor], n: int, batch: int, seed: int) -> float:
    streams = [scheduler.exclusive("cpu", lambda x=x, i=i: CertifyStream(model, x, 0.5, n0=100, n_max=n,
                                                                        batch_size=batch, seed=seed + i))
               for i, x in enumerate(xs)]
    t = time.perf_counter()
    jobs = [scheduler.submit(s) for s in streams]
    for job in jobs:
        assert job.wait() and job.error is None, job.error
    return len(xs) * (n + 100) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--num", type=int, default=20_000, help="estimation samples per job")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-running", type=int, default=4, help="the scheduler's cap (the app's default is 4)")
    args = ap.parse_args()
    model = load_checkpoint(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar", "cpu").model
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(1, 28, 28, generator=g) for _ in range(args.sessions)]
    scheduler = Scheduler(max_running=args.max_running)
    _rate(scheduler, model, xs[:1], 2000, args.batch, 0)  # warm-up
    ratios, solo_rates, many_rates = [], [], []
    for r in range(args.rounds):
        solo = _rate(scheduler, model, xs[:1], args.num, args.batch, 1000 * r)
        many = _rate(scheduler, model, xs, args.num, args.batch, 1000 * r + 100)
        solo_rates.append(solo)
        many_rates.append(many)
        ratios.append(many / solo)
    print(f"Scheduler, mnist_cnn, CPU ({torch.get_num_threads()} threads), n = {args.num:,} per job, "
          f"batch {args.batch}, cap {args.max_running}, {args.rounds} rounds")
    print()
    print("| sessions | samples/s (median) | ratio to 1 session (median, range) |")
    print("|---|---|---|")
    print(f"| 1 | {statistics.median(solo_rates):,.0f} | 1 |")
    print(f"| {args.sessions} | {statistics.median(many_rates):,.0f} | {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}–{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
