"""One command for a machine with an NVIDIA GPU: the CUDA tests and the GPU benchmarks, in one Markdown report.

    python benchmarks/gpu_check.py                        # the full check on cuda (about 5 min; budget 7 min)
    python benchmarks/gpu_check.py --device cpu --quick   # the plumbing only, on a CPU (a minute or two)

Steps, each a subprocess with its own timeout, all within one budget (--budget, seconds): a step that hangs is
killed (with its children) and reported as timed out; the steps after it still run while the budget lasts.

  1. cuda-tests        pytest -m cuda tests/test_cuda.py
  2. sampling          benchmarks/bench_sampling.py (ResNet-20: rs_core against a plain forward pass and the naive loop)
  3. fast-resnet110    benchmarks/bench_fast.py, ResNet-110 at N = 100,000 samples per measurement
  4. fast-resnet50     benchmarks/bench_fast.py, ResNet-50 at 224², fp32 against bf16 (and bf16 + channels-last)
  5. adaptive          benchmarks/bench_adaptive.py (MNIST test images: $RS_DATA_DIR, ./data or ../shared/data)
  6. fast-compile      benchmarks/bench_fast.py, ResNet-110 with torch.compile (last: compiling takes the longest)

The report (device, torch/CUDA versions, date, each step's command, wall time and figures; failures and timeouts
as rows saying so) goes to stdout and to benchmarks/results/gpu_check.md (rewritten after every step, so a run
cut short still leaves the steps done so far); each step's JSON and output go to benchmarks/results/gpu_check/.
Without a CUDA device, --device cuda exits with status 2 at once and runs nothing. Exit status 1 when a step
failed or timed out, else 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MIN_STEP_S = 15.0  # a step is not started with less budget left than this
MNIST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


@dataclass
class Step:
    key: str
    title: str
    argv: list[str]
    timeout: float
    kind: str  # "tests", "sampling", "fast" or "adaptive": how its results are read and shown
    json_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    skip: str | None = None  # why it is not run, if so
    note: str = ""  # shown under its heading


@dataclass
class Result:
    key: str
    title: str
    command: str
    kind: str
    status: str  # "ok", "failed", "timeout", "skipped", "not run"
    wall: float | None = None
    returncode: int | None = None
    timeout: float | None = None
    detail: str = ""  # one line: why skipped / not run / failed, or the tests' tally
    note: str = ""
    data: Any = None  # the step's JSON, or for tests a list of (test, outcome, seconds, message)
    printed: list[str] = field(default_factory=list)  # the Markdown table rows the step printed
    tail: str = ""  # the end of its output, when it failed


# ---------------------------------------------------------------------------------------------------------------
# The plan


def _mnist_data_dir(explicit: str | None, work: Path) -> tuple[str | None, str]:
    """An RS_DATA_DIR holding the MNIST test set, and where it came from (or None and why not)."""
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = [Path(p) for p in (os.environ.get("RS_DATA_DIR"),) if p]
        candidates += [ROOT / "data", ROOT / "shared" / "data", ROOT.parent / "shared" / "data"]
    for base in candidates:
        raw = base / "mnist" / "MNIST" / "raw"
        if not all((raw / f).is_file() for f in MNIST_FILES):
            continue
        if all((raw / f).exists() for f in MNIST_TRAIN_FILES):
            return str(base.resolve()), f"MNIST test set from {base}"
        # torchvision's MNIST checks that all four raw files exist, but the test split reads only t10k-*: a stand-in
        # folder with links to the test files and empty training files lets a machine carry the 8 MB test set alone.
        stub = work / "mnist_test_only"
        stub_raw = stub / "mnist" / "MNIST" / "raw"
        stub_raw.mkdir(parents=True, exist_ok=True)
        for f in MNIST_FILES:
            link = stub_raw / f
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to((raw / f).resolve())  # resolve(): a relative --data-dir, too
        for f in MNIST_TRAIN_FILES:
            (stub_raw / f).touch()
        return str(stub), f"MNIST test set from {base} (test files only; training files stubbed)"
    where = ", ".join(str(c) for c in candidates)
    return None, (f"no MNIST test set ({' and '.join(MNIST_FILES)} under mnist/MNIST/raw/) in {where}; "
                  "pass --data-dir or set RS_DATA_DIR")


def plan(args: argparse.Namespace, work: Path) -> list[Step]:
    py = sys.executable
    dev = args.device
    cpu = not dev.startswith("cuda")
    q = args.quick
    steps: list[Step] = []

    # 1. The CUDA tests. On a CPU run they are collected with the GPU hidden, so each reports its own skip.
    junit = work / "cuda_tests.xml"
    argv = [py, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rs", "-p", "no:cacheprovider",
            f"--junitxml={junit}"]
    note = ""
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("hypothesis") is None:
        # tests/conftest.py imports hypothesis and streamlit (an autouse AppTest fixture); test_cuda.py uses none
        # of its fixtures and seeds its own draws, so on a GPU machine without the app's packages it runs without.
        argv.append("--noconftest")
        note = ("tests/conftest.py not loaded (streamlit or hypothesis is not installed here); "
                "test_cuda.py uses none of its fixtures.")
    env = {"CUDA_VISIBLE_DEVICES": ""} if cpu else {}
    if cpu:
        note = ("Run with the GPU hidden (CUDA_VISIBLE_DEVICES=''): a CPU run checks only that the tests are "
                "collected and skip. " + note).strip()
    steps.append(Step("cuda-tests", "CUDA tests (pytest -m cuda)", argv, 60 if q else 180, "tests",
                      env=env, note=note))
    steps[-1].json_path = junit

    # 2. Sampling speed, ResNet-20 (the README's H100 row: --num 100000 --batch 4000 --rounds 7).
    sampling = ["--num", "200", "--batch", "100", "--rounds", "1"] if q else \
        ["--num", "100000", "--batch", "4000", "--rounds", "5"]
    steps.append(Step("sampling", f"Sampling speed, ResNet-20, N = {int(sampling[1]):,} (bench_sampling.py)",
                      [py, "benchmarks/bench_sampling.py", "--device", dev, *sampling], 60 if q else 90, "sampling"))

    # 3. The fast path, ResNet-110 at N = 100,000 (the goal: ≤ 0.5 s per 100k samples).
    r110 = ["--num", "100", "--batch", "50", "--rounds", "1", "--settings", "bf16"] if q else \
        ["--num", "100000", "--batch", "4000", "--rounds", "3", "--settings", "bf16", "channels_last",
         "bf16+channels_last", "fp16+channels_last"]
    steps.append(Step("fast-resnet110", f"Fast path, ResNet-110, N = {int(r110[1]):,} (bench_fast.py)",
                      [py, "benchmarks/bench_fast.py", "--device", dev, "--models", "resnet110", *r110],
                      90 if q else 150, "fast"))

    # 4. The fast path, ResNet-50 at 224², with and without bf16.
    r50 = ["--num", "4", "--batch", "4", "--rounds", "1", "--settings", "bf16"] if q else \
        ["--num", "10000", "--batch", "500", "--rounds", "3", "--settings", "bf16", "bf16+channels_last"]
    steps.append(Step("fast-resnet50", f"Fast path, ResNet-50 at 224², fp32 and bf16, N = {int(r50[1]):,} "
                                       "(bench_fast.py)",
                      [py, "benchmarks/bench_fast.py", "--device", dev, "--models", "resnet50", *r50],
                      90 if q else 150, "fast"))

    # 5. Refilled batches in adaptive CERTIFY (its defaults on a GPU).
    adaptive = ["--images", "10", "--n-max", "1000", "--batch", "250", "--rounds", "1", "--fixed-n", "1000"] if q \
        else ["--images", "40", "--n-max", "20000", "--batch", "1000", "--rounds", "3"]
    data_dir, where = _mnist_data_dir(args.data_dir, work)
    steps.append(Step("adaptive", "Refilled batches in adaptive CERTIFY, MNIST (bench_adaptive.py)",
                      [py, "benchmarks/bench_adaptive.py", "--device", dev, *adaptive], 90 if q else 120,
                      "adaptive", env={"RS_DATA_DIR": data_dir} if data_dir else {},
                      skip=None if data_dir else f"not run: {where}", note=where if data_dir else ""))

    # 6. torch.compile (CUDA graphs), last: its compilation is the slowest and least predictable part.
    steps.append(Step("fast-compile", "Fast path, ResNet-110 with torch.compile, N = 100,000 (bench_fast.py)",
                      [py, "benchmarks/bench_fast.py", "--device", dev, "--models", "resnet110", "--num", "100000",
                       "--batch", "4000", "--rounds", "3", "--settings", "bf16+channels_last+compile"], 200, "fast",
                      skip="skipped: not run with --quick (compiling takes minutes)" if q else None))

    for s in steps:
        if s.kind != "tests":
            s.json_path = work / f"{s.key}.json"
            s.argv += ["--json", str(s.json_path)]
        if args.only and s.key not in args.only:
            s.skip = "skipped: not selected (--only)"
    return steps


# ---------------------------------------------------------------------------------------------------------------
# Running a step


def _shown(argv: list[str]) -> str:
    """The command as a person would type it from the repository root (``python``: this Python)."""
    def rel(a: str) -> str:
        if a.startswith("--") and "=" in a:
            opt, value = a.split("=", 1)
            return f"{opt}={rel(value)}"
        try:
            return str(Path(a).relative_to(ROOT)) if Path(a).is_absolute() else a
        except ValueError:
            return a

    return shlex.join(["python" if i == 0 and a == sys.executable else rel(a) for i, a in enumerate(argv)])


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _read_junit(path: Path) -> list[tuple[str, str, float, str]]:
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (el.get("message") or "").strip().splitlines()[0] if el.get("message") else ""
                break
        rows.append((name, outcome, float(case.get("time", 0) or 0), message))
    return rows


def run_step(step: Step, remaining: float, work: Path) -> Result:
    res = Result(step.key, step.title, _shown(step.argv), step.kind, "not run", note=step.note)
    if step.skip:
        res.status, res.detail = step.skip.split(":", 1)[0], step.skip.split(":", 1)[1].strip()
        return res
    if remaining < MIN_STEP_S:
        res.detail = f"the budget is spent ({max(remaining, 0):.0f} s left of --budget)"
        return res
    timeout = min(step.timeout, remaining)
    res.timeout = timeout
    if step.json_path is not None and step.json_path.exists():
        step.json_path.unlink()
    out_path, err_path = work / f"{step.key}.out", work / f"{step.key}.err"
    env = {**os.environ, **step.env, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(step.argv, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            res.status = "timeout"
        except BaseException:
            _kill_group(proc)
            raise
    res.wall = time.perf_counter() - t0
    res.returncode = proc.returncode
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    res.printed = [ln for ln in stdout.splitlines() if ln.startswith("|")]
    if step.json_path is not None and step.json_path.exists():
        try:
            res.data = _read_junit(step.json_path) if step.kind == "tests" else json.loads(step.json_path.read_text())
        except (ET.ParseError, json.JSONDecodeError, OSError) as e:
            res.detail = f"its results file could not be read: {e}"
    if res.status == "timeout":
        res.detail = f"killed after {timeout:.0f} s (its timeout)"
        res.tail = _tail(stdout + "\n" + stderr)
        return res
    if step.kind == "tests":
        tests = res.data or []
        tally: dict[str, int] = {}
        for _, outcome, _, _ in tests:
            tally[outcome] = tally.get(outcome, 0) + 1
        res.detail = ", ".join(f"{n} {o}" for o, n in sorted(tally.items())) or "no tests collected"
        if proc.returncode == 0 and tests and tally.get("skipped") == len(tests):
            reasons = sorted({m for _, _, _, m in tests if m})
            res.status = "skipped"
            res.detail = f"no GPU: all {len(tests)} skipped" + (f" ({'; '.join(reasons)})" if reasons else "")
        elif proc.returncode == 0:
            res.status = "ok"
        else:
            res.status = "failed"
            res.tail = _tail(stdout + "\n" + stderr, 30)
            res.detail = f"exit status {proc.returncode}; " + res.detail
        return res
    if proc.returncode == 0 and res.data is not None:
        res.status = "ok"
    else:
        res.status = "failed"
        res.detail = f"exit status {proc.returncode}" + ("" if res.data is not None or proc.returncode != 0
                                                           else "; it wrote no results file")
        res.tail = _tail(stdout + "\n" + stderr)
    return res


# ---------------------------------------------------------------------------------------------------------------
# The report


def _n(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _num(x: float) -> str:
    return f"{x:,.0f}"


def _range(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _figures(res: Result) -> list[str]:
    """The step's figures as a Markdown table (from its JSON; else the rows it printed before it stopped)."""
    d = res.data
    if res.kind == "tests" and d:
        lines = ["| test | outcome | s | message |", "|---|---|---:|---|"]
        lines += [f"| `{name}` | {outcome} | {secs:.2f} | {msg.replace('|', '/')} |" for name, outcome, secs, msg in d]
        return lines
    if res.kind == "sampling" and isinstance(d, dict):
        times = d["seconds"]
        names = list(times)
        base, naive = names[0], names[1]

        def paired(name: str, ref: str) -> str:
            return _range([r / t for t, r in zip(times[name], times[ref])], 3)

        a = d["args"]
        lines = [f"{a['arch']}, batch {a['batch']:,}, {a['num']:,} samples × {_n(a['rounds'], 'round')}, {d['device']}", "",
                 "| method | samples/s (median) | vs forward only: median (range) | vs naive loop: median (range) |",
                 "|---|---:|---:|---:|"]
        lines += [f"| {n} | {_num(d['samples_per_s'][n])} | {paired(n, base)} | {paired(n, naive)} |" for n in names]
        return lines
    if res.kind == "fast" and isinstance(d, dict):
        a = d["args"]
        lines = [f"{d['device']}, n = {a['num']:,} per measurement, batch {a['batch']:,}, {_n(a['rounds'], 'round')}", "",
                 "| model | setting | samples/s | / plain fp32 (median, range) | s per 100k samples |",
                 "|---|---|---:|---:|---:|"]
        for r in d["rows"]:
            ratio = "1.00" if r["setting"] == "plain fp32" else \
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"
            lines.append(f"| {r['model']} | {r['setting']} | {_num(r['samples_per_s'])} | {ratio} | "
                         f"{r['s_per_100k']:.2f} |")
        r110 = [r for r in d["rows"] if r["model"] == "resnet110"]
        if r110 and a["num"] >= 100_000 and str(a["device"]).startswith("cuda"):
            best = min(r110, key=lambda r: r["s_per_100k"])
            verdict = "met" if best["s_per_100k"] <= 0.5 else "not met"
            lines += ["", (f"Goal ResNet-110, N = 100,000 in ≤ 0.5 s per image: best {best['s_per_100k']:.2f} s "
                           f"({best['setting']}) — **{verdict}**.")]
        return lines
    if res.kind == "adaptive" and isinstance(d, dict):
        a = d["args"]
        return [(f"{a['images']} MNIST test images, σ = 0.5, radii {tuple(d['radii'])}, N-max {a['n_max']:,}, "
                 f"batch {a['batch']:,}, {_n(a['rounds'], 'round')}, fixed N {a['fixed_n']:,}; "
                 f"{d['samples']:,} samples in all ({d['samples'] / a['images']:,.0f} per image)"), "",
                "| | refilled | one at a time |", "|---|---:|---:|",
                f"| mean batch fill | {d['fill_refilled']:.1%} | {d['fill_one_at_a_time']:.1%} |",
                f"| samples/s | {_num(d['samples_per_s_refilled'])} | {_num(d['samples_per_s_one_at_a_time'])} |",
                f"| refilled / one at a time (median, range) | {_range(d['ratios'])} | |",
                (f"| fixed-N CERTIFY on the same images, full batches (samples/s) | "
                 f"{_num(d['samples_per_s_fixed'])} | |")]
    if res.printed:
        return ["Partial: the table rows it printed before it stopped (no results file).", "", *res.printed]
    return []


def headline(res: Result) -> str:
    """One line of the step's main figures for the summary table ('' when it has none)."""
    d = res.data
    try:
        if res.kind == "sampling" and isinstance(d, dict):
            rates = list(d["samples_per_s"].values())
            return f"rs_core {_num(rates[2])}/s = {rates[2] / rates[0]:.2f}× forward only, {rates[2] / rates[1]:.2f}× naive"
        if res.kind == "fast" and isinstance(d, dict):
            parts = []
            for model in dict.fromkeys(r["model"] for r in d["rows"]):
                rows = [r for r in d["rows"] if r["model"] == model]
                text = f"{model}: " + ", ".join(
                    f"{r['setting'].replace('plain ', '')} {_num(r['samples_per_s'])}/s"
                    + ("" if r["setting"] == "plain fp32" else f" ({r['ratio']:.2f}×)") for r in rows)
                best = min(rows, key=lambda r: r["s_per_100k"])
                parts.append(text + f"; best {best['s_per_100k']:.2f} s per 100k ({best['setting']})")
            return "; ".join(parts)
        if res.kind == "adaptive" and isinstance(d, dict):
            return (f"refilled {_num(d['samples_per_s_refilled'])}/s = {d['ratio']:.2f}× one at a time; "
                    f"fill {d['fill_refilled']:.0%} vs {d['fill_one_at_a_time']:.0%}")
    except (KeyError, IndexError, TypeError, ZeroDivisionError):
        return ""
    return ""


STATUS = {"ok": "ok", "failed": "**FAILED**", "timeout": "**TIMED OUT**", "skipped": "skipped", "not run": "not run"}


def format_report(meta: dict[str, Any], results: list[Result]) -> str:
    """The Markdown report: what ran where, a summary row per step, then each step's command and figures."""
    cpu = not str(meta.get("device", "cuda")).startswith("cuda")
    out = [f"# RS Lab GPU check — {meta.get('date', '?')}", ""]
    if cpu:
        out += ["> **CPU plumbing run, not GPU figures.** This ran on a CPU"
                + (" with `--quick` (tiny workloads, 1 round)" if meta.get("quick") else "")
                + ": it checks only that every step runs and reports. None of the figures below says anything about "
                  "a GPU; the CUDA tests were not run on a GPU.", ""]
    elif meta.get("quick"):
        out += [("> **Quick run (`--quick`):** every workload shrunk to a few batches and 1 round; the figures are "
                 "not representative."), ""]
    out += ["| | |", "|---|---|"]
    for label, key in (("device", "device_name"), ("torch", "torch"), ("CUDA (torch build)", "cuda"),
                       ("cuDNN", "cudnn"), ("driver", "driver"), ("Python", "python"), ("host", "host"),
                       ("repository", "git"), ("command", "command"), ("budget", "budget")):
        if meta.get(key) not in (None, ""):
            value = f"`{meta[key]}`" if key == "command" else str(meta[key])
            out.append(f"| {label} | {value} |")
    out += ["", "## Summary", "", "| step | status | wall (s) | detail / figures |", "|---|---|---:|---|"]
    for i, r in enumerate(results, 1):
        wall = f"{r.wall:.1f}" if r.wall is not None else "–"
        detail = "; ".join(t for t in (r.detail, headline(r)) if t).replace("|", "/")
        out.append(f"| {i}. {r.key} | {STATUS.get(r.status, r.status)} | {wall} | {detail} |")
    for i, r in enumerate(results, 1):
        out += ["", f"## {i}. {r.title}", "", "```", r.command, "```", ""]
        line = f"Status: {STATUS.get(r.status, r.status)}"
        if r.wall is not None:
            line += f" in {r.wall:.1f} s" + (f" (timeout {r.timeout:.0f} s)" if r.timeout else "")
        if r.detail:
            line += f" — {r.detail}"
        out.append(line + ".")
        if r.note:
            out += ["", r.note]
        figures = _figures(r)
        if figures:
            out += ["", *figures]
        if r.tail:
            out += ["", "End of its output:", "", "```", r.tail, "```"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# The command


def _metadata(args: argparse.Namespace, torch: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": args.device, "quick": args.quick,
        "torch": torch.__version__, "cuda": torch.version.cuda or "none (CPU build)",
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": f"{platform.python_version()} ({sys.executable})",
        "host": f"{socket.gethostname()}, {os.cpu_count()} CPUs, {platform.machine()}",
        "command": "python benchmarks/gpu_check.py " + shlex.join(sys.argv[1:]),
        "budget": f"{args.budget:.0f} s",
    }
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(args.device))
        meta["device_name"] = (f"{props.name} ({args.device}), {props.total_memory / 2**30:.1f} GiB, "
                               f"{props.multi_processor_count} SMs, compute capability {props.major}.{props.minor}")
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=15, check=False)
            meta["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            pass
    else:
        meta["device_name"] = f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=10, check=False).stdout.strip()
            meta["git"] = head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a plumbing run")
    ap.add_argument("--quick", action="store_true", help="shrink every step (tiny --num, 1 round, no compile)")
    ap.add_argument("--budget", type=float, default=420.0,
                    help="seconds for all steps together (default 420); each step also has its own timeout")
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu_check.md", help="the report (also printed)")
    ap.add_argument("--work", type=Path, default=RESULTS / "gpu_check",
                    help="each step's JSON and output (default benchmarks/results/gpu_check/)")
    ap.add_argument("--data-dir", help="an RS_DATA_DIR holding mnist/MNIST/raw/t10k-* for the adaptive step")
    ap.add_argument("--only", nargs="+", metavar="STEP",
                    choices=["cuda-tests", "sampling", "fast-resnet110", "fast-resnet50", "adaptive", "fast-compile"],
                    help="run only these steps (the others are reported as skipped)")
    args = ap.parse_args(argv)
    if args.budget <= 0:
        ap.error("--budget: must be positive")

    import torch

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print(f"gpu_check: no CUDA device found (torch {torch.__version__}, CUDA build "
                  f"{torch.version.cuda or 'none'}); nothing was run. Use --device cpu --quick for a plumbing run.",
                  file=sys.stderr)
            return 2
        try:
            torch.device(args.device)
            index = torch.device(args.device).index or 0
        except RuntimeError as e:
            ap.error(f"--device: {e}")
        if index >= torch.cuda.device_count():
            print(f"gpu_check: no CUDA device {args.device} ({torch.cuda.device_count()} found); nothing was run.",
                  file=sys.stderr)
            return 2
    elif args.device != "cpu":
        ap.error(f"--device: cuda, cuda:N or cpu, got {args.device!r}")

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = _metadata(args, torch)
    steps = plan(args, work)
    start = time.perf_counter()
    results: list[Result] = []

    def write(pending: list[Step]) -> str:
        shown = results + [Result(s.key, s.title, _shown(s.argv), s.kind, "not run", detail="pending")
                           for s in pending]
        meta["budget"] = f"{args.budget:.0f} s; used {time.perf_counter() - start:.0f} s"
        text = format_report(meta, shown)
        args.out.write_text(text)
        return text

    for i, step in enumerate(steps):
        write(steps[i:])
        if not step.skip:
            print(f"[gpu_check {time.perf_counter() - start:5.0f} s] {i + 1}/{len(steps)} {step.key} …",
                  file=sys.stderr, flush=True)
        try:
            res = run_step(step, args.budget - (time.perf_counter() - start), work)
        except KeyboardInterrupt:
            results.append(Result(step.key, step.title, _shown(step.argv), step.kind, "failed",
                                  detail="interrupted (Ctrl-C)"))
            write([])
            print(f"gpu_check: interrupted; the report so far is in {args.out}", file=sys.stderr)
            return 130
        results.append(res)
        wall = f" in {res.wall:.1f} s" if res.wall is not None else ""
        print(f"[gpu_check {time.perf_counter() - start:5.0f} s] {i + 1}/{len(steps)} {step.key}: "
              f"{res.status}{wall}{' — ' + res.detail if res.detail else ''}", file=sys.stderr, flush=True)
    text = write([])
    print(text, end="")
    print(f"gpu_check: report written to {args.out}", file=sys.stderr)
    return 1 if any(r.status in ("failed", "timeout") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
