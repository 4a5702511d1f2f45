"""``python -m rs_core attack DATASET MODEL SIGMA OUTFILE``: attack the smoothed classifier on every --skip-th image.

For each image: the clean PREDICT of g, then the smallest ℓ2 perturbation the attack (rs_core.attacks) finds that
changes g's PREDICT to another class, up to --eps-max. One row per image (rs_core.logs.attack_logs), flushed, so a
stopped or killed run keeps its finished rows; rerunning the same command continues it, and under ``torchrun`` the
ranks share the images. All of this is the data-set machinery ``certify`` uses (rs_core.cli.main: resumable logs,
ranks, progress), handed in by ``main`` as :class:`Machinery`.

Image i attacks with seed ``example_seed(seed, i)`` (its attack noise and its PREDICTs derive from it,
rs_core.attacks), so a row depends on neither the run's other images nor the number of processes.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from rs_core.cli import args as A
from rs_core.cli import model as cli_model
from rs_core.data import DATASETS
from rs_core.logs.attack_logs import ATTACK_LOG_HEADER, format_row
from rs_core.logs.resumable import ResumableLogs
from rs_core.smoothing.noises import NOISES, NORMS
from rs_core.smoothing.seeding import example_seed

METHODS = ("auto", "pgd", "ddn", "boundary")  # rs_core.attacks.METHODS, spelled out: the parser must not import torch
ATTACK_IDENTITY = ("command", "dataset", "split", "skip", "sigma", "seed", "alpha", "n_predict", "eps_max", "steps",
                   "m", "method", "batch", "base_classifier.sha256", "base_classifier.normalize", "denoiser.sha256")
"""What a rerun must share with a log to continue it (the batch too: how noise is drawn in chunks may depend on it)."""


@dataclass(frozen=True)
class Machinery:
    """The data-set machinery of rs_core.cli.main that ``attack`` reuses (``certify``'s own functions)."""

    ranked: Callable  # args -> context manager of (rank, device)
    setup: Callable  # (args, device) -> (model, dataset, record)
    my_examples: Callable  # (args, dataset, rank, logs, per_group) -> (examples, total)
    bar: Callable  # (total, enabled, desc) -> tqdm


def add_parser(sub, add_examples: Callable[[argparse.ArgumentParser], None], overwrite_help: str) -> None:
    p = sub.add_parser("attack", help="attack the smoothed classifier on each example: the smallest ℓ2 perturbation "
                                      "found that changes its PREDICT (empirical robustness next to certify's)")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("base_classifier", help="model file, as for certify (checkpoint, .onnx, .pt2, .safetensors, "
                                           "state dict; see the model options)")
    p.add_argument("sigma", type=A.positive_float, help="noise level of the smoothed classifier")
    p.add_argument("outfile", help="tab-separated log to write (idx label predict adv_distance adv_predict time …)")
    add_examples(p)
    p.add_argument("--eps-max", type=A.positive_float, default=4.0,
                   help="largest ℓ2 perturbation searched; adv_distance is inf where none is found up to it")
    p.add_argument("--steps", type=A.count, default=100, help="optimisation steps (or queries) per image")
    p.add_argument("--m", type=A.count, default=32, help="noise draws per step for the soft smoothed classifier")
    p.add_argument("--method", choices=list(METHODS), default="auto",
                   help="auto: PGD when the model has gradients, else the gradient-free boundary search")
    p.add_argument("--alpha", type=A.probability, default=0.001, help="PREDICT's α at the clean and adversarial points")
    p.add_argument("--n-predict", type=A.count, default=1000, help="samples of each PREDICT")
    p.add_argument("--device", type=A.device, default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--seed", type=A.seed, default=0, help="example i attacks with seed + i")
    p.add_argument("--denoiser", default=None, help="attack f∘D for a denoiser checkpoint D (as certify --denoiser)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--download", action="store_true", help="fetch MNIST/CIFAR-10 into $RS_DATA_DIR if missing")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    # Gaussian ℓ2 by construction: --noise/--norm exist only to refuse another noise by name (main.check_noise_args).
    p.add_argument("--noise", choices=NOISES, default="gaussian", help="gaussian only: the attack is on the "
                   "Gaussian-smoothed classifier (certify logs of other noises are not paired with attack logs)")
    p.add_argument("--norm", choices=NORMS, default=None, help="l2 only: the attack's distances are ℓ2")
    # What certify's model setup reads but an attack does not offer: the plain fp32 path (gradients through it).
    p.set_defaults(autocast=None, channels_last=False, compile=False, N=None)
    cli_model.add_model_options(p)


def software() -> dict[str, str]:
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def run(args: argparse.Namespace, machinery: Machinery) -> int:
    from rs_core.attacks import attack_smoothed

    with machinery.ranked(args) as (rank, device):
        model, dataset, record = machinery.setup(args, device)
        record.pop("N", None)
        record.pop("N0", None)
        record.update({"alpha": args.alpha, "n_predict": args.n_predict, "eps_max": args.eps_max,
                       "steps": args.steps, "m": args.m, "method": args.method, "batch": args.batch,
                       "seed_rule": "example i: attack_smoothed(seed = seed + i)",
                       "attack": "a search on the soft smoothed classifier (mean softmax over m noise draws), the "
                                 "method column per row: pgd (PGD with a bisection on the budget), ddn (decoupled "
                                 "direction and norm) or boundary (gradient-free); every finding confirmed by PREDICT "
                                 "with fresh samples; rs_core.attacks.attack_smoothed",
                       "software": software()})
        logs = ResumableLogs({args.outfile: ATTACK_LOG_HEADER}, record, ATTACK_IDENTITY, rank,
                             overwrite=args.overwrite)
        examples, total = machinery.my_examples(args, dataset, rank, logs, 1)
        found = done = 0
        try:
            with machinery.bar(total, not args.no_progress and rank.is_main, "attack") as bar:
                for idx, x, label in examples:
                    start = time.perf_counter()
                    r = attack_smoothed(model, x.to(device), args.sigma, eps_max=args.eps_max, steps=args.steps,
                                        m=args.m, alpha=args.alpha, n_predict=args.n_predict,
                                        batch_size=args.batch, seed=example_seed(args.seed, idx), method=args.method)
                    seconds = datetime.timedelta(seconds=time.perf_counter() - start)
                    logs.write(args.outfile, format_row(idx, label, r.clean_prediction,
                                                        r.distance if r.found else float("inf"),
                                                        r.adv_prediction if r.found else None, seconds, r.method,
                                                        r.steps, args.eps_max, args.m))
                    done += 1
                    found += int(r.found)
                    bar.set_postfix_str(f"found {found}/{done}", refresh=False)
                    bar.update(1)
        except KeyboardInterrupt:
            logs.close()  # every finished row is already flushed
            print(f"\nstopped: {done} row(s) of this run kept in {args.outfile}; run the same command again to "
                  "continue", file=sys.stderr)
            return 130
        logs.finish()
    return 0


__all__ = ["ATTACK_IDENTITY", "Machinery", "add_parser", "run", "software"]
