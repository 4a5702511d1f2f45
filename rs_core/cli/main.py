"""Command line: ``python -m rs_core {train,train-denoiser,certify,certify-image,export,predict,analyze,index,
train-sigma,certify-dual} …``.

``certify`` and ``predict`` take the same arguments and write the same
tab-separated logs as Cohen et al.'s reference scripts, so logs and analysis
scripts interoperate both ways.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

from rs_core.cli import args as A
from rs_core.cli import attack as cli_attack
from rs_core.cli import model as cli_model
from rs_core.data import DATASETS
from rs_core.logs.certify_logs import CERTIFY_HEADER, PREDICT_HEADER
from rs_core.logs.resumable import ResumableLogs
from rs_core.rounding import floor_str
from rs_core.smoothing.noises import NOISES, NORMS
from rs_core.smoothing.seeding import example_seed


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a base classifier with Gaussian noise augmentation")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--arch", required=True)
    p.add_argument("--sigma", type=A.nonnegative_float, required=True,
                   help="noise level, the same as at certification; 0 trains a clean (noise-free) classifier")
    p.add_argument("--epochs", type=A.count, required=True)
    p.add_argument("--out", required=True, help="checkpoint path, e.g. checkpoints/mnist/mnist_cnn/noise_0.25/checkpoint.pth.tar")
    p.add_argument("--batch", type=A.count, default=128)
    p.add_argument("--lr", type=A.positive_float, default=0.1)
    p.add_argument("--momentum", type=A.nonnegative_float, default=0.9)
    p.add_argument("--weight-decay", type=A.nonnegative_float, default=5e-4)
    p.add_argument("--schedule", choices=["cosine", "step"], default="cosine")
    p.add_argument("--augment", action="store_true", help="random crop and flip (CIFAR)")
    p.add_argument("--noise", choices=["gaussian", "laplace", "uniform"], default="gaussian",
                   help="the noise of standard deviation --sigma the model is trained under; certify with the same "
                        "(default gaussian)")
    p.add_argument("--consistency", type=A.nonnegative_float, default=0.0,
                   help="λ of consistency regularization (0 = off); > 0 selects --objective consistency")
    p.add_argument("--objective", choices=["gaussian", "consistency", "smoothadv", "macer"], default="gaussian",
                   help="training loss: Gaussian augmentation, consistency (Jeong & Shin 2020), SmoothAdv (Salman "
                        "et al. 2019) or MACER (Zhai et al. 2020)")
    p.add_argument("--smoothadv-m", type=A.count, default=2, help="SmoothAdv: noise draws per image (default 2)")
    p.add_argument("--smoothadv-eps", type=A.positive_float, default=1.0, help="SmoothAdv: ℓ2 budget ε (default 1.0)")
    p.add_argument("--smoothadv-steps", type=A.count, default=1, help="SmoothAdv: PGD steps (default 1)")
    p.add_argument("--smoothadv-warmup", type=A.count, default=10,
                   help="SmoothAdv: epochs over which ε grows linearly to its value (default 10; 1 = none)")
    p.add_argument("--macer-k", type=A.count, default=16, help="MACER: noise draws per image (default 16)")
    p.add_argument("--macer-lambda", type=A.nonnegative_float, default=16.0,
                   help="MACER: weight λ of the radius term (default 16)")
    p.add_argument("--macer-gamma", type=A.positive_float, default=8.0, help="MACER: hinge γ (default 8)")
    p.add_argument("--macer-beta", type=A.positive_float, default=16.0,
                   help="MACER: inverse temperature β of the logits in the radius term (default 16)")
    p.add_argument("--macer-deferred", type=A.count0, default=0,
                   help="MACER: first epochs with λ = 0 (cross-entropy of the smoothed classifier alone) before the "
                        "radius term starts (default 0; from scratch MACER can collapse to one class without it)")
    p.add_argument("--max-train", type=A.count, default=None, help="use only the first N training images")
    p.add_argument("--max-eval", type=A.count, default=2000,
                   help="training and test images scored after each epoch (default 2000)")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--device", type=A.device, default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--download", action="store_true", help="fetch MNIST/CIFAR-10 into $RS_DATA_DIR if missing")


def _train(args) -> int:
    from rs_core.training.classifier import Recipe, train

    recipe = Recipe(dataset=args.dataset, arch=args.arch, sigma=args.sigma, epochs=args.epochs,
                    batch_size=args.batch, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                    schedule=args.schedule, seed=args.seed, augment=args.augment, noise=args.noise,
                    consistency=args.consistency, max_train=args.max_train, max_eval=args.max_eval,
                    objective=args.objective, smoothadv_m=args.smoothadv_m, smoothadv_eps=args.smoothadv_eps,
                    smoothadv_steps=args.smoothadv_steps, smoothadv_warmup=args.smoothadv_warmup,
                    macer_k=args.macer_k, macer_lambda=args.macer_lambda, macer_gamma=args.macer_gamma,
                    macer_beta=args.macer_beta, macer_deferred=args.macer_deferred)
    meta = train(recipe, args.out, device=args.device, resume=args.resume, progress=not args.no_progress,
                 download=args.download)
    print(f"wrote {args.out}: test accuracy clean {meta['accuracy']['test_clean']:.4f}, "
          f"noisy {meta['accuracy']['test_noisy']:.4f}, {meta['train_seconds']:.0f}s")
    return 0


def _add_train_denoiser(sub) -> None:
    p = sub.add_parser("train-denoiser", help="train a denoiser for denoised smoothing (Salman et al. 2020)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--sigma", type=A.positive_float, required=True, help="the noise level it denoises")
    p.add_argument("--objective", choices=["mse", "stability"], required=True,
                   help="mse: ‖D(x+ε) − x‖²; stability: cross-entropy of f(D(x+ε)) against f(x) (needs --classifier)")
    p.add_argument("--classifier", default=None, help="the frozen classifier f of the stability objective")
    p.add_argument("--epochs", type=A.count, required=True)
    p.add_argument("--out", required=True,
                   help="e.g. checkpoints/mnist/denoisers/dncnn_mnist/noise_0.50/checkpoint.pth.tar")
    p.add_argument("--arch", choices=["dncnn_mnist", "dncnn_cifar"], default=None, help="default: by channels")
    p.add_argument("--batch", type=A.count, default=128)
    p.add_argument("--lr", type=A.positive_float, default=1e-3)
    p.add_argument("--max-train", type=A.count, default=None, help="use only the first N training images")
    p.add_argument("--max-eval", type=A.count, default=1000, help="test images scored after each epoch (default 1000)")
    p.add_argument("--init", default=None, help="start from this denoiser's weights (e.g. stability after MSE, "
                   "Salman et al.'s best recipe)")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--device", type=A.device, default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--no-progress", action="store_true")


def _train_denoiser(args) -> int:
    from rs_core.training.denoiser import DenoiserRecipe, train_denoiser

    recipe = DenoiserRecipe(dataset=args.dataset, sigma=args.sigma, objective=args.objective, epochs=args.epochs,
                            arch=args.arch or "", batch_size=args.batch, lr=args.lr, seed=args.seed,
                            classifier=args.classifier, max_train=args.max_train, max_eval=args.max_eval,
                            init=args.init)
    meta = train_denoiser(recipe, args.out, device=args.device, resume=args.resume, progress=not args.no_progress)
    t = meta["test"]
    print(f"wrote {args.out}: test MSE per pixel {t['mse_noisy']:.5f} noisy → {t['mse_denoised']:.5f} denoised"
          + ("" if t["classifier_agreement"] is None else f", f agrees {t['classifier_agreement']:.4f}")
          + f", {meta['train_seconds']:.0f}s")
    return 0


def _add_train_sigma(sub) -> None:
    p = sub.add_parser("train-sigma", help="train the σ-estimator of dual randomized smoothing")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--experts", nargs="+", required=True, help="one base classifier checkpoint per σ (its σ is read "
                   "from the file's metadata)")
    p.add_argument("--sigma-e", type=A.positive_float, required=True, help="the estimator's own noise level (≥ the largest σ)")
    p.add_argument("--out", required=True, help="estimator checkpoint to write, e.g. checkpoints/mnist/dual/"
                   "sigma_estimator.pth.tar")
    p.add_argument("--arch", default=None, help="estimator architecture (default: the experts')")
    p.add_argument("--label-n", type=A.count, default=100, help="samples per expert and image for the labels")
    p.add_argument("--max-train", type=A.count, default=None, help="use only the first N training images")
    p.add_argument("--cache", default=None, help="label cache folder (default: next to --out); resumes from it")
    p.add_argument("--epochs", type=A.count, default=10)
    p.add_argument("--batch", type=A.count, default=128)
    p.add_argument("--lr", type=A.positive_float, default=0.05)
    p.add_argument("--temperature", type=A.positive_float, default=1.0, help="soft labels = softmax(radii / temperature)")
    p.add_argument("--consistency", type=A.nonnegative_float, default=0.0,
                   help="weight λ of consistency regularization (Jeong & Shin 2020) over --copies noisy copies; 0: off")
    p.add_argument("--copies", type=A.count, default=2, help="noisy copies per input for --consistency")
    p.add_argument("--hard-labels", action="store_true",
                   help="one-hot labels for the σ with the largest (capped) radius, ties to the smallest σ")
    p.add_argument("--rounds", type=int, choices=range(11), default=0, metavar="K",
                   help="Sun et al.'s iterative scheme: K rounds of (route the training inputs with the estimator, "
                        "fine-tune each expert on its inputs, relabel, retrain the estimator); fine-tuned experts are "
                        "written next to --out (experts_round<k>/) and the estimator names them")
    p.add_argument("--finetune-epochs", type=A.count, default=1, help="epochs of each expert's fine-tuning per round")
    p.add_argument("--finetune-lr", type=A.positive_float, default=0.01)
    p.add_argument("--label-cap", default=None, type=A.radius_or_auto,
                   help="clip every label radius at this value, or 'auto': the smallest σ's ceiling at --label-n "
                        "(so perfectly classified inputs are not all labelled for the largest σ)")
    p.add_argument("--router", choices=["confidence"], default=None,
                   help="instead of training a network: route by the largest σ's expert's confidence on the noisy "
                        "input, thresholds fitted on the training images (rs_core.dual.router); --label-n samples per "
                        "expert and image, default 2,000 images")
    p.add_argument("--router-samples", type=A.count, default=200,
                   help="--router: noisy copies per image for the router's vote shares under σ_e")
    p.add_argument("--fit-N", type=A.count, default=10_000, help="--router: the N per stage certify-dual will use")
    p.add_argument("--fit-alpha", type=A.probability, default=0.001, help="--router: the α certify-dual will use")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--device", type=A.device, default="cpu")
    p.add_argument("--no-progress", action="store_true")


def _train_sigma(args) -> int:
    """train-sigma: check the options, load the experts and the training images, make the σ-estimator
    (:mod:`rs_core.dual.rounds`) and say what was written."""
    from rs_core.data import dataset_tensors, get_dataset
    from rs_core.dual.rounds import fit_confidence_router, train_estimator
    from rs_core.models.checkpoints import load_checkpoint

    if args.router:  # before anything is loaded
        for flag, value, default in (("--consistency", args.consistency, 0.0), ("--rounds", args.rounds, 0),
                                     ("--hard-labels", args.hard_labels, False), ("--label-cap", args.label_cap, None),
                                     ("--arch", args.arch, None)):
            if value != default:
                raise ValueError(f"{flag.lstrip('-').replace('-', '_')}: does not apply to --router (nothing is "
                                 "trained)")
    experts, paths, archs = {}, {}, {}
    for path in args.experts:
        loaded = load_checkpoint(path, args.device, dataset=args.dataset)
        if loaded.sigma is None:
            raise ValueError(f"experts: {path} does not record its σ in its metadata")
        if loaded.sigma in experts:
            raise ValueError(f"experts: two experts for σ = {loaded.sigma}")
        experts[loaded.sigma], paths[loaded.sigma], archs[loaded.sigma] = loaded.model, path, loaded.arch
    arch = args.arch or archs[max(archs)]
    # A router is fitted on 2,000 training images unless --max-train says otherwise; a network on all of them.
    xs, ys = dataset_tensors(get_dataset(args.dataset, "train"), args.max_train or (2000 if args.router else None))
    common = {"out": args.out, "dataset": args.dataset, "sigma_e": args.sigma_e, "arch": arch,
              "label_n": args.label_n, "seed": args.seed, "progress": not args.no_progress}
    if args.router:
        written = fit_confidence_router(experts, paths, xs, ys, samples=args.router_samples, fit_n=args.fit_N,
                                        fit_alpha=args.fit_alpha, **common)
        thresholds = ", ".join(f"{t:.4f}" for t in written.fit.thresholds[1:])
        print(f"wrote {args.out}: thresholds {thresholds}; projected min over radii of dual − best single σ "
              f"{written.fit.objective:+.3f} (training images, not a certificate)")
        return 0
    written = train_estimator(experts, paths, xs, ys, cache=args.cache, epochs=args.epochs, batch_size=args.batch,
                              lr=args.lr, temperature=args.temperature, consistency=args.consistency,
                              copies=args.copies, hard_labels=args.hard_labels, label_cap=args.label_cap,
                              rounds=args.rounds, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                              device=args.device, **common)
    summary = written.meta["training"]
    shares = ", ".join(f"σ = {s:g}: {v:.2f}" for s, v in zip(sorted(written.expert_paths),
                                                             summary["best_sigma_share"], strict=True))
    print(f"wrote {args.out}: best-σ shares {shares}; final loss {summary['final_loss']:.4f}")
    return 0


def _add_examples(p) -> None:
    """Which examples of the data set a data-set command runs on, and in batches of what size (Cohen et al.'s flags)."""
    p.add_argument("--batch", type=A.count, default=1000, help="batch size")
    p.add_argument("--skip", type=A.count, default=1, help="how many examples to skip")
    p.add_argument("--max", "--max-examples", dest="max", type=A.limit, default=-1,
                   help="stop before this example index (Cohen et al.'s --max); under torchrun write --max-examples: "
                        "torchrun reads --max as its own --max-restarts")
    p.add_argument("--split", choices=["train", "test"], default="test", help="train or test set")


def _add_certify_dual(sub) -> None:
    p = sub.add_parser("certify-dual", help="dual randomized smoothing CERTIFY of each example; Cohen et al.'s log "
                       "format (plus OUTFILE.dual.tsv with both stages)")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("estimator", help="σ-estimator checkpoint (train-sigma); its experts are read from it")
    p.add_argument("outfile", help="tab-separated log to write")
    _add_examples(p)
    p.add_argument("--N0", type=A.count, default=100, help="selection samples per stage")
    p.add_argument("--N", type=A.count, default=10_000, help="estimation samples per stage")
    p.add_argument("--alpha", type=A.probability, default=0.001, help="total failure probability of both stages")
    p.add_argument("--alpha-split", type=A.probability, default=0.5, help="share of α spent on the σ stage")
    p.add_argument("--device", type=A.device, default=None, help="cpu, cuda, … (default: the best available)")
    p.add_argument("--seed", type=A.seed, default=0, help="example i uses seed + i")
    p.add_argument("--denoisers", nargs="+", default=[], metavar="CKPT",
                   help="denoised smoothing for the experts: each denoiser goes in front of the expert of the σ it "
                        "was trained for (OUTFILE.meta.json records them)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--no-progress", action="store_true")
    add_gaussian_only(p)


def add_gaussian_only(p: argparse.ArgumentParser) -> None:
    """``--noise``/``--norm`` on a command that is Gaussian ℓ2 by construction (certify-dual, attack): accepted
    only as gaussian/l2, so that ``--noise laplace`` is refused by name (:func:`check_noise_args`) instead of the
    command running Gaussian noise behind the user's back."""
    p.add_argument("--noise", choices=NOISES, default="gaussian",
                   help=f"gaussian only: {p.prog.split()[-1]} is Gaussian ℓ2 by construction")
    p.add_argument("--norm", choices=NORMS, default=None, help="l2 only (the norm Gaussian noise certifies natively)")


GAUSSIAN_ONLY = {
    "certify-dual": "dual randomized smoothing's σ-estimator and experts and its certificate are Gaussian",
    "attack": "it searches the Gaussian-smoothed classifier for the smallest ℓ2 perturbation",
}
"""The commands that take no other noise or norm, and why (issue 30)."""


def check_noise_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, as a usage error (exit status 2) naming the option, a ``--noise``/``--norm`` the command cannot run:
    another noise on a Gaussian-only command (:data:`GAUSSIAN_ONLY`), adaptive CERTIFY (``--radii``, Gaussian ℓ2
    only) with another noise or norm, and a norm the noise does not certify (Laplace: ℓ1; uniform: ℓ1, ℓ∞)."""
    from rs_core.smoothing.noises import check_noise_norm

    noise = getattr(args, "noise", None)
    if noise is None or args.command == "train":
        return
    norm = getattr(args, "norm", None)
    given = f"--noise {noise}" + (f" --norm {norm}" if norm else "")
    if args.command in GAUSSIAN_ONLY and (noise, norm or "l2") != ("gaussian", "l2"):
        option = "--noise" if noise != "gaussian" else "--norm"
        parser.error(f"argument {option}: {args.command} is Gaussian ℓ2 only ({GAUSSIAN_ONLY[args.command]}); "
                     f"got {given}")
    if norm is not None:
        try:
            check_noise_norm(noise, norm)
        except ValueError as err:
            parser.error(f"argument --norm: {str(err).removeprefix('norm: ')}")
    if getattr(args, "radii", None) is not None and (noise, norm or "l2") != ("gaussian", "l2"):
        parser.error(f"argument --radii: adaptive CERTIFY is Gaussian ℓ2 only; got {given} (drop --radii for "
                     "fixed-N CERTIFY with this noise)")


DUAL_IDENTITY = ("command", "dataset", "split", "skip", "N0", "N", "alpha", "alpha_split", "seed",
                 "estimator.sha256", "experts", "denoisers")
DUAL_SIDE_HEADER = ["idx", "label", "predict", "radius", "sigma", "radius_sigma", "radius_class", "limited_by"]


def _certify_dual(args) -> int:
    import datetime
    import time

    from rs_core.data import dataset_info, get_dataset
    from rs_core.dual.estimator import load_dual
    from rs_core.dual.smooth import certify_dual

    with _ranked(args) as (rank, device):
        est, experts = load_dual(args.estimator, str(device))
        if est.meta.get("dataset") not in (None, args.dataset):
            raise ValueError(f"estimator: trained for {est.meta['dataset']}, not {args.dataset}")
        dataset = get_dataset(args.dataset, args.split)
        models = {s: m.model for s, m in experts.items()}
        record = {"command": "certify-dual", "dataset": args.dataset, "split": args.split,
                  "estimator": {"file": Path(args.estimator).name, "sha256": est.sha256,
                                "sigma_e": est.meta["sigma_e"]},
                  "experts": [{"sigma": s, "file": Path(m.path).name, "sha256": m.sha256}
                              for s, m in sorted(experts.items())],
                  "N0": args.N0, "N": args.N, "alpha": args.alpha, "alpha_split": args.alpha_split,
                  "seed": args.seed, "skip": args.skip, "denoisers": []}
        if args.denoisers:
            from rs_core.models.denoisers import denoise_experts, load_denoiser

            models, record["denoisers"] = denoise_experts(
                models, [load_denoiser(d, device) for d in args.denoisers], dataset_info(args.dataset).input_shape)
        out = Path(args.outfile)
        side = out.with_name(out.name + ".dual.tsv")
        logs = ResumableLogs({out: CERTIFY_HEADER, side: DUAL_SIDE_HEADER}, record, DUAL_IDENTITY, rank,
                             overwrite=args.overwrite)
        examples, total = _my_examples(args, dataset, rank, logs, 1)
        with _bar(total, not args.no_progress and rank.is_main, "certify-dual") as bar:
            for i, x, label in examples:
                start = time.perf_counter()
                c = certify_dual(est.model, models, x, float(est.meta["sigma_e"]), args.N0, args.N, args.alpha,
                                 args.batch, alpha_split=args.alpha_split, seed=example_seed(args.seed, i))
                elapsed = str(datetime.timedelta(seconds=time.perf_counter() - start))
                correct = int(c.prediction == label and not c.abstained)
                logs.write(out, [i, label, c.prediction, floor_str(c.radius), correct, elapsed])
                logs.write(side, [i, label, c.prediction, floor_str(c.radius),
                                  c.sigma if c.sigma is not None else "", floor_str(c.radius_sigma),
                                  floor_str(c.radius_class), c.limited_by])
                bar.update(1)
        logs.finish()
    return 0


OVERWRITE_HELP = ("start over; by default a rerun continues OUTFILE, skipping the examples it has (and refuses a log "
                  "made with other settings)")


def _add_sampling(p, certify: bool) -> None:
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("base_classifier", help="model file: a checkpoint (ours or Cohen et al.'s), .onnx, .pt2, "
                                           ".safetensors or a state dict (see the model options)")
    p.add_argument("sigma", type=A.positive_float, help="noise level")
    p.add_argument("outfile", help="tab-separated log to write")
    _add_examples(p)
    if certify:
        p.add_argument("--N0", type=A.count, default=100)
        p.add_argument("--radii", nargs="+", type=A.positive_float, default=None, metavar="R",
                       help="adaptive CERTIFY: decide per example the largest of these radii it certifies, sampling "
                            "only until that is decided (anytime-valid bound), at most --N-max samples; writes "
                            "OUTFILE.radii.tsv with the samples used")
        p.add_argument("--N-max", type=A.count, default=None,
                       help="with --radii: the most estimation samples per example (default: --N)")
    p.add_argument("--N", type=A.count, default=100_000, help="number of samples to use")
    p.add_argument("--alpha", type=A.probability, default=0.001, help="failure probability")
    p.add_argument("--noise", choices=NOISES, default="gaussian",
                   help="the smoothing noise, sigma its standard deviation per coordinate: gaussian (default), "
                        "laplace (scale σ/√2) or uniform (on [−σ√3, σ√3]); use the noise the model was trained with")
    if certify:
        p.add_argument("--norm", choices=NORMS, default=None,
                       help="the norm of the certified radius, one the noise certifies: gaussian l2 (default), l1 "
                            "(the l2 radius) or linf (l2 radius/√d); laplace l1; uniform l1 (default) or linf")
    p.add_argument("--device", type=A.device, default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--seed", type=A.seed, default=0,
                   help="example i uses seed + i, also when examples share a batch (N0 + N <= batch / 2): a row "
                        "does not depend on --batch")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--download", action="store_true", help="fetch MNIST/CIFAR-10 into $RS_DATA_DIR if missing")
    p.add_argument("--denoiser", default=None,
                   help="denoised smoothing: a denoiser checkpoint D (train-denoiser); the base classifier becomes "
                        "f∘D, and OUTFILE.meta.json records both files' sha256 and D's σ")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--autocast", choices=["bf16", "fp16"], default=None,
                   help="fast path: forward pass under torch.autocast (the noise stays float32; recorded)")
    p.add_argument("--channels-last", action="store_true", help="fast path: NHWC memory layout (recorded)")
    p.add_argument("--compile", action="store_true",
                   help="fast path: torch.compile the model (CUDA graphs on GPUs; the first batches compile; recorded)")
    cli_model.add_model_options(p)


# Logs written before the fast path (or other noises) existed were made on the plain path, with Gaussian noise and
# ℓ2 radii.
FAST_DEFAULT = {"fast": {"autocast": None, "channels_last": False, "compile": False}, "noise": "gaussian", "norm": "l2"}
SAMPLING_IDENTITY = ("command", "dataset", "split", "skip", "sigma", "N", "N0", "alpha", "seed",
                     "base_classifier.sha256", "base_classifier.normalize", "denoiser.sha256", "fast", "noise", "norm")


def noise_and_norm(args) -> tuple[str, str]:
    """The run's (noise, norm): --norm defaults to the first norm the noise certifies (l2 for Gaussian, l1 for the
    others); a pair the noise does not certify is a ValueError naming ``norm``."""
    from rs_core.smoothing.noises import check_noise_norm, get_noise

    norm = getattr(args, "norm", None)
    if norm is None:
        norm = get_noise(args.noise, 1.0).norms[0]
    return check_noise_norm(args.noise, norm)


@contextlib.contextmanager
def _ranked(args):
    """(rank, device) of this process — rank 0 of 1, or one of ``torchrun``'s — inside its process group, once
    every rank has been checked to run with the same arguments."""
    from rs_core.logs.distributed import check_agreement, process_group, rank_device, rank_from_env

    rank = rank_from_env()
    device = rank_device(args.device, rank)
    with process_group(rank, device):
        check_agreement({k: v for k, v in vars(args).items() if k != "device"}, rank)
        yield rank, device


def _my_examples(args, dataset, rank, logs, per_group: int):
    """This rank's (original idx, image, label) examples not yet in the log, and how many: the examples Cohen et
    al.'s loop visits (every --skip-th, below --max) in groups of ``per_group`` consecutive ones (the packing of
    :meth:`Smooth.certify_examples`, so that rows do not depend on the number of processes), a group kept unless
    all its examples are done, every ``world``-th group to this rank. Images are read as they are used."""
    if args.skip < 1:
        raise ValueError(f"skip: must be >= 1, got {args.skip}")
    stop = len(dataset) if args.max < 0 else min(args.max, len(dataset))
    positions = list(range(0, stop, args.skip))
    if rank.world > len(positions):
        raise ValueError(f"ranks: {rank.world} processes for {len(positions)} example(s); start at most "
                         f"{len(positions)} (torchrun --nproc_per_node)")
    done = logs.prepare()
    groups = [positions[k:k + per_group] for k in range(0, len(positions), per_group)]
    todo = [g for g in groups if not all(dataset.original_index(i) in done for i in g)]
    mine = [i for g in rank.share(todo) for i in g]
    if rank.is_main and done:
        print(f"resuming {Path(args.outfile).name}: {len(positions) - sum(map(len, todo))} of {len(positions)} "
              "examples already done", file=sys.stderr)
    logs.open()

    def examples():
        for i in mine:
            x, label = dataset[i]
            yield dataset.original_index(i), x, label

    return examples(), len(mine)


def _setup(args, device):
    from rs_core.data import dataset_info, get_dataset
    from rs_core.models.checkpoints import check_input_fits
    from rs_core.models.formats import load_model

    info = dataset_info(args.dataset)
    kwargs = cli_model.model_kwargs(args)
    if kwargs["input_size"] is None:  # the data set's images are what the model gets
        kwargs["input_size"] = tuple(info.input_shape)
    loaded = load_model(args.base_classifier, device=device, **kwargs)
    cli_model.warn_if_assumed(loaded, Path(args.base_classifier).name)
    if loaded.meta.get("kind") == "denoiser":
        raise ValueError(f"base_classifier: {Path(args.base_classifier).name} is a denoiser; pass it as --denoiser "
                         "with a classifier")
    if loaded.num_classes != info.num_classes:
        raise ValueError(f"checkpoint: the model scores {loaded.num_classes} classes, but {info.num_classes} are "
                         f"expected for {args.dataset}")
    shape = info.input_shape
    check_input_fits(loaded, shape)
    pre = loaded.preprocessing
    model, record = loaded.model, {"base_classifier": {
        "file": Path(args.base_classifier).name, "sha256": loaded.sha256, "arch": loaded.arch, "format": loaded.fmt,
        "normalize": {"mean": list(pre.mean), "std": list(pre.std)} if pre.normalizes else None}}
    if args.denoiser:
        from rs_core.models.denoisers import denoised, load_denoiser

        den = load_denoiser(args.denoiser, device)
        model = denoised(loaded.model, den.model, shape)
        record["denoiser"] = {"file": Path(args.denoiser).name, "sha256": den.sha256, "arch": den.arch,
                              "sigma_trained": den.sigma, "objective": den.meta.get("objective")}
        if den.sigma is not None and not math.isclose(den.sigma, args.sigma, rel_tol=1e-6):
            print(f"warning: the denoiser was trained for σ = {den.sigma:g}, certifying at σ = {args.sigma:g}: the "
                  "certificate is valid for f∘D at this σ, but D may denoise poorly", file=sys.stderr)
    from rs_core.smoothing.fast import FastPath

    fast = FastPath(autocast=args.autocast, channels_last=args.channels_last, compile=args.compile)
    model = fast.apply(model)
    dataset = get_dataset(args.dataset, args.split, download=args.download)
    record["fast"] = fast.record()
    record.update({"command": args.command, "dataset": args.dataset, "split": args.split, "sigma": args.sigma,
                   "N": args.N, "N0": getattr(args, "N0", None), "alpha": args.alpha, "seed": args.seed,
                   "skip": args.skip})
    if hasattr(args, "noise"):  # certify and predict (attack is Gaussian ℓ2 and says so in its own record)
        noise, norm = noise_and_norm(args)
        record["noise"] = noise
        if args.command == "certify":  # PREDICT has no radius, hence no norm (nor in its identity)
            record["norm"] = norm
        cli_model.warn_if_other_noise(loaded, noise, den.meta if args.denoiser else None)
    return model, dataset, record


def _bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, mininterval=1.0)


ADAPTIVE_HEADER = ["idx", "label", "predict", "radius", "radius_anytime", "samples", "stop"]


def _certify(args) -> int:
    import datetime

    from rs_core.smoothing.smooth import Smooth

    if args.radii is None and args.N_max is not None:
        raise ValueError("N_max: only with --radii (fixed-N CERTIFY uses --N)")
    noise, norm = noise_and_norm(args)
    if args.radii is not None:
        if (noise, norm) != ("gaussian", "l2"):
            raise ValueError(f"noise: adaptive CERTIFY (--radii) is Gaussian ℓ2 only; got --noise {noise} --norm "
                             f"{norm} (drop --radii for fixed-N CERTIFY with this noise)")
        return _certify_radii(args)
    with _ranked(args) as (rank, device):
        model, dataset, record = _setup(args, device)
        smooth = Smooth(model, args.sigma, args.batch, autocast=args.autocast, noise=noise, norm=norm)
        logs = ResumableLogs({args.outfile: CERTIFY_HEADER}, record, SAMPLING_IDENTITY, rank,
                             overwrite=args.overwrite, defaults=FAST_DEFAULT)
        examples, total = _my_examples(args, dataset, rank, logs, smooth.examples_per_group(args.N0, args.N))
        with _bar(total, not args.no_progress and rank.is_main, "certify") as bar:
            for idx, label, prediction, radius, correct, seconds in smooth.certify_examples(
                    examples, args.N0, args.N, args.alpha, seed=args.seed):
                logs.write(args.outfile, [idx, label, prediction, floor_str(radius), correct,
                                          datetime.timedelta(seconds=seconds)])
                bar.update(1)
        logs.finish()
    return 0


def _certify_radii(args) -> int:
    """``certify --radii``: adaptive CERTIFY (rs_core.smoothing.adaptive), examples packed into refilled batches."""
    import datetime

    from rs_core.smoothing.adaptive import RadiusCertifier, check_radii

    radii = check_radii(args.radii)
    n_max = args.N_max or args.N
    with _ranked(args) as (rank, device):
        model, dataset, record = _setup(args, device)
        certifier = RadiusCertifier(model, args.sigma, radii, args.N0, n_max, args.alpha, args.batch,
                                    autocast=args.autocast)
        record.update(N=None, radii=list(radii), N_max=n_max, adaptive={
            "bound": "anytime-beta-mixture", "first_chunk": certifier.first_chunk, "growth": certifier.growth,
            "max_chunk": certifier.max_chunk, "futility_alpha": certifier.futility_alpha})
        out = Path(args.outfile)
        side = out.with_name(out.name + ".radii.tsv")
        logs = ResumableLogs({out: CERTIFY_HEADER, side: ADAPTIVE_HEADER}, record,
                             (*SAMPLING_IDENTITY, "radii", "N_max", "adaptive"), rank, overwrite=args.overwrite,
                             defaults=FAST_DEFAULT)
        examples, total = _my_examples(args, dataset, rank, logs, 1)
        labels: dict[int, int] = {}

        def inputs():
            for idx, x, label in examples:
                labels[idx] = label
                yield idx, x, example_seed(args.seed, idx)

        with _bar(total, not args.no_progress and rank.is_main, "certify --radii") as bar:
            for idx, c in certifier.certify_stream(inputs()):
                label = labels.pop(idx)
                correct = int(c.prediction == label)
                logs.write(out, [idx, label, c.prediction, floor_str(c.radius), correct,
                                 datetime.timedelta(seconds=c.elapsed_s)])
                logs.write(side, [idx, label, c.prediction, floor_str(c.radius), floor_str(c.radius_anytime),
                                  c.samples, c.stop_reason])
                bar.update(1)
        logs.finish()
    return 0


def _predict(args) -> int:
    import datetime
    import time

    from rs_core.smoothing.certify import predict

    with _ranked(args) as (rank, device):
        model, dataset, record = _setup(args, device)
        identity = tuple(k for k in SAMPLING_IDENTITY if k != "norm")
        logs = ResumableLogs({args.outfile: PREDICT_HEADER}, record, identity, rank, overwrite=args.overwrite,
                             defaults=FAST_DEFAULT)
        examples, total = _my_examples(args, dataset, rank, logs, 1)
        with _bar(total, not args.no_progress and rank.is_main, "predict") as bar:
            for idx, x, label in examples:
                before = time.time()
                prediction = predict(model, x, args.sigma, args.N, args.alpha, args.batch,
                                     seed=example_seed(args.seed, idx), autocast=args.autocast, noise=args.noise)
                elapsed = datetime.timedelta(seconds=time.time() - before)
                logs.write(args.outfile, [idx, label, prediction, int(prediction == label), elapsed])
                bar.update(1)
        logs.finish()
    return 0


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="certified accuracy tables and plots from certify logs")
    p.add_argument("logs", nargs="+", help="certify logs (ours or Cohen et al.'s)")
    p.add_argument("--labels", nargs="+", help="one label per log (default: 'σ = X' for sigma_X files, else the name)")
    p.add_argument("--radii", nargs="+", type=A.nonnegative_float, help="radii of the table (default: 0 0.25 … 2.0)")
    p.add_argument("--radius-range", nargs=3, type=A.nonnegative_float, metavar=("START", "STOP", "STEP"),
                   help="radii as Cohen et al.'s np.arange(START, STOP + STEP, STEP)")
    p.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown", help="printed table")
    p.add_argument("--alpha", type=A.probability, default=0.001, help="CERTIFY's α, for the App. D lower bound")
    p.add_argument("--rho", type=A.probability, default=0.001, help="the lower bound holds with probability 1 − ρ")
    p.add_argument("--out", help="also write OUT.md, OUT.tex, OUT.csv and OUT.html (interactive Plotly figure)")
    p.add_argument("--common", action="store_true", help="keep only the examples present in every log (compare "
                   "methods on the same images); refused for logs of different data sets")
    p.add_argument("--dataset", choices=DATASETS, default=None, help="the data set of every log (default: the one "
                   "named by each log's folders, e.g. …/cifar10/…)")
    p.add_argument("--versus", action="store_true", help="also print the first log minus the best of the others at "
                   "each radius, with its paired standard error (on their common images)")
    p.add_argument("--oracle", action="store_true", help="add a row: per image, the best of the logs (the others "
                   "than the first with --versus) in hindsight — a ceiling, not a certificate")
    p.add_argument("--attack", nargs="+", default=[], metavar="LOG",
                   help="attack logs (python -m rs_core attack): each is paired with the certify log of the same model "
                        "and σ (by .meta.json, or attack_<σ> beside sigma_<σ>) and of the same images, and its "
                        "empirical robust accuracy is printed next to the certified accuracy, with the gap; an image "
                        "attacked below its certified radius is a soundness alarm (exit status 1)")


def _analyze(args) -> int:
    import numpy as np

    from rs_core.logs.certify_logs import (
        check_one_norm,
        common_images,
        csv_table,
        figure,
        latex_table,
        markdown_table,
        radius_grid,
        read_certify_log,
    )

    if args.labels and len(args.labels) != len(args.logs):
        raise ValueError(f"labels: need one per log ({len(args.logs)}), got {len(args.labels)}")
    if args.radius_range:  # checked before any log is read
        radii = radius_grid(*args.radius_range)
    else:
        radii = np.array(args.radii if args.radii else [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
    labels = args.labels or [None] * len(args.logs)
    logs = [read_certify_log(path, label, dataset=args.dataset) for path, label in zip(args.logs, labels, strict=True)]
    norm = check_one_norm(logs)  # radii in different norms are different shapes, not comparable numbers
    if norm != "l2":
        print(f"radii are {norm} radii (the logs' .meta.json)", file=sys.stderr)
    if args.common or args.oracle or args.versus:  # only logs of one data set (folders, or --dataset) are intersected
        logs, common = common_images(logs)
        print(f"{len(common)} examples common to all {len(logs)} logs", file=sys.stderr)
    from rs_core.logs.certify_logs import oracle_log, versus_table

    versus = versus_table(logs[0], logs[1:], radii) if args.versus and len(logs) > 1 else ""
    if args.oracle:
        logs = [*logs, oracle_log(logs[1:] if args.versus and len(logs) > 1 else logs,
                                  "per-image oracle (not a certificate)")]
    tables = {"markdown": markdown_table(logs, radii), "latex": latex_table(logs, radii),
              "csv": csv_table(logs, radii, args.alpha, args.rho)}
    attack_pairs, gap, alarms = _analyze_attacks(args, logs, radii)
    sys.stdout.write(tables[args.format])
    if versus:
        sys.stdout.write("\n" + versus)
    if gap:
        sys.stdout.write("\nEmpirical robust accuracy (attack) next to certified accuracy, on the same images:\n\n"
                         + gap)
    if alarms:
        print("SOUNDNESS ALARM: an attack found an adversarial example below a certified radius (see above)",
              file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for fmt, ext in [("markdown", ".md"), ("latex", ".tex"), ("csv", ".csv")]:
            out.with_name(out.name + ext).write_text(tables[fmt])
        # plotly.js is embedded so the page works offline.
        fig = figure(logs, args.alpha, args.rho)
        if attack_pairs:
            from rs_core.logs.attack_logs import add_empirical_curves

            add_empirical_curves(fig, [(a, c.label) for a, c in attack_pairs])
            out.with_name(out.name + ".attack.md").write_text(gap)
        fig.write_html(out.with_name(out.name + ".html"), include_plotlyjs=True)
    return 1 if alarms else 0


def _analyze_attacks(args, logs, radii):
    """The --attack logs paired with ``logs`` (ValueError when one has no partner or other images), the gap table,
    and whether any image is a soundness alarm (said loudly on stdout and stderr)."""
    from rs_core.logs.attack_logs import alarm_text, gap_table, pair_logs, read_attack_log, soundness_alarms

    if not args.attack:
        return [], "", False
    attacks = [read_attack_log(path, dataset=args.dataset) for path in args.attack]
    pairs = pair_logs(attacks, logs)
    gap = gap_table(pairs, radii)
    alarms = "".join(alarm_text(soundness_alarms(a, c), a, c) for a, c in pairs)
    return pairs, gap + ("\n" + alarms if alarms else ""), bool(alarms)


def _index(args) -> int:
    from rs_core.models.checkpoints import CHECKPOINTS_DIR, read_index, write_index

    root = Path(args.root) if args.root else CHECKPOINTS_DIR
    entries = write_index(root) if args.rebuild else read_index(root)
    for e in entries:
        acc = (e.get("accuracy") or {}).get("test_noisy")
        recipe = f"\t{e['recipe']}" if e.get("recipe") else ""
        print(f"{e['path']}\t{e['dataset']}\t{e['arch']}\tσ={e['sigma']}\tnoisy acc={acc}{recipe}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every option's type checks its value (:mod:`rs_core.cli.args`)."""
    parser = argparse.ArgumentParser(prog="python -m rs_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_train_denoiser(sub)
    _add_train_sigma(sub)
    _add_certify_dual(sub)
    _add_sampling(sub.add_parser("certify", help="CERTIFY each example of a data set; Cohen et al.'s log format"),
                  certify=True)
    _add_sampling(sub.add_parser("predict", help="PREDICT each example of a data set; Cohen et al.'s log format"),
                  certify=False)
    cli_model.add_certify_image(sub)
    cli_model.add_export(sub)
    cli_model.add_verify(sub)
    cli_attack.add_parser(sub, _add_examples, OVERWRITE_HELP)
    _add_analyze(sub)
    p = sub.add_parser("index", help="list the shipped checkpoints (checkpoints/index.json)")
    p.add_argument("--rebuild", action="store_true", help="rescan the folder and rewrite index.json")
    p.add_argument("--root", help="checkpoints folder (default: the repository's checkpoints/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_noise_args(parser, args)  # before anything is read: a noise the command cannot run is a usage error
    try:
        return {"train": _train, "certify": _certify, "predict": _predict, "analyze": _analyze,
                "index": _index, "train-sigma": _train_sigma, "certify-dual": _certify_dual,
                "train-denoiser": _train_denoiser, "certify-image": cli_model.certify_image,
                "export": cli_model.export, "verify": cli_model.verify,
                "attack": lambda a: cli_attack.run(a, cli_attack.Machinery(_ranked, _setup, _my_examples, _bar)),
                }[args.command](args)
    except (ValueError, OSError) as err:  # the error contract: bad input is a message and status 2, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
