"""Command line for a user's own model: the shared model options, ``certify-image`` and ``export``.

``python -m rs_core certify-image MODEL IMAGE SIGMA --out cert.json`` certifies one image with any model
:func:`rs_core.models.formats.load_model` reads and writes the same certificate JSON as the app's download;
``python -m rs_core export MODEL OUT.onnx|OUT.pt2|OUT.safetensors`` writes a model in a format that declares its
preprocessing, classes and training σ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

from rs_core.cli import args as A
from rs_core.smoothing.noises import NOISES, NORMS, check_noise_norm, get_noise


def add_model_options(p: argparse.ArgumentParser) -> None:
    """What a model file may not declare itself (rs_core.models.formats.load_model's keyword arguments)."""
    g = p.add_argument_group("model options (for what the file does not declare)")
    g.add_argument("--arch", default=None,
                   help="architecture of a weights-only file: torchvision:<name>, timm:<name>, or one of ours")
    g.add_argument("--num-classes", type=A.count, default=None, help="checked against the model's output")
    g.add_argument("--input-size", default=None, help="H or HxW the model takes (e.g. 224)")
    g.add_argument("--resize", type=A.count, default=None,
                   help="resize the shorter side to this before the center crop (e.g. 256 for 224 inputs)")
    g.add_argument("--mean", default=None, help="per-channel mean the model expects, e.g. 0.485,0.456,0.406")
    g.add_argument("--std", default=None, help="per-channel std, e.g. 0.229,0.224,0.225")
    g.add_argument("--no-normalize", action="store_true",
                   help="the model normalizes itself: ignore the mean/std a file or architecture declares")
    g.add_argument("--classes", default=None,
                   help="class names: a text file (one per line), a JSON list or {index: name}, or 'imagenet'")
    g.add_argument("--trust-code", action="store_true",
                   help="allow TorchScript, which is code; only for files you trust (never from others)")


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"arch": args.arch, "num_classes": args.num_classes, "input_size": args.input_size,
            "resize": args.resize, "mean": args.mean, "std": args.std,
            "normalize": False if args.no_normalize else None, "class_names": args.classes,
            "trust_code": args.trust_code}


def warn_if_assumed(loaded, name: str, out=None) -> None:
    """Say on stderr when the file declared no normalization and one was assumed: the app asks instead; a script
    reads this line (and the certificate's ``model.normalization``)."""
    from rs_core.models.formats import normalization_declared
    from rs_core.models.preprocess import NORMALIZATION_SOURCES

    if not normalization_declared(loaded):
        source = NORMALIZATION_SOURCES.get(loaded.meta.get("normalization_source"), "assumed")
        print(f"warning: {name}: normalization {source}: {loaded.preprocessing.describe()}; state it with "
              "--mean/--std or --no-normalize", file=out or sys.stderr)


def warn_if_other_noise(loaded, noise: str, denoiser_meta: dict | None = None, out=None) -> None:
    """Say on stderr when the smoothing ``noise`` is not the one the model (a checkpoint that records its training
    noise and σ) or the denoiser (trained to remove Gaussian noise unless its meta says otherwise) was trained
    under (issue 30). Only a warning: the certificate is valid for any base classifier, it is just weaker; the
    noise is never changed behind the user's back."""
    trained = getattr(loaded, "noise", None)
    if trained is not None and trained != noise and loaded.sigma:
        print(f"warning: the model was trained under {trained} noise, smoothing with {noise}: the certificate is "
              f"valid, but a model certifies best under the noise it was trained with",
              file=out or sys.stderr)
    if denoiser_meta is not None:
        den_noise = denoiser_meta.get("noise") or "gaussian"  # train-denoiser draws Gaussian noise
        if den_noise != noise:
            print(f"warning: the denoiser was trained to remove {den_noise} noise, smoothing with {noise}: the "
                  "certificate is valid for f∘D, but D may denoise poorly", file=out or sys.stderr)


def add_certify_image(sub) -> None:
    p = sub.add_parser("certify-image", help="CERTIFY one image with your own model; writes the app's certificate JSON")
    p.add_argument("model", help="model file: .onnx, .pt2, .safetensors, a state dict or checkpoint (.pth, .pt)")
    p.add_argument("image", help="PNG, JPEG, WebP, BMP or GIF")
    p.add_argument("sigma", type=A.positive_float, help="noise level, in units of the [0, 1] image before normalization")
    p.add_argument("--out", required=True, help="certificate JSON to write")
    add_model_options(p)
    p.add_argument("--N0", type=A.count, default=100, help="selection samples")
    p.add_argument("--N", type=A.count, default=100_000, help="estimation samples (at most; Ctrl-C stops early and "
                                                              "keeps a valid certificate: the bound is anytime-valid)")
    p.add_argument("--alpha", type=A.probability, default=0.001)
    p.add_argument("--noise", choices=NOISES, default="gaussian",
                   help="smoothing noise, sigma its standard deviation: gaussian (default), laplace or uniform")
    p.add_argument("--norm", choices=NORMS, default=None,
                   help="norm of the radius, one the noise certifies (default: l2 for gaussian, l1 for the others)")
    p.add_argument("--seed", type=A.seed, default=0)
    p.add_argument("--batch", type=A.count, default=1000, help="largest batch size")
    p.add_argument("--batch-seconds", type=A.nonnegative_float, default=0.5,
                   help="size batches to take about this long (0: exactly --batch); recorded in the certificate")
    p.add_argument("--device", type=A.device, default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--denoiser", default=None, help="denoised smoothing: a denoiser checkpoint in front of the model")
    p.add_argument("--invert", choices=["no", "yes", "auto"], default="no",
                   help="grey models: invert intensities (dark ink on white → MNIST's light on dark)")
    p.add_argument("--frame-digit", action="store_true", help="grey models: crop, scale and center like MNIST")
    p.add_argument("--predict", type=A.count, default=None, metavar="N",
                   help="also run PREDICT with N fresh samples (seed derived from --seed, independent of CERTIFY's), "
                        "as the app does")
    p.add_argument("--no-progress", action="store_true")


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write a model as ONNX, .pt2 or .safetensors, declaring its preprocessing")
    p.add_argument("model", help="any model file load_model reads")
    p.add_argument("out", help="OUT.onnx, OUT.pt2 or OUT.safetensors")
    add_model_options(p)


def export(args) -> int:
    from rs_core.models.formats import export_model, load_model

    loaded = load_model(args.model, device="cpu", **model_kwargs(args))
    out = export_model(loaded, args.out)
    print(f"wrote {out} ({loaded.fmt} → {out.suffix[1:]}; {loaded.preprocessing.describe()}; "
          f"{loaded.num_classes} classes)")
    return 0


def _input(args, loaded) -> tuple[Any, str, dict[str, Any]]:
    """The model input from ``args.image``, its file's sha256, and the image options used (as the certificate records
    them: ``rs_core.data.prepare_input``'s arguments, ``model_preprocess`` = the model's resize/crop policy passed)."""
    from rs_core.data import load_image

    path = Path(args.image)
    if not path.is_file():
        raise ValueError(f"image: no such file: {path.name}")
    data = path.read_bytes()
    pre = loaded.preprocessing
    if pre.input_shape[0] == 1 and (args.invert != "no" or args.frame_digit):
        if pre.resize is not None:
            raise ValueError("invert: --invert/--frame-digit are for digit models without a resize policy")
        options = {"invert": {"no": False, "yes": True, "auto": None}[args.invert], "frame_digit": args.frame_digit,
                   "model_preprocess": False}
    else:
        options = {"invert": False, "frame_digit": False, "model_preprocess": True}
    from rs_core.logs.verify import input_from_image

    return input_from_image(load_image(data), pre, options), hashlib.sha256(data).hexdigest(), options


def certify_image(args) -> int:
    import torch

    from rs_core.logs.certify_logs import NORM_TITLES
    from rs_core.logs.document import certificate_document, class_label
    from rs_core.logs.verify import combined_sha256, tensor_sha256
    from rs_core.models.device import default_device
    from rs_core.models.formats import load_model
    from rs_core.smoothing.diagnostics import noise_robustness_warning
    from rs_core.smoothing.stream import CertifyStream

    noise = args.noise
    norm = args.norm or get_noise(noise, args.sigma).norms[0]
    check_noise_norm(noise, norm)  # before the model is read: a pair the noise does not certify is a usage error
    device = args.device or str(default_device())
    loaded = load_model(args.model, device=device, **model_kwargs(args))
    if loaded.meta.get("kind") == "denoiser":
        raise ValueError(f"model: {Path(args.model).name} is a denoiser; pass it as --denoiser with a classifier")
    warn_if_assumed(loaded, Path(args.model).name)
    x, file_sha, options = _input(args, loaded)
    model, record = loaded.model, {"label": loaded.name, "id": None, **loaded.record()}
    record["classifier_sha256"] = loaded.sha256
    if args.denoiser:
        from rs_core.models.denoisers import denoised, load_denoiser

        den = load_denoiser(args.denoiser, device)
        model = denoised(loaded.model, den.model, tuple(loaded.input_shape))
        record["sha256"] = combined_sha256(loaded.sha256, den.sha256)
        record["denoiser"] = {"file": Path(args.denoiser).name, "sha256": den.sha256, "arch": den.arch,
                              "sigma_trained": den.sigma, "objective": den.meta.get("objective")}
        if den.sigma is not None and not math.isclose(den.sigma, args.sigma, rel_tol=1e-6):
            print(f"warning: the denoiser was trained for σ = {den.sigma:g}, certifying at σ = {args.sigma:g}",
                  file=sys.stderr)
    warn_if_other_noise(loaded, noise, den.meta if args.denoiser else None)
    names = loaded.class_names
    xd = x.to(device)
    with torch.inference_mode():
        clean = int(model(xd.unsqueeze(0)).argmax(1).item())
    noise = args.noise
    norm = args.norm or get_noise(noise, args.sigma).norms[0]
    stream = CertifyStream(model, xd, args.sigma, n0=args.N0, n_max=args.N, alpha=args.alpha, batch_size=args.batch,
                           seed=args.seed, batch_seconds=args.batch_seconds or None, noise=noise, norm=norm)
    _run_with_progress(stream, args)
    cert = stream.certificate()
    prediction = None
    if args.predict and cert.stop_reason != "stopped":
        from rs_core.smoothing.certify import predict_result
        from rs_core.smoothing.seeding import predict_seed

        prediction = predict_result(model, xd, args.sigma, n=args.predict, alpha=args.alpha,
                                    batch_size=cert.batch_size, seed=predict_seed(args.seed), noise=noise)
    counts = cert.counts if cert.n else cert.counts_selection
    warning = noise_robustness_warning(clean, counts, args.sigma, trained_sigma=loaded.sigma)
    doc = certificate_document(
        cert, class_names=names, model=record, prediction=prediction, warnings=[warning] if warning else [],
        input={"source": f"file {Path(args.image).name}", "true_label": None, "shape": list(x.shape),
               "sha256_float32": tensor_sha256(x), "file_sha256": file_sha, "options": options,
               "clean_prediction": class_label(names, clean)})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    if cert.prediction < 0:
        print(f"abstain (pA ≥ {cert.p_lower:.4f} after n = {cert.n:,}); certificate: {out}")
    else:
        print(f"certified: {class_label(names, cert.prediction)} within {NORM_TITLES[cert.norm]} radius "
              f"{doc['rounded_down']['radius']}"
              f" (pA ≥ {cert.p_lower:.4f}, n = {cert.n:,}, α = {cert.alpha:g}); certificate: {out}")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def add_verify(sub) -> None:
    p = sub.add_parser("verify", help="re-run a certificate JSON (the app's or certify-image's) and say whether it is "
                                      "identical; exit 0 if so, 1 with the first difference otherwise")
    p.add_argument("certificate", help="the certificate JSON")
    p.add_argument("model", help="the model file it names (its sha256 is checked)")
    p.add_argument("input", help="the image file it certified, or DATASET:INDEX for a test image (e.g. mnist:7)")
    add_model_options(p)
    p.add_argument("--denoiser", default=None, help="the denoiser file, for a denoised model's certificate")
    p.add_argument("--device", type=A.device, default=None,
                   help="cpu, cuda, … (default: the device type the certificate was made on, if present here)")


def _verify_input(spec: str, loaded, options: dict[str, Any]):
    from rs_core.data import get_dataset, load_image
    from rs_core.logs.verify import input_from_image

    path = Path(spec)
    if path.is_file():
        return input_from_image(load_image(path.read_bytes()), loaded.preprocessing, options)
    name, sep, index = spec.rpartition(":")
    if not sep or not index.isdigit():
        raise ValueError(f"input: no such file, and not DATASET:INDEX: {spec}")
    data = get_dataset(name, "test")
    position = data.position_of(int(index))
    if position is None:
        raise ValueError(f"input: {name} has no test image {index} here")
    return data[position][0]


def verify(args) -> int:
    import torch

    from rs_core.logs.verify import combined_sha256, read_document, verify_document
    from rs_core.models.formats import load_model, normalization_declared, with_normalization

    name = Path(args.certificate).name
    try:
        doc = read_document(json.loads(Path(args.certificate).read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"certificate: cannot read {name} as JSON ({err})") from None
    except ValueError as err:
        raise ValueError(f"{err} ({name})") from None
    recorded_type = (doc.get("software") or {}).get("device_type", "cpu")
    device = args.device or ("cuda" if recorded_type == "cuda" and torch.cuda.is_available() else "cpu")
    loaded = load_model(args.model, device=device, **model_kwargs(args))
    recorded = (doc.get("model") or {}).get("preprocess")
    if not normalization_declared(loaded) and isinstance(recorded, dict) and "mean" in recorded:
        # The file declares no normalization (and no --mean/--std/--no-normalize was given): its certificate records
        # the one its maker chose (the app asks), so the re-run reads the model that way. The rest of the
        # preprocessing is still compared with the record.
        loaded = with_normalization(loaded, recorded.get("mean"), recorded.get("std"))
        print(f"normalization: as the certificate records ({loaded.preprocessing.describe()}); {Path(args.model).name} "
              "declares none", file=sys.stderr)
    model, sha = loaded.model, loaded.sha256
    if args.denoiser:
        from rs_core.models.denoisers import denoised, load_denoiser

        den = load_denoiser(args.denoiser, device)
        model, sha = denoised(loaded.model, den.model, tuple(loaded.input_shape)), combined_sha256(sha, den.sha256)
    x = _verify_input(args.input, loaded, (doc.get("input") or {}).get("options") or {})
    result = verify_document(doc, model, x, model_sha256=sha, preprocess=loaded.preprocessing.to_dict())
    if result.identical:
        c = result.certificate
        print(f"identical: the counts ({c.n0:,} selection, {c.n:,} estimation votes) and the certificate (class "
              f"{c.prediction}, radius {doc.get('rounded_down', {}).get('radius', c.radius)}) are reproduced")
        return 0
    print(f"differs: {result.first()}")
    for more in result.differences[1:]:
        print(f"  also {more}")
    return 1


def _run_with_progress(stream, args) -> None:
    """Run the stream in a worker thread so that Ctrl-C stops it after the batch in flight (the certificate of the
    samples drawn so far stays valid: the bound is anytime-valid)."""
    from tqdm import tqdm

    errors: list[BaseException] = []
    bar = tqdm(total=args.N0 + args.N, desc="sampling", unit="sample", file=sys.stderr, disable=args.no_progress,
               mininterval=0.5)

    def work() -> None:
        try:
            for snap in stream:
                bar.n = stream.n0_drawn + snap.n
                bar.set_postfix_str(f"radius ≥ {snap.radius:.3f}" if snap.phase == "estimation" else "selection")
                bar.refresh()
        except BaseException as err:  # noqa: BLE001 — re-raised in the main thread
            errors.append(err)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        print("\nstopping after the batch in flight…", file=sys.stderr)
        stream.stop()
        worker.join()
    bar.close()
    if errors:
        raise errors[0]
