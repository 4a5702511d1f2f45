"""Rewrite shipped certify logs whose radii are Cohen et al.'s ``{:.3}`` (rounded to nearest) to the README's rule.

Re-certifying the partial CIFAR-10 logs costs CPU hours, so each radius is replaced by a value it provably bounds
(:func:`rs_core.rounding.lower_str_from_cohen_format`: printed − ½ unit of the 3rd significant digit, rounded down
to 4 decimals); every other field stays. ``LOG.meta.json`` gets what the certify CLI records for such a run
(model file, sha256, σ, N0, N, α, seed, skip) and ``radius_conversion``: the rule, the sha256 of the log it was
converted from, and this script. A log that already has a ``radius_conversion`` is refused, so running this twice
cannot lower the radii twice.

    python checkpoints/convert_cohen_radii.py checkpoints/cifar10-partial/cifar_*/noise_*/sigma_* \\
        --N0 100 --N 10000 --alpha 0.001 --seed 0 --skip 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.models.shipped import find_model
from rs_core.rounding import COHEN_CONVERSION_RULE, convert_cohen_log_text

SCRIPT = "checkpoints/convert_cohen_radii.py"


def _write(path: Path, text: str) -> None:
    """Replace ``path`` whole or not at all (a half-written shipped log would be worse than the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def convert(log: Path, *, n0: int, n: int, alpha: float, seed: int, skip: int) -> dict:
    """Convert one shipped log next to its model and write its ``.meta.json``; the metadata written."""
    log = log.resolve()
    meta_path = log.with_name(log.name + ".meta.json")
    if meta_path.exists() and "radius_conversion" in json.loads(meta_path.read_text()):
        raise ValueError(f"log: {log.name} was converted already ({meta_path.name} says so)")
    model = find_model(log.parent.relative_to(CHECKPOINTS_DIR.resolve()).as_posix())
    if model is None:
        raise ValueError(f"log: {log} is not next to a shipped model")
    old = log.read_bytes()
    new = convert_cohen_log_text(old.decode("utf-8"))
    meta = {
        "base_classifier": {"file": model.path.name, "sha256": model.sha256, "arch": model.arch,
                            "format": "checkpoint", "normalize": None},
        "command": "certify", "dataset": model.dataset, "split": "test", "sigma": model.sigma,
        "N": n, "N0": n0, "alpha": alpha, "seed": seed, "skip": skip,
        "radius_conversion": {
            "rule": COHEN_CONVERSION_RULE,
            "from": "Cohen-format radii (f'{r:.3}', rounded to nearest), as the log was first written",
            "from_sha256": hashlib.sha256(old).hexdigest(),
            "rows": new.count("\n") - 1,
            "script": SCRIPT,
        },
    }
    _write(log, new)
    _write(meta_path, json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("logs", nargs="+", type=Path)
    p.add_argument("--N0", type=int, required=True)
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--skip", type=int, required=True)
    args = p.parse_args(argv)
    for log in args.logs:
        try:
            meta = convert(log, n0=args.N0, n=args.N, alpha=args.alpha, seed=args.seed, skip=args.skip)
        except (ValueError, OSError) as err:
            print(f"{log}: {err}", file=sys.stderr)
            return 1
        print(f"{log}: {meta['radius_conversion']['rows']} rows converted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
