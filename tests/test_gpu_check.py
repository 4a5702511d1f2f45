"""benchmarks/gpu_check.py without a GPU: the no-CUDA exit, the plan's quick mode, and the report's rows."""

import importlib.util
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_exits_2_at_once_and_writes_nothing(tmp_path):
    out = tmp_path / "report.md"
    run = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cuda", "--out", str(out),
                          "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "no CUDA device found" in run.stderr
    assert not out.exists() and not (tmp_path / "work").exists()


def test_bad_device_is_refused(gpu_check):
    with pytest.raises(SystemExit) as e:
        gpu_check.main(["--device", "tpu"])
    assert e.value.code == 2


def test_quick_cpu_plan_is_small_hides_the_gpu_and_skips_compile(gpu_check, tmp_path):
    args = Namespace(device="cpu", quick=True, data_dir=str(tmp_path / "no-data"), only=None)
    steps = {s.key: s for s in gpu_check.plan(args, tmp_path)}
    assert list(steps) == ["cuda-tests", "sampling", "fast-resnet110", "fast-resnet50", "adaptive", "fast-compile"]
    assert steps["cuda-tests"].env == {"CUDA_VISIBLE_DEVICES": ""} and "-m" in steps["cuda-tests"].argv
    for key in ("sampling", "fast-resnet110", "fast-resnet50", "adaptive"):
        argv = steps[key].argv
        assert argv[argv.index("--device") + 1] == "cpu" and argv[argv.index("--rounds") + 1] == "1"
        assert argv[argv.index("--json") + 1] == str(tmp_path / f"{key}.json")
    assert steps["fast-compile"].skip.startswith("skipped")
    assert steps["adaptive"].skip.startswith("not run: no MNIST test set")  # no data: a row says so, no figures


def test_report_shows_figures_failures_and_timeouts(gpu_check):
    R = gpu_check.Result
    fast = {"args": {"num": 100_000, "batch": 4000, "rounds": 3, "device": "cuda"}, "device": "NVIDIA H200",
            "rows": [{"model": "resnet110", "setting": "plain fp32", "samples_per_s": 40_000.0, "ratio": 1.0,
                      "ratio_min": 1.0, "ratio_max": 1.0, "s_per_100k": 2.5},
                     {"model": "resnet110", "setting": "bf16", "samples_per_s": 250_000.0, "ratio": 6.25,
                      "ratio_min": 6.0, "ratio_max": 6.5, "s_per_100k": 0.4}]}
    results = [
        R("cuda-tests", "CUDA tests", "python -m pytest -m cuda", "tests", "failed", wall=12.0, returncode=1,
          detail="exit status 1; 1 failed, 6 passed", tail="E   assert 3 == 4",
          data=[("test_stream_on_cuda", "passed", 1.5, ""), ("test_oom", "failed", 3.0, "assert 3 == 4")]),
        R("fast-resnet110", "Fast path", "python benchmarks/bench_fast.py", "fast", "ok", wall=60.0, data=fast),
        R("fast-resnet50", "Fast path, ResNet-50", "python benchmarks/bench_fast.py", "fast", "timeout", wall=150.0,
          timeout=150.0, detail="killed after 150 s (its timeout)",
          printed=["| model | setting |", "|---|---|", "| resnet50 | plain fp32 | 3,000 | 1.00 | 33.33 |"]),
        R("adaptive", "Adaptive", "python benchmarks/bench_adaptive.py", "adaptive", "not run",
          detail="no MNIST test set"),
    ]
    text = gpu_check.format_report({"date": "2026-01-01 00:00 UTC", "device": "cuda", "quick": False,
                                    "device_name": "NVIDIA H200", "torch": "2.11.0", "cuda": "13.0"}, results)
    assert "CPU plumbing run" not in text and "| device | NVIDIA H200 |" in text
    assert "| 1. cuda-tests | **FAILED** | 12.0 | exit status 1; 1 failed, 6 passed |" in text
    assert "| `test_oom` | failed | 3.00 | assert 3 == 4 |" in text and "E   assert 3 == 4" in text
    assert "| resnet110 | bf16 | 250,000 | 6.25 (6.00–6.50) | 0.40 |" in text
    assert "best 0.40 s (bf16) — **met**" in text
    assert "| 3. fast-resnet50 | **TIMED OUT** | 150.0 | killed after 150 s (its timeout) |" in text
    assert "Partial:" in text and "| resnet50 | plain fp32 | 3,000 | 1.00 | 33.33 |" in text
    assert "| 4. adaptive | not run | – | no MNIST test set |" in text
    cpu = gpu_check.format_report({"date": "d", "device": "cpu", "quick": True}, results[3:])
    assert "**CPU plumbing run, not GPU figures.**" in cpu
