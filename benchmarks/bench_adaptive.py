"""Refilled batches in adaptive CERTIFY: samples/s when finished inputs' batch slots go to the next inputs at once,
against one input at a time (the same certificates: each input draws its own noise), in one run.

Inputs stop at very different times (a few hundred samples for easy ones, up to N-max for hard ones), so one input
at a time runs mostly small, half-empty batches. Also printed: fixed-N CERTIFY's rate on the same inputs, whose
batches are always full (the ceiling). The shipped MNIST σ = 0.5 model on MNIST test images (RS_DATA_DIR).

    python benchmarks/bench_adaptive.py [--images 40] [--batch 1000] [--n-max 20000] [--rounds 3] [--device cpu]
        [--fixed-n 10000] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from rs_core import Smooth
from rs_core.data import get_dataset
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint
from rs_core.smoothing.adaptive import RadiusCertifier

RADII = (0.25, 0.5, 0.75, 1.0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--n-max", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fixed-n", type=int, default=10_000,
                    help="N of the fixed-N CERTIFY ceiling (on the first 10 images, N0 = 100)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    model = load_checkpoint(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar", args.device).model
    data = get_dataset("mnist", "test")
    step = len(data) // args.images
    inputs = [(i, data[i][0], i) for i in range(0, step * args.images, step)]
    certifier = RadiusCertifier(model, 0.5, RADII, 100, args.n_max, 0.001, args.batch)
    smooth = Smooth(model, 0.5, args.batch)

    fill: dict[bool, float] = {}

    def adaptive(refill: bool) -> tuple[float, dict]:
        certifier.batches_run = certifier.samples_run = 0
        t = time.perf_counter()
        out = dict(certifier.certify_stream(inputs, refill=refill))
        _sync(args.device)
        fill[refill] = certifier.samples_run / (certifier.batches_run * args.batch)
        return time.perf_counter() - t, out

    def fixed() -> float:
        t = time.perf_counter()
        for i, x, _ in inputs[:10]:
            smooth.certify(x, 100, args.fixed_n, 0.001, seed=i)
        _sync(args.device)
        return len(inputs[:10]) * (100 + args.fixed_n) / (time.perf_counter() - t)

    adaptive(True)  # warm-up (and the bound cache)
    rates_on, rates_off, ratios, rates_fixed = [], [], [], []
    samples = None
    for _ in range(args.rounds):
        t_on, on = adaptive(True)
        t_off, off = adaptive(False)
        assert all(np.array_equal(on[k].counts, off[k].counts) for k in on)  # the same certificates
        samples = sum(c.samples for c in on.values())
        rates_on.append(samples / t_on)
        rates_off.append(samples / t_off)
        ratios.append(t_off / t_on)
        rates_fixed.append(fixed())
    print(f"adaptive CERTIFY, {args.device} ({torch.get_num_threads()} threads), {args.images} MNIST test images, "
          f"σ = 0.5, radii {RADII}, N-max {args.n_max:,}, batch {args.batch}, {args.rounds} rounds; "
          f"{samples:,} samples in all ({samples / args.images:,.0f} per image)")
    print()
    print("| | refilled | one at a time |")
    print("|---|---|---|")
    print(f"| mean batch fill | {fill[True]:.1%} | {fill[False]:.1%} |")
    print(f"| samples/s | {statistics.median(rates_on):,.0f} | {statistics.median(rates_off):,.0f} |")
    print(f"| refilled / one at a time (median, range) | {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}–{max(ratios):.2f}) | |")
    print(f"| fixed-N CERTIFY on the same images, full batches (samples/s) | {statistics.median(rates_fixed):,.0f} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": args.device, "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "radii": RADII, "samples": samples,
                       "fill_refilled": fill[True], "fill_one_at_a_time": fill[False],
                       "samples_per_s_refilled": statistics.median(rates_on),
                       "samples_per_s_one_at_a_time": statistics.median(rates_off),
                       "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                       "samples_per_s_fixed": statistics.median(rates_fixed),
                       "rates_refilled": rates_on, "rates_one_at_a_time": rates_off, "ratios": ratios,
                       "rates_fixed": rates_fixed}, f, indent=2)


if __name__ == "__main__":
    main()
