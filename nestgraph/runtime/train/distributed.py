"""What data-parallel training needs from nestgraph, kept free of global state.

Under `torchrun` every rank reads its own rows of the global batch; the outer weights are kept
in sync by PyTorch's own data parallelism (`parallel.py`: DDP or FSDP2). Stream-lifetime state
is the one thing the runtime owns outside the model: a stream level's signal is averaged across
ranks when the level fires (`mean_over_ranks`, handed to the read), so every rank steps its
stream weights alike, and the signal still pending at a step's end is averaged too
(`average_stream`), so a checkpoint holds the same stream on every rank. The run folder is
chosen once, by rank 0, and handed to the other ranks.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from nestgraph.runtime.stream import StreamState

RUN_DIR_ENV = "NESTGRAPH_RUN_DIR"


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_rank() -> Rank:
    """This process's place in the job, from torch.distributed or torchrun's variables."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if active():
        return Rank(dist.get_rank(), dist.get_world_size(), local)
    return Rank(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), local)


def active() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(device: torch.device, timeout_s: float = 600.0):
    """Join the job torchrun started (its RANK/WORLD_SIZE/MASTER_* variables), for the block.

    Yields this rank's device (``cuda:LOCAL_RANK`` on GPUs). A single process, or one whose
    group is already set up (tests, a caller's own), is left as it is.
    """
    rank = current_rank()
    if rank.world_size == 1 or (dist.is_available() and dist.is_initialized()):
        yield _local_device(device, rank)
        return
    device = _local_device(device, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), timeout=timedelta(seconds=timeout_s))
    try:
        yield device
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for a bare ``cuda`` under torchrun."""
    return _local_device(device, current_rank())


def _local_device(device: torch.device, rank: Rank) -> torch.device:
    if device.type == "cuda" and device.index is None and rank.world_size > 1:
        return torch.device("cuda", rank.local_rank)
    return device


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over the ranks, as a new tensor (gloo has no AVG: sum, divide)."""
    if not active():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.div_(dist.get_world_size())


def average_stream(stream: StreamState) -> None:
    """Average the stream signal still pending (accumulated since each level last fired).

    The stream weights and velocities need no averaging: every rank stepped them alike from the
    averaged signal. Averaging the pending part now rather than only at the next firing gives
    the same sum (the mean is linear) and lets any rank's checkpoint stand for all of them.
    """
    if not active():
        return
    for name, tensor in stream.accum.items():
        stream.accum[name] = mean_over_ranks(tensor)


def average_grads(model: torch.nn.Module) -> None:
    """Replace every pending gradient by its mean over the ranks (DDP reduces them itself in
    a synchronised backward; this is for gradients accumulated under ``no_sync``)."""
    if not active():
        return
    for p in model.parameters():
        if p.grad is not None and not hasattr(p.grad, "device_mesh"):  # FSDP2's are reduced
            p.grad.copy_(mean_over_ranks(p.grad))


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of a few numbers over the ranks (one small all-reduce)."""
    if not active():
        return list(values)
    out = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` is true on some rank: ranks agree on stopping at the same step."""
    if not active():
        return flag
    return sum_over_ranks([float(flag)], device)[0] > 0


def from_main(value):
    """Rank 0's `value` on every rank (any picklable object)."""
    if not active():
        return value
    box = [value if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def shared_run_dir(choose) -> str:
    """Rank 0 calls `choose()` for the run folder; every rank returns the same path."""
    if not (dist.is_available() and dist.is_initialized()):
        return os.environ.get(RUN_DIR_ENV) or str(choose())
    return from_main(str(choose()) if dist.get_rank() == 0 else None)


def all_equal(tensor: torch.Tensor) -> bool:
    """Whether every rank holds the same values (a check for tests and debugging)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    mine = tensor.detach().clone()
    high, low = mine.clone(), mine.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return bool(torch.equal(high, low))
