"""Certification logs: reading, certified accuracy, and tables as Cohen et al. print them.

A certify log is tab-separated with header ``idx label predict radius correct time``
(abstention: predict −1, radius 0.0, correct 0); ``time`` is seconds or an
``H:MM:SS.ffffff`` duration. Certified accuracy at radius r is the fraction of
*all* rows, abstentions included, with correct = 1 and radius ≥ r (Cohen et al.'s
"approximate certified accuracy"); :func:`accuracy_lower_bound` turns it into a
bound on the true certified accuracy (App. D).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rs_core.checks import check_alpha
from rs_core.rounding import floor_str
from rs_core.untrusted import MAX_CLASSES, MAX_LOG_BYTES, MAX_LOG_ROWS, MAX_RADII, check_size, reading

CERTIFY_HEADER = ["idx", "label", "predict", "radius", "correct", "time"]
PREDICT_HEADER = ["idx", "label", "predict", "correct", "time"]


@dataclass
class CertifyLog:
    """One certify log as arrays (one entry per row) and its label for tables and plots."""

    label: str
    idx: np.ndarray
    true_label: np.ndarray
    predict: np.ndarray
    radius: np.ndarray
    correct: np.ndarray
    seconds: np.ndarray
    path: str = ""
    dataset: str | None = None  # the data set the rows index into; logs of different ones are never compared
    alpha: float | None = None  # CERTIFY's α when known (for the App. D bound)
    norm: str = "l2"  # the norm of the radii (OUTFILE.meta.json's "norm"; Cohen et al.'s logs and older ones: ℓ2)
    noise: str = "gaussian"  # the smoothing noise (the same file's "noise")

    def __len__(self) -> int:
        return len(self.idx)

    @classmethod
    def from_rows(cls, label: str, rows, path: str = "", *, dataset: str | None = None,
                  alpha: float | None = None) -> CertifyLog:
        """From ``(idx, label, predict, radius, correct, seconds)`` tuples (see ``certify_examples``)."""
        arr = np.array(list(rows), dtype=float).reshape(-1, 6)
        return cls(label=label, idx=arr[:, 0].astype(int), true_label=arr[:, 1].astype(int),
                   predict=arr[:, 2].astype(int), radius=arr[:, 3], correct=arr[:, 4].astype(int),
                   seconds=arr[:, 5], path=path, dataset=dataset, alpha=alpha)

    def restrict(self, idx) -> CertifyLog:
        """The rows whose example index is in ``idx`` (for comparing logs on the same images)."""
        keep = np.isin(self.idx, np.asarray(list(idx), dtype=int))
        return dataclasses.replace(self, idx=self.idx[keep], true_label=self.true_label[keep],
                                   predict=self.predict[keep], radius=self.radius[keep], correct=self.correct[keep],
                                   seconds=self.seconds[keep])

    def certified_accuracy(self, radii) -> np.ndarray:
        """Fraction of all rows with correct = 1 and radius ≥ r, for each r (vectorized)."""
        r = np.atleast_1d(np.asarray(radii, dtype=float))
        ok = (self.correct == 1)[None, :] & (self.radius[None, :] >= r[:, None])
        return ok.mean(axis=1) if len(self) else np.zeros(len(r))


def format_certify_log(log: CertifyLog) -> str:
    """The log as Cohen et al.'s tab-separated text (time in seconds).

    Radii are written with 4 decimals rounded *down* (:func:`rs_core.rounding.floor_str`), never up:
    Cohen et al.'s ``{:.3}`` rounds to nearest, so a table read from it could count a radius
    at a value above the certified one.
    """
    lines = ["\t".join(CERTIFY_HEADER)]
    lines += [f"{i}\t{y}\t{p}\t{floor_str(r)}\t{c}\t{t:.3f}" for i, y, p, r, c, t in
              zip(log.idx, log.true_label, log.predict, log.radius, log.correct, log.seconds, strict=True)]
    return "\n".join(lines) + "\n"


# A decimal number as Python and C print one (ASCII digits only: float() alone also takes '1_0' and '١').
_FLOAT = re.compile(r"[-+]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][-+]?[0-9]{1,3})?")


def parse_duration(text: str) -> float:
    """Seconds from ``'15.4'`` or ``'0:02:31.238689'`` (``str(datetime.timedelta)``, days allowed).

    ``ValueError`` for anything else, including negative, NaN or infinite durations.
    """
    text = text.strip()
    m = re.fullmatch(r"(?:([0-9]{1,9}) days?, )?([0-9]{1,9}):([0-9]{2}):([0-9]{2}(?:\.[0-9]{1,9})?)", text)
    if m:
        days, h, mi, sec = m.groups()
        seconds = int(days or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(sec)
    else:
        seconds = float(text) if _FLOAT.fullmatch(text) else math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time: expected seconds >= 0 or H:MM:SS, got {text[:40]!r}")
    return seconds


def default_label(path: str | os.PathLike) -> str:
    """``σ = 0.25`` for Cohen et al.'s ``…/sigma_0.25`` files, else the file name."""
    name = Path(path).name
    m = re.fullmatch(r"sigma_(\d+(?:\.\d+)?)", name)
    return f"σ = {m.group(1)}" if m else name


def _int_field(text: str, field: str, low: int, high: int) -> int:
    text = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,12}", text):  # plain ASCII digits: no '1_000', no other scripts
        raise ValueError(f"{field}: expected an integer, got {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{field}: {value} is outside [{low}, {high}]")
    return value


def _row(row: list[str]) -> tuple[int, int, int, float, int, float]:
    idx = _int_field(row[0], "idx", 0, 2**31 - 1)
    label = _int_field(row[1], "label", 0, MAX_CLASSES - 1)
    predict = _int_field(row[2], "predict", -1, MAX_CLASSES - 1)
    text = row[3].strip()
    radius = float(text) if _FLOAT.fullmatch(text) else math.nan
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius: expected a finite number >= 0, got {text[:40]!r}")
    correct = _int_field(row[4], "correct", 0, 1)
    if correct != int(predict == label):
        raise ValueError(f"correct: is {correct} but predict {predict} {'=' if predict == label else '≠'} label "
                         f"{label}")
    if predict == -1 and radius != 0:
        raise ValueError(f"radius: an abstention (predict -1) has radius 0, got {radius}")
    return idx, label, predict, radius, correct, parse_duration(row[5])


def _tsv_rows(text: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields); csv's own error type (NUL bytes, fields over 128 KB) becomes ``ValueError``."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    while True:
        with reading(f"log: {name}", f"line {reader.line_num + 1} is not tab-separated text"):
            row = next(reader, None)
        if row is None:
            return
        yield reader.line_num, row


def parse_certify_log(text: str | bytes, label: str, name: str = "log", *, max_rows: int = MAX_LOG_ROWS,
                      max_bytes: int = MAX_LOG_BYTES) -> CertifyLog:
    """Parse a certify log (e.g. an upload, as text or UTF-8 bytes).

    Every problem raises ``ValueError`` starting ``log: {name}`` (with the line number for bad
    content): not UTF-8, over ``max_bytes`` or ``max_rows``, a wrong header, a row that is not six
    fields, values out of range (NaN or negative radius, ``correct`` not ``predict == label``, an
    abstention with a radius), or an example index listed twice.
    """
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    check_size(size, max_bytes, f"log: {name}")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"log: {name} is not UTF-8 text") from None
    lines = _tsv_rows(text, name)
    header = next(lines, (1, None))[1]
    if header is None:
        raise ValueError(f"log: {name} is empty (a certify log starts with the line {' '.join(CERTIFY_HEADER)})")
    if [h.strip() for h in header] != CERTIFY_HEADER:
        raise ValueError(f"log: {name} is not a certify log (header must be {' '.join(CERTIFY_HEADER)}, got "
                         f"{str(header)[:120]})")
    rows, seen = [], set()
    for lineno, row in lines:
        if not row:
            continue
        if len(rows) >= max_rows:
            raise ValueError(f"log: {name} has more than {max_rows:,} rows")
        if len(row) != 6:
            raise ValueError(f"log: {name} line {lineno}: expected 6 tab-separated fields, got {len(row)}")
        try:
            parsed = _row(row)
        except ValueError as err:
            raise ValueError(f"log: {name} line {lineno}: {err}") from None
        if parsed[0] in seen:
            raise ValueError(f"log: {name} line {lineno}: idx {parsed[0]} appears twice")
        seen.add(parsed[0])
        rows.append(parsed)
    return CertifyLog.from_rows(label, rows, path=name)


def dataset_from_path(path: str | os.PathLike) -> str | None:
    """The data set a log's folders name (``…/certify/cifar10/resnet110/…``, ``checkpoints/mnist/…``), if any.

    >>> dataset_from_path("data/certify/cifar10/resnet110/noise_0.25/test/sigma_0.25")
    'cifar10'
    >>> dataset_from_path("checkpoints/cifar10-partial/cifar_cnn/noise_0.50/sigma_0.50"), dataset_from_path("x/log")
    ('cifar10-partial', None)
    """
    from rs_core.data import DATASETS

    for part in reversed(Path(path).parts[:-1]):
        if part in DATASETS:
            return part
    return None


def distinct_labels(logs: list[CertifyLog]) -> list[CertifyLog]:
    """The logs, those whose label repeats an earlier one's relabelled "label #2", "label #3" … (copies; the rest
    as they are): tables and legends key rows by label, and Cohen et al.'s own logs share names (``sigma_0.25``
    in every model's folder), as does one file uploaded twice. A new label never takes one that another log
    already has (logs named ``x``, ``x`` and ``x #2`` become ``x``, ``x #3``, ``x #2``).

    >>> a = CertifyLog.from_rows("sigma_0.25", [(0, 1, 1, 0.5, 1, 0.1)])
    >>> [log.label for log in distinct_labels([a, a, a])]
    ['sigma_0.25', 'sigma_0.25 #2', 'sigma_0.25 #3']
    """
    return [log if label == log.label else dataclasses.replace(log, label=label)
            for log, label in zip(logs, distinct_names([log.label for log in logs]), strict=True)]


def distinct_names(names: list[str]) -> list[str]:
    """The names, each repeat of an earlier one numbered "name #2", "name #3" …, never taking a name that is
    already in the list (``x``, ``x``, ``x #2`` → ``x``, ``x #3``, ``x #2``).

    >>> distinct_names(["x", "x", "x #2"])
    ['x', 'x #3', 'x #2']
    """
    taken, used, out = set(names), set(), []
    for name in names:
        label, k = name, 1
        while label in used or (k > 1 and label in taken):
            k += 1
            label = f"{name} #{k}"
        used.add(label)
        out.append(label)
    return out


MAX_LABEL = 80
"""Characters of an uploaded file's name kept in a label (legends and tables stay readable)."""


def upload_label(name: str) -> str:
    """One clear label for an uploaded log named ``name``: Cohen et al.'s ``sigma_0.25`` reads
    ``σ = 0.25 (sigma_0.25)``, any other name is itself (never ``mylog.tsv (mylog.tsv)``). Control characters
    become spaces, a name longer than ``MAX_LABEL`` is shortened with "…", an empty one reads "uploaded log".

    >>> upload_label("sigma_0.25"), upload_label("mylog.tsv"), upload_label("  ")
    ('σ = 0.25 (sigma_0.25)', 'mylog.tsv', 'uploaded log')
    """
    name = " ".join("".join(" " if not c.isprintable() else c for c in str(name)).split())
    if len(name) > MAX_LABEL:
        name = name[:MAX_LABEL - 1] + "…"
    if not name:
        return "uploaded log"
    # Only Cohen et al.'s sigma_<σ> gets a reading; a name with a folder in it (or "." …) stays as given.
    short = default_label(name) if "/" not in name and "\\" not in name else name
    return name if short in (name, "") else f"{short} ({name})"


@dataclass(frozen=True)
class Problem:
    """Why an uploaded file is not among the curves: ``level`` "error" (unreadable) or "warning" (no rows)."""

    level: str
    message: str


def read_uploads(files: list[tuple[str, bytes]], dataset: str | None = None, *, max_bytes: int = MAX_LOG_BYTES,
                 max_rows: int = MAX_LOG_ROWS) -> tuple[list[CertifyLog], list[Problem]]:
    """Uploaded certify logs ``(file name, bytes)`` as logs labelled by :func:`upload_label` (made distinct by
    :func:`distinct_names` over all the files), each of data set ``dataset``, and one :class:`Problem` per file
    left out: unreadable (the ``ValueError`` of :func:`parse_certify_log`) or with a header but no rows. Raises
    nothing else, whatever the names and bytes: a page shows the problems as messages and plots the rest.
    """
    logs, problems = [], []
    # Labels made distinct over all the files, readable or not: two bad files of one name get two messages that
    # can be told apart, and the curves keep the numbers their files had in the list.
    for (_, data), label in zip(files, distinct_names([upload_label(name) for name, _ in files]), strict=True):
        try:
            log = parse_certify_log(data, label, label, max_bytes=max_bytes, max_rows=max_rows)
        except ValueError as err:
            problems.append(Problem("error", str(err)))
            continue
        if len(log) == 0:
            problems.append(Problem("warning", f"log: {label} has a header but no rows; it is left out."))
            continue
        logs.append(dataclasses.replace(log, dataset=dataset))
    return logs, problems


def same_images(logs: list[CertifyLog]) -> bool:
    """Whether every log holds the same example indices (then restricting to common images changes nothing)."""
    sets = [frozenset(log.idx.tolist()) for log in logs]
    return all(s == sets[0] for s in sets[1:])


def accuracy_tables(logs: list[CertifyLog], radii, alpha: float, rho: float) -> tuple[dict[str, list], dict[str, list]]:
    """The page's two tables, one row per log (columns: log, data set, n images, then one per radius): the
    certified accuracy, and its App. D lower bound at each log's own α (``alpha`` for logs without one, marked
    "(box)"). A log with no rows gets "—" for its bound (there is no bound on zero images)."""
    radii = np.atleast_1d(np.asarray(radii, dtype=float))
    columns = [f"{radius_prefix(logs)}r = {r:g}" for r in radii]
    acc = [log.certified_accuracy(radii) for log in logs]
    labels = [log.label for log in logs]
    first: dict[str, list] = {"log": labels, "data set": [log.dataset or "not stated" for log in logs],
                              "n images": [len(log) for log in logs]}
    first.update({c: [f"{a[j]:.3f}" for a in acc] for j, c in enumerate(columns)})
    lower: dict[str, list] = {"log": labels,
                              "α": [f"{log.alpha:g}" if log.alpha else f"{alpha:g} (box)" for log in logs]}
    lower.update({c: [floor_str(accuracy_lower_bound(a[j], len(log), log.alpha or alpha, rho), 3) if len(log)
                      else "—" for a, log in zip(acc, logs, strict=True)] for j, c in enumerate(columns)})
    return first, lower


def common_images(logs: list[CertifyLog]) -> tuple[list[CertifyLog], set[int]]:
    """The logs restricted to the example indices present in all of them, and those indices.

    Refuses (``ValueError`` naming ``logs``) logs of different data sets, whose indices name different
    images: intersecting them would compare unrelated rows (a 500-row CIFAR-10 log cut to the 51
    indices it shares with a partial-CIFAR-10 log). A log whose data set is unknown is compared
    only with logs whose data set is unknown too.
    """
    datasets = {log.dataset for log in logs}
    if len(datasets) > 1:
        named = ", ".join(f"{d or 'not stated'}: {sum(log.dataset == d for log in logs)} log(s)"
                          for d in sorted(datasets, key=lambda d: d or ""))
        raise ValueError(f"logs: they index different data sets ({named}); compare logs of one data set")
    if not logs:
        return [], set()
    common = set(logs[0].idx.tolist()).intersection(*(log.idx.tolist() for log in logs[1:]))
    return [log.restrict(common) for log in logs], common


def read_certify_log(path: str | os.PathLike, label: str | None = None, *, dataset: str | None = None,
                     alpha: float | None = None, max_bytes: int = MAX_LOG_BYTES) -> CertifyLog:
    """Read a certify log file (ours or Cohen et al.'s); ``ValueError`` starting ``log:`` for any problem.

    ``dataset`` defaults to the one the file's folders name (:func:`dataset_from_path`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"log: no such file: {path}")
    check_size(path.stat().st_size, max_bytes, f"log: {path.name}")
    log = parse_certify_log(path.read_bytes(), label or default_label(path), path.name, max_bytes=max_bytes)
    noise, norm = log_noise_norm(path)
    return dataclasses.replace(log, path=str(path), dataset=dataset or dataset_from_path(path), alpha=alpha,
                               noise=noise, norm=norm)


def log_noise_norm(path: str | os.PathLike) -> tuple[str, str]:
    """The (noise, norm) that a log's ``.meta.json`` records; ("gaussian", "l2") for a log without one or without
    them (Cohen et al.'s logs, and ours from before other noises existed). ``ValueError`` starting ``log:`` for a
    sidecar naming an unknown noise or norm."""
    import json

    from rs_core.smoothing.noises import NOISES, NORMS

    side = Path(path).with_name(Path(path).name + ".meta.json")
    try:
        meta = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    noise, norm = meta.get("noise", "gaussian"), meta.get("norm") or "l2"
    if noise not in NOISES or norm not in NORMS:
        raise ValueError(f"log: {Path(path).name}.meta.json names noise {noise!r} and norm {norm!r}; known: "
                         f"{', '.join(NOISES)}; {', '.join(NORMS)}")
    return noise, norm


NORM_TITLES = {"l2": "ℓ2", "l1": "ℓ1", "linf": "ℓ∞"}


def radius_prefix(logs: list[CertifyLog]) -> str:
    """"ℓ1 " or "ℓ∞ " before "r = …" in the tables of ``logs`` whose radii are in that norm; "" for ℓ2 radii, so
    that the tables of Gaussian ℓ2 logs stay Cohen et al.'s byte for byte. ``ValueError`` (``logs:``) when the logs
    mix norms (:func:`check_one_norm`)."""
    norm = check_one_norm(logs) if logs else "l2"
    return "" if norm == "l2" else NORM_TITLES.get(norm, norm) + " "


def check_one_norm(logs: list[CertifyLog]) -> str:
    """The one norm of ``logs``' radii; ``ValueError`` starting ``logs:`` when they mix norms (an ℓ1 radius and an
    ℓ2 radius are different shapes, not numbers on one axis)."""
    norms = sorted({log.norm for log in logs})
    if len(norms) > 1:
        which = "; ".join(f"{log.label} ({NORM_TITLES.get(log.norm, log.norm)})" for log in logs)
        raise ValueError(f"logs: radii of different norms cannot share a table or a plot: {which}. Compare logs of "
                         "one norm at a time")
    return norms[0] if norms else "l2"


def accuracy_lower_bound(accuracy, m: int, alpha: float, rho: float = 0.001):
    """Lower bound on the true certified accuracy, holding with probability ≥ 1 − ρ (Cohen et al. App. D).

    CERTIFY run with failure rate α on each of m examples reports "correct and
    radius ≥ r" (Y_i = 1) falsely with probability ≤ α on each example where the
    truth is 0. With S the number of false reports among the m(1 − a) such
    examples, m·â ≤ m·a + S, and Bernstein's inequality for a sum of independent
    Bernoulli(p_i ≤ α ≤ ½) variables (Boucheron, Lugosi & Massart 2013, Thm 2.10)
    gives S ≤ mα + √(2mα(1−α)·ln(1/ρ)) + ln(1/ρ)/3 with probability ≥ 1 − ρ.
    Hence a ≥ â − α − √(2α(1−α)·ln(1/ρ)/m) − ln(1/ρ)/(3m), clipped at 0.

    >>> round(float(accuracy_lower_bound(0.6, 500, 0.001, 0.001)), 4)
    0.5891
    """
    alpha, rho = check_alpha(alpha), check_alpha(rho, "rho")
    if alpha > 0.5:
        raise ValueError(f"alpha: the bound needs alpha <= 0.5, got {alpha}")
    if m < 1:
        raise ValueError(f"m: must be >= 1, got {m}")
    log_term = math.log(1.0 / rho)
    slack = alpha + math.sqrt(2.0 * alpha * (1.0 - alpha) * log_term / m) + log_term / (3.0 * m)
    return np.maximum(np.asarray(accuracy, dtype=float) - slack, 0.0)


def radius_grid(start: float, stop: float, step: float) -> np.ndarray:
    """``np.arange(start, stop + step, step)``, the radii of Cohen et al.'s tables (at most ``MAX_RADII``).

    >>> radius_grid(0, 1, 0.25).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    values = (start, stop, step)
    # Radii past 10**6 or steps under 10**-6 mean nothing (logs carry 4 decimals) and would let
    # floating point drop or repeat grid points.
    if not all(math.isfinite(v) for v in values) or not 0 <= start <= stop <= 1e6 or not 1e-6 <= step <= 1e6:
        raise ValueError(f"radius_range: need 0 <= START <= STOP <= 1e6 and 1e-6 <= STEP <= 1e6, got {values}")
    if (stop - start) / step + 1 > MAX_RADII:
        raise ValueError(f"radius_range: {(stop - start) / step + 1:.3g} radii is over the limit of {MAX_RADII:,}")
    return np.arange(start, stop + step, step)


def parse_radii(text: str) -> np.ndarray:
    """Radii typed by a user, separated by commas, semicolons or spaces; ``ValueError`` naming ``radii``.

    >>> parse_radii("0, 0.5; 1").tolist()
    [0.0, 0.5, 1.0]
    """
    parts = [t for t in re.split(r"[,;\s]+", text.strip()) if t]
    if not parts:
        raise ValueError("radii: give at least one radius")
    if len(parts) > MAX_RADII:
        raise ValueError(f"radii: {len(parts):,} radii is over the limit of {MAX_RADII:,}")
    bad = [t for t in parts if not _FLOAT.fullmatch(t) or not math.isfinite(float(t)) or float(t) < 0]
    if bad:
        raise ValueError(f"radii: give numbers >= 0, got {bad[0][:40]!r}")
    return np.array([float(t) for t in parts])


def _table(logs: list[CertifyLog], radii) -> np.ndarray:
    return np.array([log.certified_accuracy(radii) for log in logs]).reshape(len(logs), len(radii))


def oracle_log(logs: list[CertifyLog], label: str = "per-image oracle") -> CertifyLog:
    """Per image, the best of ``logs`` in hindsight: correct if any log is, at the largest radius among the correct
    ones. Not a certificate (the choice is made after seeing every result); the ceiling any router between these
    logs' methods could reach. The logs must hold the same images (:func:`common_images`).

    >>> a = CertifyLog.from_rows("a", [(0, 1, 1, 0.5, 1, 0), (1, 2, 2, 0.2, 1, 0)])
    >>> b = CertifyLog.from_rows("b", [(0, 1, 1, 0.3, 1, 0), (1, 2, 0, 0.9, 0, 0)])
    >>> oracle_log([a, b]).radius.tolist()
    [0.5, 0.2]
    """
    if not logs:
        raise ValueError("logs: the oracle needs at least one log")
    order = [np.argsort(log.idx) for log in logs]
    idx = logs[0].idx[order[0]]
    if any(len(log) != len(idx) or not np.array_equal(log.idx[o], idx) for log, o in zip(logs, order)):
        raise ValueError("logs: the oracle needs logs of the same images (use common_images / --common)")
    score = np.stack([np.where(log.correct[o] == 1, log.radius[o], -1.0) for log, o in zip(logs, order)])
    best = score.argmax(0)
    pick = lambda field: np.stack([getattr(log, field)[o] for log, o in zip(logs, order)])[best, np.arange(len(idx))]
    return dataclasses.replace(logs[0], label=label, idx=idx, true_label=pick("true_label"), predict=pick("predict"),
                               radius=pick("radius"), correct=pick("correct"), seconds=pick("seconds"), path="")


def versus_best(first: CertifyLog, others: list[CertifyLog], radii) -> list[dict]:
    """``first`` against the best of ``others`` at each radius (the one with the highest certified accuracy there),
    on the same images: the difference of certified accuracies and its paired standard error
    sd(d_i)/√n with d_i = [first certifies image i correctly at r] − [the best other does]."""
    logs, _ = common_images([first, *others])
    first, others = logs[0], logs[1:]
    order = [np.argsort(log.idx) for log in logs]
    out = []
    for r in np.atleast_1d(np.asarray(radii, dtype=float)):
        ok = [((log.correct == 1) & (log.radius >= r))[o].astype(float) for log, o in zip(logs, order)]
        accs = [float(v.mean()) for v in ok[1:]]
        j = int(np.argmax(accs))
        d = ok[0] - ok[1 + j]
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        out.append({"radius": float(r), "first": float(ok[0].mean()), "best": others[j].label,
                    "best_accuracy": accs[j], "difference": float(d.mean()), "se": se})
    return out


def versus_table(first: CertifyLog, others: list[CertifyLog], radii) -> str:
    """Markdown: ``first`` − the best of ``others`` at each radius, ± its paired standard error."""
    rows = versus_best(first, others, radii)
    head = "| | " + " | ".join(f"r = {row['radius']:g}" for row in rows) + " |"
    return "\n".join([
        head, "| --- |" + " --- |" * len(rows),
        "| best of the others | " + " | ".join(f"{row['best']} {row['best_accuracy']:.3f}" for row in rows) + " |",
        f"| {first.label} | " + " | ".join(f"{row['first']:.3f}" for row in rows) + " |",
        f"| {first.label} − best | " + " | ".join(f"{row['difference']:+.3f} ± {row['se']:.3f}" for row in rows)
        + " |"]) + "\n"


def markdown_table(logs: list[CertifyLog], radii) -> str:
    """Cohen et al.'s Markdown table (byte for byte): the best row at each radius is starred."""
    acc = _table(logs, radii)
    out = ["|  | " + "".join(f"{radius_prefix(logs)}r = {r:.3} |" for r in radii), "| --- | " + " --- |" * len(radii)]
    for i, log in enumerate(logs):
        cells = "".join(f"{acc[i, j]:.2f}<b>*</b> |" if i == acc[:, j].argmax() else f"{acc[i, j]:.2f} |"
                        for j in range(len(radii)))
        out.append(f"<b> {log.label.replace('σ', '&sigma;')} </b>| {cells}")
    return "\n".join(out) + "\n"


def latex_table(logs: list[CertifyLog], radii) -> str:
    """Cohen et al.'s LaTeX table (byte for byte): the best row at each radius in bold."""
    acc = _table(logs, radii)
    tex = {"": "", "ℓ1 ": "\\ell_1\\ ", "ℓ∞ ": "\\ell_\\infty\\ "}[radius_prefix(logs)]
    out = ["".join(f"& ${tex}r = {r:.3}$" for r in radii) + "\\\\", "\\midrule"]
    for i, log in enumerate(logs):
        label = f"${log.label.replace('σ', chr(92) + 'sigma')}$" if "σ" in log.label else log.label
        cells = "".join(f" & \\textbf{{{acc[i, j]:.2f}}}" if i == acc[:, j].argmax() else f" & {acc[i, j]:.2f}"
                        for j in range(len(radii)))
        out.append(label + cells + "\\\\")
    return "\n".join(out) + "\n"


def csv_table(logs: list[CertifyLog], radii, alpha: float = 0.001, rho: float = 0.001) -> str:
    """Long-format CSV: label, radius, certified accuracy, its App. D lower bound, rows.
    ``alpha`` is CERTIFY's α for logs that do not carry their own (``CertifyLog.alpha``)."""
    norm = check_one_norm(logs) if logs else "l2"
    lines = [f"label,radius{'' if norm == 'l2' else '_' + norm},certified_accuracy,lower_bound,rows"]
    for log in logs:
        acc = log.certified_accuracy(radii)
        low = accuracy_lower_bound(acc, max(len(log), 1), log.alpha or alpha, rho)
        lines += [f"{log.label},{r:g},{floor_str(a)},{floor_str(b)},{len(log)}"
                  for r, a, b in zip(radii, acc, low, strict=True)]
    return "\n".join(lines) + "\n"


def figure(logs: list[CertifyLog], alpha: float = 0.001, rho: float = 0.001, max_radius: float | None = None):
    """Plotly figure: certified accuracy against radius, one curve per log (its row count in the legend), with
    the App. D lower band at each log's own α (``alpha`` for logs that do not carry one)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    largest = max([float(log.radius.max()) for log in logs if len(log)] + [1.0])
    top = max_radius or (largest * 1.05 if largest < 1e300 else largest)  # 1.05 × a radius near 1.8e308 is inf
    r = np.linspace(0.0, 1.0, 400) * top  # not linspace(0, top): its step overflows for a top near 1.8e308
    palette = qualitative.Plotly
    fig = go.Figure()
    for i, log in enumerate(logs):
        acc = log.certified_accuracy(r)
        low = accuracy_lower_bound(acc, max(len(log), 1), log.alpha or alpha, rho)  # the log's own α when known
        color = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=r, y=acc, mode="lines", name=f"{log.label} (n = {len(log)})", legendgroup=log.label,
                                 line={"shape": "hv", "color": color}))
        # The App. D bound in the same colour, dotted, toggled together with its curve.
        fig.add_trace(go.Scatter(x=r, y=low, mode="lines", name=f"{log.label}: lower bound", legendgroup=log.label,
                                 showlegend=False, line={"shape": "hv", "color": color, "dash": "dot"}))
    norm = check_one_norm(logs) if logs else "l2"
    fig.update_layout(xaxis_title=f"radius ({NORM_TITLES.get(norm, norm)})", yaxis_title="certified accuracy", yaxis_range=[0, 1],
                      template="plotly_white", legend={"orientation": "h", "y": -0.25},
                      title={"text": f"solid: certified accuracy · dotted: lower bound, probability ≥ {1 - rho:g} "
                                     "(App. D)", "font": {"size": 13}})
    return fig


# Public forms of the row checks above, shared with the other log readers (rs_core.logs.attack_logs): every log of
# rs_core refuses the same malformed numbers the same way.

def tsv_rows(text: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of tab-separated ``text``; ``ValueError`` naming ``log: {name}`` for what csv refuses."""
    return _tsv_rows(text, name)


def int_field(text: str, field: str, low: int, high: int) -> int:
    """An integer in [low, high] written in plain ASCII digits; ``ValueError`` naming ``field`` otherwise."""
    return _int_field(text, field, low, high)


def is_decimal(text: str) -> bool:
    """Whether ``text`` is a decimal number as Python and C print one (ASCII digits only; no 'inf', no 'nan')."""
    return bool(_FLOAT.fullmatch(text))
