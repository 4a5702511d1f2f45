"""Samples per second of rs_core.sample_counts against two baselines, measured in one run.

(a) forward: a plain forward pass of the same model on a batch of the same size, no
    noise, no counting — the ceiling for any sampler;
(b) naive: the loop of Cohen et al.'s reference code (core.py: randn_like from the
    global RNG, per-batch copy of the predictions to the host, Python counting loop);
(c) rs_core: sample_counts (noise from a per-call generator on the device, on-device
    counting, one host sync at the end).

The three are interleaved round by round; each ratio is computed within a round (the
same few seconds of machine time) and the median over rounds is reported with its
range, so slow drift of a shared machine cancels out. Prints a Markdown table.

    python benchmarks/bench_sampling.py                      # ResNet-20, CPU
    python benchmarks/bench_sampling.py --device cuda --num 200000 --batch 4000
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from rs_core import sample_counts
from rs_core.models.architectures import cifar_resnet20, cifar_resnet110


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_only(model, x, num, batch, device):
    full = x.expand(batch, *x.shape).contiguous()
    done = 0
    with torch.inference_mode():
        while done < num:
            b = min(batch, num - done)
            model(full[:b]).argmax(1)
            done += b
    _sync(device)


def naive_reference_loop(model, x, num, batch, device, sigma=0.25, num_classes=10):
    """As in Cohen et al.'s ``Smooth._sample_noise`` (with their hard-coded .cuda() made device-generic)."""
    counts = np.zeros(num_classes, dtype=int)
    remaining = num
    with torch.no_grad():
        while remaining:
            this_batch = min(batch, remaining)
            remaining -= this_batch
            batch_t = x.repeat((this_batch, 1, 1, 1))
            noise = torch.randn_like(batch_t, device=device) * sigma
            predictions = model(batch_t + noise).argmax(1)
            for idx in predictions.cpu().numpy():
                counts[idx] += 1
    return counts


def ours(model, x, num, batch, device, sigma=0.25):
    return sample_counts(model, x, sigma, num, batch, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["cifar_resnet20", "cifar_resnet110"], default="cifar_resnet20")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num", type=int, default=4000, help="samples per method per round")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = {"cifar_resnet20": cifar_resnet20, "cifar_resnet110": cifar_resnet110}[args.arch]().to(device).eval()
    x = torch.rand(3, 32, 32, device=device)
    methods = {"forward only (a)": forward_only, "naive reference loop (b)": naive_reference_loop,
               "rs_core.sample_counts": ours}
    for fn in methods.values():  # warm-up: allocator, cuDNN autotuning, thread pools
        fn(model, x, args.batch, args.batch, device)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            _sync(device)
            t0 = time.perf_counter()
            fn(model, x, args.num, args.batch, device)
            _sync(device)
            times[name].append(time.perf_counter() - t0)

    rate = {name: args.num / statistics.median(ts) for name, ts in times.items()}
    base, naive = "forward only (a)", "naive reference loop (b)"

    def paired(name: str, ref: str) -> str:
        ratios = sorted(r / t for t, r in zip(times[name], times[ref]))  # time_ref / time_name
        return f"{statistics.median(ratios):.3f} ({ratios[0]:.3f}–{ratios[-1]:.3f})"

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.arch}, batch {args.batch}, {args.num} samples x {args.rounds} rounds, "
          f"{dev}, torch {torch.__version__}, Python {platform.python_version()}")
    print()
    print("| method | samples/s (median) | vs forward only: median (range) | vs naive loop: median (range) |")
    print("| --- | ---: | ---: | ---: |")
    for name in methods:
        print(f"| {name} | {rate[name]:,.0f} | {paired(name, base)} | {paired(name, naive)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": dev, "samples_per_s": rate,
                       "seconds": times}, f, indent=2)


if __name__ == "__main__":
    main()
