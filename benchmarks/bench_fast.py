"""The fast path's speed: samples/s of sampling (rs_core.sample_counts) with each fast-path setting against the plain
fp32 forward pass, for Cohen et al.'s CIFAR-10 ResNet-110 and ImageNet ResNet-50 (random weights: the speed does
not depend on them), in one run. Settings and plain run interleaved round by round; ratio per round, median.

    python benchmarks/bench_fast.py [--device cuda] [--num 20000] [--batch 1000] [--rounds 3] [--models resnet110 resnet50]
        [--settings bf16 channels_last …] [--json results.json]

On a GPU the issue's goal is ResNet-110 at N = 100,000 in ≤ 0.5 s per image (the printed "s per 100k" column).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from rs_core import sample_counts
from rs_core.models.architectures import get_architecture
from rs_core.smoothing.fast import FastPath

MODELS = {"resnet110": ("cifar_resnet110", (3, 32, 32), 10), "resnet50": ("resnet50", (3, 224, 224), 1000)}


def _rate(model, x, num: int, batch: int, autocast) -> float:
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    sample_counts(model, x, 0.25, num, batch_size=batch, seed=0, autocast=autocast)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return num / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--num", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--settings", nargs="+", default=["bf16", "channels_last", "bf16+channels_last", "compile",
                                                        "bf16+channels_last+compile"] +
                    (["fp16+channels_last"] if torch.cuda.is_available() else []))
    ap.add_argument("--json", help="also write the results to this file (each row as printed, with its per-round figures)")
    args = ap.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    print(f"sample_counts on {name}, n = {args.num:,} per measurement, batch {args.batch}, {args.rounds} rounds, "
          f"torch {torch.__version__}")
    print()
    print("| model | setting | samples/s | / plain fp32 (median, range) | s per 100k samples |")
    print("|---|---|---|---|---|")
    rows: list[dict] = []
    for key in args.models:
        arch, shape, classes = MODELS[key]
        torch.manual_seed(0)
        base = get_architecture(arch, classes).to(args.device).eval()
        x = torch.rand(shape, device=args.device)
        plain_rates = []
        for _ in range(args.rounds):
            plain_rates.append(_rate(base, x, args.num, args.batch, None))
        plain = statistics.median(plain_rates)
        print(f"| {key} | plain fp32 | {plain:,.0f} | 1.00 | {100_000 / plain:.2f} |", flush=True)
        rows.append({"model": key, "setting": "plain fp32", "samples_per_s": plain, "ratio": 1.0,
                     "ratio_min": 1.0, "ratio_max": 1.0, "s_per_100k": 100_000 / plain, "rates": plain_rates})
        for setting in args.settings:
            parts = set(setting.split("+"))
            fp = FastPath(autocast=next((p for p in parts if p in ("bf16", "fp16")), None),
                          channels_last="channels_last" in parts, compile="compile" in parts)
            model = fp.apply(copy.deepcopy(base))
            _rate(model, x, min(args.num, 4 * args.batch), args.batch, fp.autocast)  # warm-up / compile
            rates, ratios = [], []
            for _ in range(args.rounds):
                a = _rate(base, x, args.num, args.batch, None)
                b = _rate(model, x, args.num, args.batch, fp.autocast)
                rates.append(b)
                ratios.append(b / a)
            r = statistics.median(rates)
            print(f"| {key} | {setting} | {r:,.0f} | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}–{max(ratios):.2f}) | {100_000 / r:.2f} |", flush=True)
            rows.append({"model": key, "setting": setting, "samples_per_s": r, "ratio": statistics.median(ratios),
                         "ratio_min": min(ratios), "ratio_max": max(ratios), "s_per_100k": 100_000 / r,
                         "rates": rates, "ratios": ratios})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": name, "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
