"""rs_core/logs/distributed.py + the data-set commands under torchrun: real processes (gloo on CPU), merged logs equal
to a one-process run, a killed rank resumed, disagreeing ranks and too many ranks refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rs_core.cli.main import main
from rs_core.data import data_dir
from rs_core.logs.distributed import Rank, rank_device, rank_from_env
from rs_core.models.checkpoints import CHECKPOINTS_DIR

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar")
ESTIMATOR = str(CHECKPOINTS_DIR / "mnist/dual/sigma_estimator.pth.tar")
needs_mnist = pytest.mark.skipif(not (data_dir() / "mnist" / "MNIST" / "raw").exists(),
                                 reason=f"no MNIST under RS_DATA_DIR={data_dir()}")
ENV = os.environ | {"OMP_NUM_THREADS": "1"}


def test_rank_from_env_reads_torchrun_and_refuses_nonsense():
    assert rank_from_env({}) == Rank(0, 1, 0)
    assert rank_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Rank(3, 4, 1)
    with pytest.raises(ValueError, match="^WORLD_SIZE/RANK/LOCAL_RANK: inconsistent"):
        rank_from_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match="^RANK: must be an integer"):
        rank_from_env({"WORLD_SIZE": "2", "RANK": "x"})


def test_shares_cover_every_item_once():
    items = list(range(11))
    shares = [Rank(r, 3, r).share(items) for r in range(3)]
    assert sorted(i for s in shares for i in s) == items and [len(s) for s in shares] == [4, 4, 3]


# torchrun --nnodes 2 --nproc_per_node 2: what each of the four processes finds in its environment. Node n's process
# p is global rank 2n + p with local rank p, so global and local ranks differ on the second node.
TWO_BY_TWO = [{"WORLD_SIZE": "4", "RANK": str(2 * node + proc), "LOCAL_RANK": str(proc), "LOCAL_WORLD_SIZE": "2",
               "GROUP_RANK": str(node), "GROUP_WORLD_SIZE": "2", "ROLE_RANK": str(2 * node + proc),
               "ROLE_WORLD_SIZE": "4", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
              for node in range(2) for proc in range(2)]


def test_rank_from_env_reads_a_two_node_layout() -> None:
    ranks = [rank_from_env(env) for env in TWO_BY_TWO]
    assert ranks == [Rank(int(env["RANK"]), 4, int(env["LOCAL_RANK"])) for env in TWO_BY_TWO]
    assert [r.is_main for r in ranks] == [True, False, False, False]  # one main process, not one per node


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 10, 13])  # none, fewer than ranks, a multiple, uneven
def test_shares_over_two_nodes_of_two_processes_cover_every_item_once(count: int) -> None:
    items = [f"example {i}" for i in range(count)]
    shares = [rank_from_env(env).share(items) for env in TWO_BY_TWO]
    assert sorted(i for share in shares for i in share) == sorted(items)  # none lost, none twice
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two GPUs per node: node 1's processes (global ranks 2, 3) take cuda:0 and cuda:1 of their own node. Nothing
    touches a GPU: rank_device only builds torch.device objects, so the GPU count is patched."""
    ranks = [rank_from_env(env) for env in TWO_BY_TWO]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [rank_device("cuda", r) for r in ranks] == [torch.device("cuda", r.local_rank) for r in ranks]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the default device is then cuda
    assert [rank_device(None, r) for r in ranks] == [torch.device("cuda", r.local_rank) for r in ranks]
    # An explicit device is the user's choice, kept on every rank.
    assert {rank_device("cuda:1", r) for r in ranks} == {torch.device("cuda", 1)}
    assert {rank_device("cpu", r) for r in ranks} == {torch.device("cpu")}
    # One GPU per node: the second process of each node has none of its own; refused naming its ranks.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert [rank_device("cuda", r) for r in ranks[::2]] == [torch.device("cuda", 0)] * 2
    for r in ranks[1::2]:
        with pytest.raises(ValueError, match=f"^device: rank {r.rank} has LOCAL_RANK 1 but this node has 1 GPU"):
            rank_device("cuda", r)


def _torchrun(*args, nproc: int = 2, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), "-m", "rs_core", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=300, **kw, check=False)


def _one(*args) -> None:
    """The one-process reference, run in this process (the CLI's own subprocess behaviour is tested in test_cli.py;
    here the reference only has to be the same computation, and a Python start per reference costs seconds)."""
    assert "WORLD_SIZE" not in os.environ
    assert main([*map(str, args)]) == 0


def _rows(path: Path) -> list[list[str]]:
    """The rows without their time column."""
    return [line.split("\t")[:-1] for line in path.read_text().splitlines()]


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("batch", [1100, 4400])  # 4400: four examples packed per batch, sharded by whole groups
def test_two_processes_give_the_one_process_log(tmp_path, batch):
    # A reference per batch size (a row must not depend on --batch: tests/test_smooth.py checks that in-process).
    common = ["--skip", "1000", "--N0", "50", "--N", "500", "--batch", batch, "--device", "cpu", "--no-progress"]
    two = _torchrun("certify", "mnist", MODEL, 0.5, tmp_path / "two", *common)
    assert two.returncode == 0, two.stderr[-2000:]
    _one("certify", "mnist", MODEL, 0.5, tmp_path / "one", *common)
    assert _rows(tmp_path / "two") == _rows(tmp_path / "one") and len(_rows(tmp_path / "one")) == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "one.meta.json", "two", "two.meta.json"]


@needs_mnist
@pytest.mark.slow
def test_predict_adaptive_certify_and_certify_dual_under_torchrun_give_the_one_process_logs(tmp_path):
    common = ["--skip", "2500", "--N", "200", "--batch", "500", "--device", "cpu", "--no-progress"]
    assert _torchrun("predict", "mnist", MODEL, 0.5, tmp_path / "p2", *common).returncode == 0
    _one("predict", "mnist", MODEL, 0.5, tmp_path / "p1", *common)
    assert _rows(tmp_path / "p2") == _rows(tmp_path / "p1") and len(_rows(tmp_path / "p1")) == 5
    adaptive = ["--radii", 0.5, 1.0, "--N-max", 5000]
    assert _torchrun("certify", "mnist", MODEL, 0.5, tmp_path / "a2", *adaptive, *common).returncode == 0
    _one("certify", "mnist", MODEL, 0.5, tmp_path / "a1", *adaptive, *common)
    assert _rows(tmp_path / "a2") == _rows(tmp_path / "a1")
    assert (tmp_path / "a2.radii.tsv").read_text() == (tmp_path / "a1.radii.tsv").read_text()
    two = _torchrun("certify-dual", "mnist", ESTIMATOR, tmp_path / "d2", "--N0", 20, *common)
    assert two.returncode == 0, two.stderr[-2000:]
    _one("certify-dual", "mnist", ESTIMATOR, tmp_path / "d1", "--N0", 20, *common)
    assert _rows(tmp_path / "d2") == _rows(tmp_path / "d1")
    assert (tmp_path / "d2.dual.tsv").read_text() == (tmp_path / "d1.dual.tsv").read_text()


@needs_mnist
@pytest.mark.slow
def test_a_killed_rank_is_resumed_by_rerunning_the_command(tmp_path):
    # Four examples, two per rank, each slow enough (N = 20,000) for rank 1 to be killed during its second (its part
    # file has no header: one line is one example done).
    common = ["--skip", "2500", "--N0", "50", "--N", "20000", "--batch", "1000", "--device", "cpu", "--no-progress"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "rs_core",
           "certify", "mnist", MODEL, "0.5", str(tmp_path / "log"), *common]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = tmp_path / "log.part1"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not part.exists() or part.read_text().count("\n") < 1):
        time.sleep(0.2)
    assert part.exists(), "rank 1 wrote no rows in time"
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False).stdout.split()
    rank1 = next(int(p) for p in workers if b"\0LOCAL_RANK=1\0" in Path(f"/proc/{p}/environ").read_bytes())
    os.kill(rank1, signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    done_before = sum(f.read_text().count("\n") for f in tmp_path.glob("log*") if f.suffix != ".json")
    assert 0 < done_before < 4  # not all four examples
    again = _torchrun("certify", "mnist", MODEL, 0.5, tmp_path / "log", *common)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "examples already done" in again.stderr
    _one("certify", "mnist", MODEL, 0.5, tmp_path / "one", *common)
    assert _rows(tmp_path / "log") == _rows(tmp_path / "one") and len(_rows(tmp_path / "one")) == 1 + 4


@needs_mnist
@pytest.mark.slow
def test_too_many_ranks_and_ranks_with_other_arguments_are_refused(tmp_path):
    few = _torchrun("certify", "mnist", MODEL, 0.5, tmp_path / "few", "--skip", 5000, "--max-examples", 1, "--N", 100,
                    "--device", "cpu", "--no-progress")
    assert few.returncode != 0 and "error: ranks: 2 processes for 1 example(s)" in few.stderr
    # Two ranks started by hand with different σ: both stop with the difference named; no log is written.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-m", "rs_core", "certify", "mnist", MODEL, sigma,
                               str(tmp_path / "log"), "--skip", "5000", "--N", "100", "--device", "cpu",
                               "--no-progress"], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=ENV | {"WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r, sigma in enumerate(["0.5", "0.25"])]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 2, err
        assert "error: ranks: the processes were started with different arguments (sigma: rank 0 0.5, rank 1 0.25)" \
            in err
    assert not (tmp_path / "log").exists()
