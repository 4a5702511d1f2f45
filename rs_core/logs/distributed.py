"""Several processes on one data set with ``torchrun`` (torch.distributed): who am I, which device, do we agree.

The data-set commands (``certify``, ``predict``, ``certify-dual``) run unchanged under ``torchrun``: each process
(rank) reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from its environment, joins the process group (``gloo`` on
CPUs, ``nccl`` on GPUs), takes every ``world``-th group of examples and its own GPU (``cuda:LOCAL_RANK``). Example
i keeps seed + i whatever the number of processes, so the merged log equals a one-process run's
(:mod:`rs_core.logs.resumable` writes and merges it). Without ``torchrun`` a command is rank 0 of 1 and nothing here
touches torch.distributed.

>>> r = Rank(rank=1, world=3, local_rank=1)
>>> r.share(list(range(8)))
[1, 4, 7]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    """This process's place among ``world`` processes (``local_rank``: its place on this node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every ``world``-th, starting at ``rank`` (round robin keeps the shares balanced when
        the examples get harder or easier along the data set)."""
        return list(items[self.rank::self.world])


def _env_int(name: str, env: Mapping[str, str]) -> int:
    raw = env[name]
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}: must be an integer, got {raw!r} from the environment") from None


def rank_from_env(env: Mapping[str, str] | None = None) -> Rank:
    """The rank ``torchrun`` gave this process (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or rank 0 of 1."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return Rank()
    world = _env_int("WORLD_SIZE", env)
    rank = _env_int("RANK", env) if "RANK" in env else 0
    local = _env_int("LOCAL_RANK", env) if "LOCAL_RANK" in env else rank
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"WORLD_SIZE/RANK/LOCAL_RANK: inconsistent values {world}/{rank}/{local} in the environment")
    return Rank(rank, world, local)


def rank_device(requested: str | None, rank: Rank) -> torch.device:
    """The device this rank samples on: ``cuda`` (or the default, when a GPU is there) becomes ``cuda:LOCAL_RANK``;
    an explicit index (``cuda:1``) or ``cpu`` is kept."""
    from rs_core.models.device import default_device

    device = torch.device(requested) if requested else default_device()
    if device.type == "cuda" and device.index is None:
        if rank.local_rank >= torch.cuda.device_count():
            raise ValueError(f"device: rank {rank.rank} has LOCAL_RANK {rank.local_rank} but this node has "
                             f"{torch.cuda.device_count()} GPU(s); start at most that many processes per node")
        device = torch.device("cuda", rank.local_rank)
    return device


@contextlib.contextmanager
def process_group(rank: Rank, device: torch.device) -> Iterator[None]:
    """Join torch.distributed's process group for the run (nothing for one process); always leave it."""
    if rank.world == 1:
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank.rank, world_size=rank.world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather(obj: Any, rank: Rank) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for one process."""
    if rank.world == 1:
        return [obj]
    out: list[Any] = [None] * rank.world
    dist.all_gather_object(out, obj)
    return out


def from_main(obj: Any, rank: Rank) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if rank.world == 1:
        return obj
    box = [obj if rank.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        dist.barrier()


def check_agreement(args: Mapping[str, Any], rank: Rank) -> None:
    """Every rank was started with the same arguments; otherwise ``ValueError`` naming what differs (on every
    rank, so that all of them stop instead of waiting for each other)."""
    everyone = gather(dict(args), rank)
    differ = sorted({k for other in everyone for k in set(other) | set(everyone[0])
                     if other.get(k) != everyone[0].get(k)})
    if differ:
        values = "; ".join(f"{k}: " + ", ".join(f"rank {r} {a.get(k)!r}" for r, a in enumerate(everyone))
                           for k in differ)
        raise ValueError(f"ranks: the processes were started with different arguments ({values})")


__all__ = ["Rank", "barrier", "check_agreement", "from_main", "gather", "process_group", "rank_device",
           "rank_from_env"]
