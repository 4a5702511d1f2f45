"""What a denoiser costs per sample: samples/s of rs_core.sample_counts with f∘D against f alone, in one run.

Random weights (the cost does not depend on them): the shipped architectures mnist_cnn + dncnn_mnist and
cifar_cnn + dncnn_cifar. f and f∘D run interleaved round by round; the ratio is taken within each round and the
median (range) over rounds is printed.

    python benchmarks/bench_denoise.py [--num 20000] [--batch 1000] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rs_core import sample_counts
from rs_core.models.architectures import get_architecture
from rs_core.models.denoisers import denoised


def _rate(model, x, num: int, batch: int, sigma: float) -> float:
    t = time.perf_counter()
    sample_counts(model, x, sigma, num, batch_size=batch, seed=0)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return num / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"sample_counts, {args.device} ({torch.get_num_threads()} threads), n = {args.num:,}, batch {args.batch}, "
          f"{args.rounds} rounds")
    print()
    print("| classifier | denoiser | f alone (samples/s) | f∘D (samples/s) | f∘D / f (median, range) |")
    print("|---|---|---|---|---|")
    for arch, den_arch, shape in [("mnist_cnn", "dncnn_mnist", (1, 28, 28)), ("cifar_cnn", "dncnn_cifar", (3, 32, 32))]:
        f = get_architecture(arch, 10).to(args.device).eval()
        d = get_architecture(den_arch).to(args.device).eval()
        g = denoised(f, d, shape)
        x = torch.rand(shape, device=args.device)
        _rate(f, x, 2000, args.batch, 0.5), _rate(g, x, 2000, args.batch, 0.5)  # warm-up
        plain, composed, ratios = [], [], []
        for _ in range(args.rounds):
            a, b = _rate(f, x, args.num, args.batch, 0.5), _rate(g, x, args.num, args.batch, 0.5)
            plain.append(a)
            composed.append(b)
            ratios.append(b / a)
        print(f"| {arch} | {den_arch} | {statistics.median(plain):,.0f} | {statistics.median(composed):,.0f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) |")


if __name__ == "__main__":
    main()
