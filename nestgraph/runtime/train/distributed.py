"""What data-parallel training needs from nestgraph, kept free of global state.

Under `torchrun` every rank reads its own batches; the outer weights are kept in sync by the
usual gradient all-reduce (DDP, later FSDP2). Stream-lifetime state is the one thing the
runtime owns outside the model: each rank's copy drifts with its own data, so ranks average it
at their synchronisation points. The run folder is chosen once, by rank 0, and handed to the
other ranks, so no two ranks ever invent different folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nestgraph.runtime.stream import StreamState

RUN_DIR_ENV = "NESTGRAPH_RUN_DIR"


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_rank() -> Rank:
    """This process's place in the job, from torch.distributed or torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return Rank(dist.get_rank(), dist.get_world_size())
    return Rank(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def average_stream(stream: StreamState) -> None:
    """Replace every stream tensor by its mean over the ranks (no-op on a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for table in (stream.weights, stream.accum, stream.velocity):
        for tensor in table.values():
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(world)


def shared_run_dir(choose) -> str:
    """Rank 0 calls `choose()` for the run folder; every rank returns the same path."""
    if not (dist.is_available() and dist.is_initialized()):
        return os.environ.get(RUN_DIR_ENV) or str(choose())
    box = [str(choose()) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_equal(tensor: torch.Tensor) -> bool:
    """Whether every rank holds the same values (a check for tests and debugging)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    mine = tensor.detach().clone()
    high, low = mine.clone(), mine.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return bool(torch.equal(high, low))
