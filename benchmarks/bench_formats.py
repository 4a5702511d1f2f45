"""What a model format costs per sample: samples/s of rs_core.sample_counts with the PyTorch model against the same
model exported by rs_core.models.formats.export_model to ONNX (run by onnxruntime) and to a torch.export program (.pt2),
each loaded back with rs_core.models.formats.load_model, in one run.

Models: the shipped MNIST mnist_cnn σ = 0.50 classifier, the shipped partial CIFAR-10 cifar_cnn classifier (σ = 0.25)
and a random-weights torchvision ResNet-18 (10 classes, 3×224×224; saved as .safetensors and loaded with
arch="torchvision:resnet18"). The three formats run interleaved round by round; the ratios are taken within each
round and the median (range) over rounds is printed. ``--threads`` sets torch's threads before anything is loaded;
onnxruntime sessions made by load_model use as many intra-op threads as torch (so both run on the same cores).

    RS_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_formats.py --threads 2 \
        [--num 20000] [--num-big 512] [--batch 1000] [--batch-big 64] [--rounds 3] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from rs_core import sample_counts
from rs_core.models.formats import export_model, load_model

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def _shipped(dataset: str, arch: str, sigma: float) -> Path:
    """The shipped classifier for (dataset prefix, arch): the one at ``sigma``, else the first listed."""
    entries = [e for e in json.loads((CHECKPOINTS / "index.json").read_text())["checkpoints"]
               if e["dataset"].startswith(dataset) and e["arch"] == arch and e.get("kind") != "denoiser"]
    if not entries:
        raise SystemExit(f"no shipped {dataset} {arch} classifier in checkpoints/index.json")
    return CHECKPOINTS / next((e for e in entries if e["sigma"] == sigma), entries[0])["path"]


def _rate(model: nn.Module, x: torch.Tensor, num: int, batch: int, sigma: float) -> float:
    t = time.perf_counter()
    sample_counts(model, x, sigma, num, batch_size=batch, seed=0)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return num / (time.perf_counter() - t)


def _fmt(rates: list[float]) -> str:
    return f"{statistics.median(rates):.3f} ({min(rates):.3f}–{max(rates):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=20_000, help="samples per timing, small models")
    ap.add_argument("--num-big", type=int, default=512, help="samples per timing, ResNet-18")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--batch-big", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (onnxruntime follows it)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"sample_counts, {args.device} ({torch.get_num_threads()} threads, torch and onnxruntime), "
          f"n = {args.num:,} (ResNet-18: {args.num_big:,}), batch {args.batch} (ResNet-18: {args.batch_big}), "
          f"{args.rounds} rounds, σ = 0.5")
    print()
    print("| model | PyTorch samples/s | ONNX samples/s | ONNX / PyTorch (median, range) | .pt2 / PyTorch |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tv = Path(tmp) / "resnet18.safetensors"
        import torchvision
        from safetensors.torch import save_file

        save_file(torchvision.models.resnet18(num_classes=10).state_dict(), str(tv))
        models = [("MNIST mnist_cnn σ=0.50", _shipped("mnist", "mnist_cnn", 0.5), {}, args.num, args.batch),
                  ("CIFAR-10 (partial) cifar_cnn σ=0.25", _shipped("cifar10", "cifar_cnn", 0.25), {}, args.num,
                   args.batch),
                  ("ResNet-18 (random, 3×224×224)", tv, {"arch": "torchvision:resnet18"}, args.num_big,
                   args.batch_big)]
        for label, path, kw, num, batch in models:
            ref = load_model(path, device=args.device, **kw)
            out = Path(tmp) / path.stem
            onnx = load_model(export_model(ref, out.with_suffix(".onnx")), device=args.device).model
            pt2 = load_model(export_model(ref, out.with_suffix(".pt2")), device=args.device).model
            pt = ref.model.to(args.device)  # export_model moved it to the CPU
            x = torch.rand(ref.input_shape, device=args.device)
            for m in (pt, onnx, pt2):  # warm-up
                _rate(m, x, min(num, 2 * batch), batch, 0.5)
            rates: dict[str, list[float]] = {"pt": [], "onnx": [], "pt2": []}
            for _ in range(args.rounds):
                for key, m in (("pt", pt), ("onnx", onnx), ("pt2", pt2)):
                    rates[key].append(_rate(m, x, num, batch, 0.5))
            r_onnx = [o / p for o, p in zip(rates["onnx"], rates["pt"])]
            r_pt2 = [o / p for o, p in zip(rates["pt2"], rates["pt"])]
            print(f"| {label} | {statistics.median(rates['pt']):,.0f} | {statistics.median(rates['onnx']):,.0f} | "
                  f"{_fmt(r_onnx)} | {_fmt(r_pt2)} |")


if __name__ == "__main__":
    main()
