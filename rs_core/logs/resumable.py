"""Logs that survive a crash and several writers: resume a killed run, merge the ranks' rows into one sorted log.

A data-set command writes ``OUTFILE`` (Cohen et al.'s tab-separated format) and ``OUTFILE.meta.json`` (what the
log was made with). Rerunning the same command continues where it stopped: the rows already in ``OUTFILE`` (and in
``OUTFILE.part<r>`` files a killed multi-process run left) are kept and their examples skipped. A log made with
different settings — another model file, σ, N, α, seed… — is refused, naming what differs, and nothing is
touched; ``overwrite=True`` starts over.

One process appends to ``OUTFILE`` directly (``tail -f`` works); under ``torchrun`` each rank writes its own
``OUTFILE.part<rank>`` and rank 0 merges them at the end. Merging keeps complete lines only (a process killed
mid-line leaves a half row, which is dropped and recomputed), one row per example, sorted by ``idx``; it writes a
temporary file and renames it, so the log on disk is always a whole one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from rs_core.logs.distributed import Rank, barrier, from_main


def _complete_rows(path: Path, header: Sequence[str]) -> dict[int, str]:
    """{idx: line} of the complete rows of a log (or part) file; ``ValueError`` if it is another kind of file."""
    rows: dict[int, str] = {}
    if not path.exists():
        return rows
    complete = path.read_text(errors="replace").split("\n")[:-1]  # after the last newline: a row cut short
    if complete and complete[0].startswith("idx\t"):
        if complete[0].split("\t") != list(header):
            raise ValueError(f"resume: {path.name} is not a log of this command (its header is {complete[0][:120]!r})")
        complete = complete[1:]
    for line in complete:
        fields = line.split("\t")
        if len(fields) != len(header):
            continue
        try:
            idx = int(fields[0])
        except ValueError:
            continue
        rows.setdefault(idx, line)
    return rows


def _parts(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".part*"))


def merge(path: Path, header: Sequence[str]) -> dict[int, str]:
    """Fold ``path``'s part files into ``path``: one row per idx (the log's own first, then the parts'), sorted,
    written whole (temporary file + rename); the parts are then removed. Returns the rows."""
    rows = _complete_rows(path, header)
    parts = _parts(path)
    for part in parts:
        for idx, line in _complete_rows(part, header).items():
            rows.setdefault(idx, line)
    tmp = path.with_name(path.name + ".merging")
    with open(tmp, "w") as f:
        f.write("\t".join(header) + "\n")
        for idx in sorted(rows):
            f.write(rows[idx] + "\n")
    os.replace(tmp, path)
    for part in parts:
        part.unlink()
    return rows


def _describe(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _dig(record: Mapping[str, Any], key: str) -> Any:
    value: Any = record
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


class ResumableLogs:
    """The log file(s) of one data-set run, resumable and shared by ranks.

    ``files``: {path: header}, e.g. the log and dual RS's ``.dual.tsv`` beside it (an example is done when every
    file has its row); the first path is ``OUTFILE``, beside which ``OUTFILE.meta.json`` is kept. ``record``: the
    metadata written there; ``identity``: its keys (dotted for nested ones, e.g. ``base_classifier.sha256``) that
    must be equal for a run to continue an existing log; ``defaults``: the value an identity key had in records
    written before it existed (e.g. the plain fast path).
    """

    def __init__(self, files: Mapping[str | Path, Sequence[str]], record: Mapping[str, Any],
                 identity: Iterable[str], rank: Rank | None = None, *, overwrite: bool = False,
                 defaults: Mapping[str, Any] | None = None) -> None:
        self.files = {Path(p): list(h) for p, h in files.items()}
        self.out = next(iter(self.files))
        self.meta_path = self.out.with_name(self.out.name + ".meta.json")
        self.record = dict(record)
        self.identity = tuple(identity)
        self.rank = rank or Rank()
        self.overwrite = overwrite
        # Identity keys that records written before the key existed lack, with the value they implied.
        self.defaults = dict(defaults or {})
        self._handles: dict[Path, IO[str]] = {}

    def _check_previous(self) -> None:
        if not any(p.exists() or _parts(p) for p in self.files):
            return
        if not self.meta_path.exists():
            raise ValueError(f"resume: {self.out.name} exists without {self.meta_path.name}, so what it was made with "
                             "is unknown; pass --overwrite to start over, or choose another OUTFILE")
        try:
            old = json.loads(self.meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"resume: {self.meta_path.name} is not valid JSON; pass --overwrite to start over") \
                from None
        def before(k: str) -> Any:
            value = _dig(old, k)
            return self.defaults.get(k) if value is None else value

        differ = [k for k in self.identity if _describe(before(k)) != _describe(_dig(self.record, k))]
        if differ:
            what = "; ".join(f"{k} was {_describe(before(k))}, now {_describe(_dig(self.record, k))}"
                             for k in differ)
            raise ValueError(f"resume: {self.out.name} was made with other settings ({what}); pass --overwrite to "
                             "start over, or choose another OUTFILE")

    def _prepare_main(self) -> str | None:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            if self.overwrite:
                for p in self.files:
                    for q in [p, *_parts(p)]:
                        q.unlink(missing_ok=True)
            self._check_previous()
            for p, header in self.files.items():
                merge(p, header)
            self.meta_path.write_text(json.dumps(self.record, indent=2, default=str) + "\n")
        except (ValueError, OSError) as err:
            return str(err)
        return None

    def prepare(self) -> set[int]:
        """Check and fold what a previous run left (rank 0), then on every rank: the idx of the examples already
        done. A problem raises ``ValueError`` on every rank, so that none of them waits for the others."""
        error = from_main(self._prepare_main() if self.rank.is_main else None, self.rank)
        if error:
            raise ValueError(error)
        barrier(self.rank)
        done: set[int] | None = None
        for p, header in self.files.items():
            ids = set(_complete_rows(p, header))
            done = ids if done is None else done & ids
        return done or set()

    def open(self) -> None:
        for p in self.files:
            target = p if self.rank.world == 1 else p.with_name(f"{p.name}.part{self.rank.rank}")
            # Kept open across write() calls (one per row) and closed by close()/finish().
            self._handles[p] = open(target, "a" if self.rank.world == 1 else "w")  # noqa: SIM115

    def write(self, path: str | Path, fields: Sequence[Any]) -> None:
        """One row (flushed: a crash loses at most the row being written)."""
        f = self._handles[Path(path)]
        f.write("\t".join(str(v) for v in fields) + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()

    def finish(self) -> None:
        """Close this rank's files; once every rank is done, rank 0 merges them into the sorted log(s)."""
        self.close()
        barrier(self.rank)
        if self.rank.is_main:
            for p, header in self.files.items():
                merge(p, header)
        barrier(self.rank)


__all__ = ["ResumableLogs", "merge"]
