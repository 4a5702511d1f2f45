"""rs_core/smoothing/fast.py: the opt-in fast paths agree with the fp32 path in their votes, and are recorded."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from oracles import devices

from rs_core import sample_counts
from rs_core.data import data_dir
from rs_core.models.architectures import get_architecture
from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.smoothing.fast import FastPath

ROOT = Path(__file__).resolve().parents[1]


def _votes(model, x, device, autocast=None, n=4000) -> np.ndarray:
    return sample_counts(model, x, 0.25, n, batch_size=1000, seed=3, autocast=autocast) / n


def _model_and_input(device):
    torch.manual_seed(0)
    model = get_architecture("cifar_cnn", 10).to(device).eval()
    # An input the random network is unsure about, so that the votes spread over several classes.
    return model, torch.rand(3, 32, 32, device=device)


def test_fast_path_settings_are_checked():
    with pytest.raises(ValueError, match="^autocast"):
        FastPath(autocast="int8")
    with pytest.raises(ValueError, match="^channels_last"):
        FastPath(channels_last="yes")
    assert FastPath().plain and not FastPath(compile=True).plain


@pytest.mark.parametrize("device", devices())
def test_channels_last_gives_the_same_votes(device):
    model, x = _model_and_input(device)
    plain = _votes(model, x, device)
    fast = _votes(FastPath(channels_last=True).apply(copy.deepcopy(model)), x, device)
    assert (plain > 0).sum() >= 2  # the comparison has classes to disagree on
    assert np.abs(plain - fast).sum() / 2 <= 0.005  # same noise: only rounding at near-ties may differ


@pytest.mark.parametrize("device", devices())
def test_bf16_autocast_agrees_with_fp32_in_vote_distribution(device):
    model, x = _model_and_input(device)
    plain, fast = _votes(model, x, device), _votes(model, x, device, autocast="bf16")
    assert np.abs(plain - fast).sum() / 2 <= 0.03


@pytest.mark.slow
@pytest.mark.parametrize("device", devices())
def test_compiled_model_gives_the_same_votes(device):
    if device == "cpu" and shutil.which("cc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler; none found")
    torch.manual_seed(0)
    model = get_architecture("mnist_cnn", 10).to(device).eval()
    x = torch.rand(1, 28, 28, device=device)
    plain = _votes(model, x, device, n=2000)
    fast = _votes(FastPath(compile=True).apply(model), x, device, n=2000)
    assert np.abs(plain - fast).sum() / 2 <= 0.005


@pytest.mark.slow
@pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(), reason="no MNIST under RS_DATA_DIR")
def test_cli_records_the_fast_path_and_will_not_resume_a_log_made_with_another(tmp_path):
    cmd = [sys.executable, "-m", "rs_core", "certify", "mnist",
           str(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"), "0.5", str(tmp_path / "log"),
           "--skip", "5000", "--N", "500", "--no-progress"]
    subprocess.run(cmd + ["--channels-last", "--autocast", "bf16"], check=True, capture_output=True, cwd=ROOT)
    record = json.loads((tmp_path / "log.meta.json").read_text())
    assert record["fast"] == {"autocast": "bf16", "channels_last": True, "compile": False}
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert plain.returncode == 2 and "error: resume: log was made with other settings (fast was" in plain.stderr
