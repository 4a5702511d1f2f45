"""Dual RS projected on training images (rs_core.dual.router.project): σ-estimators and confidence-routing rules
against each single σ, without running certify-dual. The projection turns each image's vote shares (the
estimator's under σ_e from --samples copies, each expert's for the true class from --label-n copies) into the radii
CERTIFY would give at N = 10,000 per stage, α = 0.001 split 0.5/0.5 — a selection heuristic, not certificates (the
shipped estimator of each data set is chosen by it; its certificates come from certify-dual on test images).

Rows: each --estimators file, then each --rules entry "τ_1,τ_2" (σ_1 if the largest σ's expert's confidence on the
noisy input is below τ_1, σ_2 from τ_1, σ_3 from τ_2; 1.01 means never). Cells: dual − best single σ.

    OMP_NUM_THREADS=2 RS_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/project_dual.py --dataset mnist \
        --estimators checkpoints/mnist/dual/sigma_estimator.pth.tar --rules 0,0 0,1.01 0,0.9 0,0.99 \
        [--max-train 2000] [--label-n 1000] [--samples 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rs_core.data import dataset_tensors, get_dataset
from rs_core.dual.router import RADII, expert_confidences, level_shares, project, survival, true_class_shares
from rs_core.models.checkpoints import load_checkpoint
from rs_core.smoothing.sampling import sample_counts_many

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
EXPERTS = {"mnist": "mnist/mnist_cnn", "cifar10-partial": "cifar10-partial/cifar_cnn"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=sorted(EXPERTS), required=True)
    ap.add_argument("--estimators", nargs="*", default=[])
    ap.add_argument("--rules", nargs="*", default=[], help='thresholds "τ_1,τ_2" on the σ = 1 expert\'s confidence')
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--label-n", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--sigma-e", type=float, default=1.0)
    args = ap.parse_args()

    sigmas = [0.25, 0.5, 1.0]
    experts = {s: load_checkpoint(CHECKPOINTS / EXPERTS[args.dataset] / f"noise_{s:.2f}" / "checkpoint.pth.tar").model
               for s in sigmas}
    xs, ys = dataset_tensors(get_dataset(args.dataset, "train"))
    xs, ys = xs[:args.max_train], ys[:args.max_train]
    # Seeds as train-sigma --router --seed 0 uses them, so its fit and these rows see the same draws.
    shares = true_class_shares(experts, xs, ys, args.label_n, seed=0)
    rows = []
    for path in args.estimators:
        est = load_checkpoint(path)
        votes = sample_counts_many(est.model, xs, args.sigma_e, args.samples, 1000, seed=5) / args.samples
        rows.append((f"`{path}`", project(votes, shares, sigmas, args.sigma_e)))
    if args.rules:
        conf = expert_confidences(experts[1.0], xs, args.sigma_e, args.samples, seed=0)
        for rule in args.rules:
            t = [float(v) for v in rule.split(",")]
            votes = level_shares(survival(conf, np.array(t)), (0, 1))
            rows.append((f"σ-rule {rule}", project(votes, shares, sigmas, args.sigma_e)))
    print(f"{args.dataset}: first {len(xs):,} training images, {args.label_n} samples per expert, {args.samples} "
          f"copies under σ_e = {args.sigma_e:g}; projected at N = 10,000 per stage, α = 0.001 (split 0.5/0.5)\n")
    radii = " | ".join(f"r = {r:g}" for r in RADII)
    print(f"| | {radii} | min | routed σ = 0.25 / 0.5 / 1 |")
    print("| --- " * (len(RADII) + 3) + "|")
    if rows:
        for s, curve in rows[0][1].single.items():
            print(f"| σ = {s} alone | " + " | ".join(f"{v:.3f}" for v in curve) + " | | |")
    for name, proj in rows:
        d = proj.difference
        print(f"| {name} | " + " | ".join(f"{v:+.3f}" for v in d) + f" | {d.min():+.3f} | "
              + " / ".join(f"{v:.2f}" for v in proj.routed_share) + " |")


if __name__ == "__main__":
    main()
