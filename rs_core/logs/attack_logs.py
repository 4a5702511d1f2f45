"""Attack logs: the empirical side of a certify log (``python -m rs_core attack``), read, paired and compared.

An attack log is tab-separated with header ``idx label predict adv_distance adv_predict time`` and, as our CLI
writes it, the extra columns ``method steps eps_max m``. ``predict`` is the clean PREDICT of the smoothed
classifier g (−1: abstain); ``adv_distance`` is the ℓ2 norm of the smallest perturbation the attack found that
changes g's PREDICT to another class, ``inf`` when none was found up to ``eps_max``; ``adv_predict`` is PREDICT at
that point (``none`` when nothing was found).

A found distance is an *upper* bound on the distance to g's boundary (an adversarial example exists there), the
mirror image of a certified radius, a lower bound. So it is written rounded **up** to 4 decimals
(:func:`ceil_str`), as radii are rounded down: neither rounding can move a number to the wrong side of the truth.

Empirical robust accuracy at r is the fraction of all rows with ``predict == label`` and ``adv_distance > r``: an
image counts as robust at r unless the attack found an adversarial example at distance ≤ r. It is an upper bound
on the true robust accuracy of g (a stronger attack can only lower it), certified accuracy a lower bound; the gap
between them is what neither side knows. An image whose found distance is *below* its certified radius (for the
certified class) contradicts the certificate: a soundness alarm (:func:`soundness_alarms`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import numpy as np

from rs_core.logs.certify_logs import (
    NORM_TITLES,
    CertifyLog,
    dataset_from_path,
    int_field,
    is_decimal,
    parse_duration,
    tsv_rows,
)
from rs_core.rounding import RADIUS_DECIMALS
from rs_core.untrusted import MAX_CLASSES, MAX_LOG_BYTES, MAX_LOG_ROWS, check_size

ATTACK_HEADER = ["idx", "label", "predict", "adv_distance", "adv_predict", "time"]
ATTACK_EXTRA = ["method", "steps", "eps_max", "m"]
ATTACK_LOG_HEADER = [*ATTACK_HEADER, *ATTACK_EXTRA]  # what `python -m rs_core attack` writes
METHODS = ("pgd", "ddn", "boundary")  # rs_core.attacks.METHODS less "auto": what a row records as the method used
NOT_FOUND = "none"  # adv_predict where nothing was found
NO_CLASS = -2  # adv_predict in the arrays where nothing was found (−1 is an abstention)


def ceil_str(value: float, decimals: int = RADIUS_DECIMALS) -> str:
    """``value`` with ``decimals`` digits, rounded up (towards +∞) exactly; ``inf`` for +∞ (nothing found).

    >>> ceil_str(1.23401), ceil_str(0.3, 2), ceil_str(2.0), ceil_str(math.inf)
    ('1.2341', '0.30', '2.0000', 'inf')
    """
    value = float(value)
    if value == math.inf:
        return "inf"
    if not math.isfinite(value):
        raise ValueError(f"value: must be finite or +inf, got {value!r}")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals: must be an integer >= 0, got {decimals!r}")
    return str(Decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_CEILING))


def format_row(idx: int, label: int, predict: int, distance: float, adv_predict: int | None, seconds: str | float,
               method: str, steps: int, eps_max: float, m: int) -> list[str]:
    """One row of :data:`ATTACK_LOG_HEADER` (``seconds``: a number or ``str(datetime.timedelta)``)."""
    found = math.isfinite(distance)
    return [str(int(idx)), str(int(label)), str(int(predict)), ceil_str(distance),
            str(int(adv_predict)) if found and adv_predict is not None else NOT_FOUND, str(seconds), method,
            str(int(steps)), f"{float(eps_max):g}", str(int(m))]


@dataclass
class AttackLog:
    """One attack log as arrays (one entry per row); ``adv_predict`` is :data:`NO_CLASS` where nothing was found.
    ``method``, ``steps``, ``eps_max``, ``m`` are None for a log without the extra columns."""

    label: str
    idx: np.ndarray
    true_label: np.ndarray
    predict: np.ndarray
    distance: np.ndarray
    adv_predict: np.ndarray
    seconds: np.ndarray
    method: list[str] | None = None
    steps: np.ndarray | None = None
    eps_max: np.ndarray | None = None
    m: np.ndarray | None = None
    path: str = ""
    dataset: str | None = None
    meta: dict | None = None  # OUTFILE.meta.json, when beside the file

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.distance)

    def empirical_accuracy(self, radii) -> np.ndarray:
        """Fraction of all rows with predict == label and adv_distance > r, for each r."""
        return empirical_accuracy(self, radii)

    def restrict(self, idx) -> AttackLog:
        """The rows whose example index is in ``idx``."""
        keep = np.isin(self.idx, np.asarray(list(idx), dtype=int))
        cut = {f: getattr(self, f)[keep] for f in ("idx", "true_label", "predict", "distance", "adv_predict",
                                                   "seconds", "steps", "eps_max", "m") if getattr(self, f) is not None}
        if self.method is not None:
            cut["method"] = [m for m, k in zip(self.method, keep, strict=True) if k]
        return dataclasses.replace(self, **cut)

    @property
    def sigma(self) -> float | None:
        return None if not self.meta or self.meta.get("sigma") is None else float(self.meta["sigma"])


def empirical_accuracy(log: AttackLog, radii) -> np.ndarray:
    """Empirical robust accuracy at each r: the fraction of *all* rows (abstentions included, as wrong) with
    predict == label and no adversarial example found at distance ≤ r.

    >>> log = parse_attack_log("idx\\tlabel\\tpredict\\tadv_distance\\tadv_predict\\ttime\\n"
    ...                        "0\\t1\\t1\\t0.5\\t2\\t1.0\\n1\\t2\\t2\\tinf\\tnone\\t1.0\\n2\\t3\\t5\\t0.1\\t3\\t1.0\\n", "x")
    >>> empirical_accuracy(log, [0, 0.5, 1]).round(3).tolist()
    [0.667, 0.333, 0.333]
    """
    r = np.atleast_1d(np.asarray(radii, dtype=float))
    if len(log) == 0:
        return np.zeros(len(r))
    ok = (log.predict == log.true_label)[None, :] & (log.distance[None, :] > r[:, None])
    return ok.mean(axis=1)


def _distance(text: str) -> float:
    text = text.strip()
    if text == "inf":
        return math.inf
    value = float(text) if is_decimal(text) else math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"adv_distance: expected a number >= 0 or inf, got {text[:40]!r}")
    return value


def _row(row: list[str], extra: bool) -> tuple:
    idx = int_field(row[0], "idx", 0, 2**31 - 1)
    label = int_field(row[1], "label", 0, MAX_CLASSES - 1)
    predict = int_field(row[2], "predict", -1, MAX_CLASSES - 1)
    distance = _distance(row[3])
    if row[4].strip() == NOT_FOUND:
        if math.isfinite(distance):
            raise ValueError(f"adv_predict: is {NOT_FOUND} but adv_distance is {distance} (found)")
        adv = NO_CLASS
    else:
        adv = int_field(row[4], "adv_predict", 0, MAX_CLASSES - 1)  # found: a class, never an abstention
        if not math.isfinite(distance):
            raise ValueError(f"adv_predict: is {adv} but adv_distance is inf (nothing found); write {NOT_FOUND}")
        if adv == predict:
            raise ValueError(f"adv_predict: {adv} is the clean prediction, so the class did not change")
    seconds = parse_duration(row[5])
    if not extra:
        return idx, label, predict, distance, adv, seconds
    method = row[6].strip()
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method[:40]!r}")
    steps = int_field(row[7], "steps", 0, 10**9)
    text = row[8].strip()
    eps_max = float(text) if is_decimal(text) else math.nan
    if not math.isfinite(eps_max) or eps_max <= 0:
        raise ValueError(f"eps_max: expected a number > 0, got {text[:40]!r}")
    m = int_field(row[9], "m", 1, 10**9)
    return idx, label, predict, distance, adv, seconds, method, steps, eps_max, m


def parse_attack_log(text: str | bytes, label: str, name: str = "log", *, max_rows: int = MAX_LOG_ROWS,
                     max_bytes: int = MAX_LOG_BYTES) -> AttackLog:
    """Parse an attack log (a file's or an upload's text or UTF-8 bytes). Every problem raises ``ValueError``
    starting ``log: {name}`` (with the line number for bad content), as :func:`parse_certify_log` does."""
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    check_size(size, max_bytes, f"log: {name}")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"log: {name} is not UTF-8 text") from None
    lines = tsv_rows(text, name)
    header = next(lines, (1, None))[1]
    if header is None:
        raise ValueError(f"log: {name} is empty (an attack log starts with the line {' '.join(ATTACK_HEADER)})")
    header = [h.strip() for h in header]
    if header not in (ATTACK_HEADER, ATTACK_LOG_HEADER):
        raise ValueError(f"log: {name} is not an attack log (header must be {' '.join(ATTACK_HEADER)}, optionally "
                         f"followed by {' '.join(ATTACK_EXTRA)}; got {str(header)[:120]})")
    extra, width = len(header) > len(ATTACK_HEADER), len(header)
    rows, seen = [], set()
    for lineno, row in lines:
        if not row:
            continue
        if len(rows) >= max_rows:
            raise ValueError(f"log: {name} has more than {max_rows:,} rows")
        if len(row) != width:
            raise ValueError(f"log: {name} line {lineno}: expected {width} tab-separated fields, got {len(row)}")
        try:
            parsed = _row(row, extra)
        except ValueError as err:
            raise ValueError(f"log: {name} line {lineno}: {err}") from None
        if parsed[0] in seen:
            raise ValueError(f"log: {name} line {lineno}: idx {parsed[0]} appears twice")
        seen.add(parsed[0])
        rows.append(parsed)
    cols = list(zip(*rows, strict=True)) if rows else [()] * width

    def as_int(k: int) -> np.ndarray:
        return np.array(cols[k], dtype=int)

    log = AttackLog(label=label, idx=as_int(0), true_label=as_int(1), predict=as_int(2),
                    distance=np.array(cols[3], dtype=float), adv_predict=as_int(4),
                    seconds=np.array(cols[5], dtype=float), path=name)
    if extra:
        log = dataclasses.replace(log, method=list(cols[6]), steps=as_int(7), eps_max=np.array(cols[8], dtype=float),
                                  m=as_int(9))
    return log


def default_attack_label(path: str | os.PathLike) -> str:
    """``attack σ = 0.50`` for our ``…/attack_0.50`` files, else the file name."""
    name = Path(path).name
    m = re.fullmatch(r"attack_(\d+(?:\.\d+)?)", name)
    return f"attack σ = {m.group(1)}" if m else name


def read_meta(path: str | os.PathLike) -> dict | None:
    """``PATH.meta.json`` (what a log was made with), or None when it is absent or not a JSON object."""
    meta = Path(str(path) + ".meta.json")
    try:
        value = json.loads(meta.read_text()) if meta.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_attack_log(path: str | os.PathLike, label: str | None = None, *, dataset: str | None = None,
                    max_bytes: int = MAX_LOG_BYTES) -> AttackLog:
    """Read an attack log file; ``ValueError`` starting ``log:`` (naming the file, and the line) for any problem.
    ``dataset`` defaults to the one its folders name; its ``.meta.json`` is read when it is there."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"log: no such file: {path}")
    check_size(path.stat().st_size, max_bytes, f"log: {path.name}")
    log = parse_attack_log(path.read_bytes(), label or default_attack_label(path), path.name, max_bytes=max_bytes)
    return dataclasses.replace(log, path=str(path), dataset=dataset or dataset_from_path(path), meta=read_meta(path))


def attack_log_beside(certify_path: str | os.PathLike) -> Path | None:
    """The attack log shipped next to a certify log ``…/sigma_<σ>``: ``…/attack_<σ>``, if it is there."""
    p = Path(certify_path)
    if not p.name.startswith("sigma_"):
        return None
    candidate = p.with_name("attack_" + p.name.removeprefix("sigma_"))
    return candidate if candidate.is_file() else None


def _model_and_sigma(meta: dict | None) -> tuple | None:
    if not meta or "sigma" not in meta:
        return None
    model = (meta.get("base_classifier") or {}).get("sha256")
    denoiser = (meta.get("denoiser") or {}).get("sha256")
    return model, denoiser, float(meta["sigma"]), meta.get("dataset")


def pair_logs(attacks: list[AttackLog], certs: list[CertifyLog]) -> list[tuple[AttackLog, CertifyLog]]:
    """Each attack log with the certify log of the same model and σ: by their ``.meta.json`` (model and denoiser
    sha256, σ, data set) when both have one; else ``attack_<σ>`` with ``sigma_<σ>`` in the same folder; else, for
    one attack log and one certify log, with each other. ``ValueError`` naming ``attack`` when a log has no partner,
    or two, or when a pair covers different images (their idx sets differ: accuracies of different images are
    not comparable) or gives one image two labels."""
    pairs = []
    for a in attacks:
        key = _model_and_sigma(a.meta)
        by_meta = [c for c in certs if key is not None and _model_and_sigma(read_meta(c.path)) == key]
        beside = attack_log_beside_name(a.path)
        by_name = [c for c in certs if beside is not None and c.path and Path(c.path).resolve() == beside]
        match = by_meta or by_name or (certs if len(certs) == 1 and len(attacks) == 1 else [])
        if len(match) != 1:
            names = ", ".join(Path(c.path).name or c.label for c in certs)
            raise ValueError(f"attack: {Path(a.path).name or a.label} pairs with "
                             f"{'no' if not match else len(match)} of the certify logs ({names}); give the certify "
                             "log of the same model and σ (its .meta.json, or sigma_<σ> beside attack_<σ>)")
        pairs.append((a, check_same_images(a, check_gaussian_l2(a, match[0]))))
    return pairs


def check_gaussian_l2(attack: AttackLog, cert: CertifyLog) -> CertifyLog:
    """``cert`` when its radii are Gaussian ℓ2 radii, the only ones an attack log's distances can be set against;
    ``ValueError`` naming ``attack`` otherwise (issue 30). The attack searches the *Gaussian*-smoothed classifier for
    the smallest *ℓ2* perturbation: against a Laplace or uniform log it measures another classifier, and an ℓ2
    distance below an ℓ1 or ℓ∞ radius contradicts nothing (‖δ‖₁ ≥ ‖δ‖₂ ≥ ‖δ‖∞), so a "soundness alarm" there
    would be false and a gap meaningless."""
    if (cert.noise, cert.norm) != ("gaussian", "l2"):
        an, cn = Path(attack.path).name or attack.label, Path(cert.path).name or cert.label
        raise ValueError(f"attack: {an} holds ℓ2 distances on the Gaussian-smoothed classifier, but {cn} certifies "
                         f"{cert.noise} noise {NORM_TITLES.get(cert.norm, cert.norm)} radii: they cannot be compared "
                         "(pair attack logs with Gaussian ℓ2 certify logs only)")
    return cert


def attack_log_beside_name(attack_path: str | os.PathLike) -> Path | None:
    """``…/sigma_<σ>`` for an attack log ``…/attack_<σ>`` (resolved), whether or not it exists."""
    p = Path(attack_path)
    if not p.name.startswith("attack_"):
        return None
    return p.with_name("sigma_" + p.name.removeprefix("attack_")).resolve()


def check_same_images(attack: AttackLog, cert: CertifyLog) -> CertifyLog:
    """``cert`` when both logs hold the same example indices with the same labels; ``ValueError`` otherwise."""
    a, c = set(attack.idx.tolist()), set(cert.idx.tolist())
    an, cn = Path(attack.path).name or attack.label, Path(cert.path).name or cert.label
    if a != c:
        raise ValueError(f"attack: {an} and {cn} cover different images ({len(a - c)} only in the attack log, "
                         f"{len(c - a)} only in the certify log, e.g. idx {min(a ^ c)}); run the attack with the "
                         "certify log's --skip/--max/--split")
    labels = dict(zip(cert.idx.tolist(), cert.true_label.tolist(), strict=True))
    wrong = [i for i, y in zip(attack.idx.tolist(), attack.true_label.tolist(), strict=True) if labels[i] != y]
    if wrong:
        raise ValueError(f"attack: {an} and {cn} give idx {wrong[0]} different labels: not the same data set")
    return cert


@dataclass(frozen=True)
class Alarm:
    """An image whose found adversarial distance is below its certified radius: the certificate says no class
    change within ``radius``, the attack changed the class at ``distance`` < ``radius``."""

    idx: int
    certified_class: int
    radius: float
    adv_class: int
    distance: float


def soundness_alarms(attack: AttackLog, cert: CertifyLog) -> list[Alarm]:
    """Images (of both logs) where the attack found another class than the certified one at a distance below the
    certified radius. Each log holds with probability 1 − α, so one alarm can be chance; many are a bug."""
    radius = dict(zip(cert.idx.tolist(), zip(cert.predict.tolist(), cert.radius.tolist(), strict=True), strict=True))
    out = []
    for i, d, adv in zip(attack.idx.tolist(), attack.distance.tolist(), attack.adv_predict.tolist(), strict=True):
        if i not in radius or not math.isfinite(d):
            continue
        cls, r = radius[i]
        if cls >= 0 and adv not in (cls, -1, NO_CLASS) and d < r:
            out.append(Alarm(i, cls, r, adv, d))
    return out


def gap_rows(attack: AttackLog, cert: CertifyLog, radii) -> dict[str, np.ndarray]:
    """Certified and empirical robust accuracy at each radius and their gap (empirical − certified), on the images
    of both logs (:func:`check_same_images`)."""
    check_same_images(attack, cert)
    certified = cert.certified_accuracy(radii)
    empirical = attack.empirical_accuracy(radii)
    return {"certified": certified, "empirical": empirical, "gap": empirical - certified}


def cost_summary(attack: AttackLog) -> str:
    """Seconds per image (mean, median) and, when logged, the steps per image."""
    if len(attack) == 0:
        return "no images"
    text = f"{attack.seconds.mean():.2f} s per image (median {np.median(attack.seconds):.2f} s, total " \
           f"{attack.seconds.sum() / 60:.1f} min)"
    if attack.steps is not None:
        text += f", {attack.steps.mean():.0f} steps per image on average"
    return text


def gap_table(pairs: list[tuple[AttackLog, CertifyLog]], radii) -> str:
    """Markdown: for each pair, certified accuracy, empirical robust accuracy and the gap at each radius, then the
    attack's cost and the number of images found adversarial."""
    radii = np.atleast_1d(np.asarray(radii, dtype=float))
    out = ["| | " + " | ".join(f"r = {r:g}" for r in radii) + " |", "| --- |" + " --- |" * len(radii)]
    notes = []
    for attack, cert in pairs:
        g = gap_rows(attack, cert, radii)
        out += [f"| certified: {cert.label} | " + " | ".join(f"{v:.3f}" for v in g["certified"]) + " |",
                f"| empirical: {attack.label} | " + " | ".join(f"{v:.3f}" for v in g["empirical"]) + " |",
                "| gap (empirical − certified) | " + " | ".join(f"{v:+.3f}" for v in g["gap"]) + " |"]
        notes.append(f"{attack.label}: {len(attack)} images, adversarial example found for "
                     f"{int(attack.found.sum())}; cost {cost_summary(attack)}")
    return "\n".join(out) + "\n\n" + "\n".join(notes) + "\n"


def alarm_text(alarms: list[Alarm], attack: AttackLog, cert: CertifyLog) -> str:
    """The loud message for soundness alarms (empty when there are none)."""
    if not alarms:
        return ""
    lines = [(f"SOUNDNESS ALARM: {len(alarms)} image(s) of {Path(attack.path).name or attack.label} have an "
              f"adversarial example closer than {Path(cert.path).name or cert.label} certifies:")]
    lines += [f"  idx {a.idx}: certified class {a.certified_class} at radius ≥ {a.radius:.4f}, but class "
              f"{a.adv_class} at distance {a.distance:.4f}" for a in alarms[:20]]
    if len(alarms) > 20:
        lines.append(f"  … and {len(alarms) - 20} more")
    return "\n".join(lines) + "\n"


def add_empirical_curves(fig, pairs: list[tuple[AttackLog, str | None]], max_radius: float | None = None):
    """Dashed empirical robust accuracy curves on a certified-accuracy figure (:func:`figure`): each attack log in
    the colour of the certify curve whose legend group is the given label (its own colour when None)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    colours = {t.legendgroup: t.line.color for t in fig.data if t.legendgroup}
    finite = [float(a.distance[a.found].max()) for a, _ in pairs if a.found.any()]
    xs = [t.x for t in fig.data if t.x is not None and len(t.x)]
    top = max_radius or max([float(np.max(x)) for x in xs] + finite + [1.0])
    r = np.linspace(0.0, 1.0, 400) * top
    palette = qualitative.Dark24
    for k, (attack, partner) in enumerate(pairs):
        colour = colours.get(partner) or palette[k % len(palette)]
        fig.add_trace(go.Scatter(x=r, y=attack.empirical_accuracy(r), mode="lines", legendgroup=partner or attack.label,
                                 name=f"{attack.label}: empirical (n = {len(attack)})",
                                 line={"shape": "hv", "color": colour, "dash": "dash"}))
    return fig


__all__ = [
    "ATTACK_EXTRA",
    "ATTACK_HEADER",
    "ATTACK_LOG_HEADER",
    "METHODS",
    "NOT_FOUND",
    "NO_CLASS",
    "Alarm",
    "AttackLog",
    "add_empirical_curves",
    "alarm_text",
    "attack_log_beside",
    "attack_log_beside_name",
    "ceil_str",
    "check_gaussian_l2",
    "check_same_images",
    "cost_summary",
    "default_attack_label",
    "empirical_accuracy",
    "format_row",
    "gap_rows",
    "gap_table",
    "pair_logs",
    "parse_attack_log",
    "read_attack_log",
    "read_meta",
    "soundness_alarms",
]
