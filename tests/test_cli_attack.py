"""``python -m rs_core attack`` end to end in a subprocess on a tiny synthetic MNIST, resumed, and ``analyze --attack``
pairing it with a certify log (and refusing logs of other images)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from rs_core.logs.attack_logs import ATTACK_LOG_HEADER, read_attack_log
from rs_core.models.architectures import get_architecture
from rs_core.models.checkpoints import save_checkpoint

needs_attacks = pytest.mark.skipif(importlib.util.find_spec("rs_core.attacks") is None,
                                   reason="rs_core.attacks is not there yet")


def run(data, *args, check=True):
    env = os.environ | {"RS_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "rs_core", *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=300, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pth.tar"
    save_checkpoint(path, get_architecture("mnist_cnn"), "mnist_cnn", epoch=0, meta={"dataset": "mnist", "sigma": 0.5})
    return path


SMALL = ["--skip", 3, "--steps", 3, "--m", 4, "--n-predict", 40, "--eps-max", 2, "--batch", 64, "--device", "cpu",
         "--seed", 5, "--no-progress"]


def rows(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


@needs_attacks
def test_attack_writes_its_log_resumes_to_the_straight_run_and_analyze_pairs_it(synthetic_mnist, checkpoint, tmp_path):
    straight = tmp_path / "attack_0.50"
    run(synthetic_mnist, "attack", "mnist", checkpoint, 0.5, straight, *SMALL)
    lines = rows(straight)
    assert lines[0] == ATTACK_LOG_HEADER
    assert [r[0] for r in lines[1:]] == ["0", "3", "6", "9"]
    log = read_attack_log(straight)  # every row passes the reader's checks
    assert log.true_label.tolist() == [0, 3, 6, 9]
    meta = json.loads((tmp_path / "attack_0.50.meta.json").read_text())
    assert meta["command"] == "attack" and meta["sigma"] == 0.5 and meta["steps"] == 3 and meta["m"] == 4
    assert len(meta["base_classifier"]["sha256"]) == 64 and "torch" in meta["software"] and "N" not in meta

    # A run stopped after two images, then continued, has the rows of the straight run (times aside).
    resumed = tmp_path / "resumed" / "attack_0.50"
    run(synthetic_mnist, "attack", "mnist", checkpoint, 0.5, resumed, *SMALL, "--max-examples", 4)
    assert [r[0] for r in rows(resumed)[1:]] == ["0", "3"]
    proc = run(synthetic_mnist, "attack", "mnist", checkpoint, 0.5, resumed, *SMALL)
    assert "2 of 4 examples already done" in proc.stderr
    drop_time = lambda table: [r[:5] + r[6:] for r in table]
    assert drop_time(rows(resumed)) == drop_time(lines)
    # Other settings are refused, naming what differs.
    proc = run(synthetic_mnist, "attack", "mnist", checkpoint, 0.5, resumed, *SMALL[:-1], "--m", 8, "--no-progress",
               check=False)
    assert proc.returncode == 2 and "m was 4, now 8" in proc.stderr

    # analyze: the attack log next to a certify log of the same images, with the gap.
    cert = tmp_path / "sigma_0.50"
    cert.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n" + "".join(
        f"{i}\t{i}\t-1\t0.0\t0\t1.0\n" for i in (0, 3, 6, 9)))
    proc = run(synthetic_mnist, "analyze", cert, "--attack", straight, "--radii", 0, 0.5)
    assert "| certified: σ = 0.50 | 0.000 | 0.000 |" in proc.stdout
    assert "| empirical: attack σ = 0.50 |" in proc.stdout and "gap (empirical − certified)" in proc.stdout
    other = tmp_path / "other" / "sigma_0.50"
    other.parent.mkdir()
    other.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t0\t-1\t0.0\t0\t1.0\n")
    proc = run(synthetic_mnist, "analyze", other, "--attack", straight, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: attack: attack_0.50 and sigma_0.50 cover different images")


def test_analyze_raises_a_soundness_alarm_when_an_attack_beats_a_certificate(synthetic_mnist, tmp_path):
    cert = tmp_path / "sigma_0.50"
    cert.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t1.5\t1\t1.0\n1\t2\t2\t0.5\t1\t1.0\n")
    attack = tmp_path / "attack_0.50"
    attack.write_text("idx\tlabel\tpredict\tadv_distance\tadv_predict\ttime\n0\t7\t7\t0.9\t3\t1.0\n"
                      "1\t2\t2\t0.6\t1\t1.0\n")
    proc = run(synthetic_mnist, "analyze", cert, "--attack", attack, "--radii", 0.5, 1.0, check=False)
    assert proc.returncode == 1
    assert "SOUNDNESS ALARM: 1 image(s) of attack_0.50" in proc.stdout and "idx 0: certified class 7" in proc.stdout
    assert "SOUNDNESS ALARM" in proc.stderr


def test_the_cli_offers_exactly_the_attacks_methods():
    from rs_core.attacks import METHODS
    from rs_core.cli import attack

    assert attack.METHODS == METHODS
