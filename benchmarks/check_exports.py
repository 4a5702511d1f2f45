"""Do exported models certify like the PyTorch model? The shipped MNIST mnist_cnn σ = 0.50 classifier, exported by
rs_core.models.formats.export_model to ONNX (run by onnxruntime) and to .pt2 and loaded back with load_model, is certified
(rs_core.certify, n0 = 100, α = 0.001, σ = 0.5) on the first MNIST test images with the same seed as the PyTorch
model. The noise is drawn by torch in every case, so the counts should be equal, or differ by a few votes near the
decision boundary.

Per image and format: the class, whether the counts are equal and how many votes moved (½ Σ|Δcounts|, a lower
bound on the samples classified differently), the p-value of a χ² test of homogeneity of the two count vectors
(2 × K table restricted to the classes with votes; 1.0 when only one class has any), and the relative radius
difference |r − r_PyTorch| / r_PyTorch (0 when both abstain).

    OMP_NUM_THREADS=1 RS_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/check_exports.py [--n 100000] \
        [--images 5] [--seed 0] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import chi2_contingency

from rs_core import certify
from rs_core.data import get_dataset
from rs_core.models.formats import export_model, load_model

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
SIGMA, N0, ALPHA = 0.5, 100, 0.001


def homogeneity_p(a: np.ndarray, b: np.ndarray) -> float:
    """χ² test of homogeneity of two count vectors over the classes where either has votes."""
    table = np.stack([a, b])[:, (a + b) > 0]
    return 1.0 if table.shape[1] < 2 else float(chi2_contingency(table)[1])


def rel_diff(r: float, ref: float) -> float:
    if ref == 0.0:
        return 0.0 if r == 0.0 else float("inf")
    return abs(r - ref) / ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    entry = next(e for e in json.loads((CHECKPOINTS / "index.json").read_text())["checkpoints"]
                 if e["dataset"] == "mnist" and e["arch"] == "mnist_cnn" and e["sigma"] == SIGMA)
    data = get_dataset("mnist", "test")
    print(f"certify, cpu, mnist_cnn σ = {SIGMA} ({entry['path']}), n0 = {N0}, n = {args.n:,}, α = {ALPHA}, "
          f"seed {args.seed}, batch {args.batch}")
    print()
    print("| image | label | format | class (PyTorch / format) | counts equal | votes moved | χ² p | "
          "radius PyTorch | radius format | rel. radius diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok_radius = ok_p = True
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_model(CHECKPOINTS / entry["path"], device="cpu")
        exported = {fmt: load_model(export_model(ref, Path(tmp) / f"model.{fmt}"), device="cpu").model
                    for fmt in ("onnx", "pt2")}
        for i in range(args.images):
            x, label = data[i]
            base = certify(ref.model, x, SIGMA, N0, args.n, ALPHA, batch_size=args.batch, seed=args.seed)
            for fmt, model in exported.items():
                c = certify(model, x, SIGMA, N0, args.n, ALPHA, batch_size=args.batch, seed=args.seed)
                a, b = np.asarray(base.counts), np.asarray(c.counts)
                moved = int(np.abs(a - b).sum()) // 2
                p = homogeneity_p(a, b)
                d = rel_diff(c.radius, base.radius)
                ok_radius &= d <= 0.01
                ok_p &= p > 0.01
                print(f"| {i} | {label} | {fmt} | {base.prediction} / {c.prediction} | "
                      f"{'yes' if np.array_equal(a, b) else 'no'} | {moved:,} | {p:.3g} | {base.radius:.4f} | "
                      f"{c.radius:.4f} | {d:.2e} |")
    print()
    print(f"all radii within 1%: {'yes' if ok_radius else 'NO'}; all χ² p-values > 0.01: {'yes' if ok_p else 'NO'}")


if __name__ == "__main__":
    main()
