"""The model as PyTorch's data parallelism sees it: one forward per step, whatever it learns.

`Reader` makes a whole read (every chunk, the in-context levels learning inside it) the
forward of one module, so DDP and FSDP2 see one forward and one backward per training step,
exactly as for a Transformer. The in-context levels' inner gradients are taken inside that
forward with ``torch.autograd.grad``, which never touches ``.grad``: only the outer backward
reaches the parameters, and with it the all-reduce (DDP) or reduce-scatter (FSDP2).
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from nestgraph.errors import TrainingError
from nestgraph.runtime.engine import read_sequence
from nestgraph.runtime.levels import in_context_levels
from nestgraph.runtime.stream import SequenceResult
from nestgraph.runtime.train.distributed import Rank, current_rank, mean_over_ranks


class Reader(nn.Module):
    """A model and its schedule as one module whose forward reads whole sequences."""

    def __init__(self, model: nn.Module, schedule) -> None:
        super().__init__()
        self.model = model
        self.schedule = schedule

    def forward(self, x: torch.Tensor, y: torch.Tensor, stream, **read) -> SequenceResult:
        return read_sequence(self.model, self.schedule, x, y, stream, **read)


@dataclass
class Parallel:
    """How this process takes part: its rank, and the module a step calls."""

    kind: str  # "none" | "ddp" | "fsdp"
    rank: Rank
    reader: nn.Module

    @property
    def world(self) -> int:
        return self.rank.world_size

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of the global batch (rank r takes the r-th equal slice)."""
        if self.world == 1:
            return x
        per = x.shape[0] // self.world
        return x[self.rank.rank * per:(self.rank.rank + 1) * per]

    def sync(self, on: bool):
        """DDP's ``no_sync`` when no step level fires and nothing is saved after this step:
        the gradients accumulate locally and the next synchronised backward reduces their sum
        (FSDP2 reduce-scatters every backward)."""
        if on or self.kind != "ddp":
            return nullcontext()
        return self.reader.no_sync()

    @property
    def reduce_stream(self):
        return mean_over_ranks if self.world > 1 else None


SHARDING_CONFLICT_HINT = "set train.parallel=ddp (the weights are replicated there)"
# Optimizer memories whose write reads a weight's whole gradient at once.
WHOLE_TENSOR_MEMORIES = ("deep_momentum", "deep_gain")


def sharding_conflict(schedule) -> str | None:
    """Why FSDP2 cannot train this schedule, or None.

    DMGD's deep memory (its hidden layers pool what every row of a weight's gradient wrote,
    and its l2 objective projects on the whole gradient) and the gain curve (one MLP trained
    on every element, scaled by the gradient's RMS) need each weight's whole gradient: FSDP2
    hands each rank a shard of it, so each rank would train its own memory on its own
    elements and the ranks would drift apart.
    """
    deep = [lv.name for lv in schedule if lv.kind == "optimizer"
            and getattr(lv.rule, "memory_kind", "") in WHOLE_TENSOR_MEMORIES]
    if not deep:
        return None
    return (f"train.parallel=fsdp, but optimizer level(s) {', '.join(map(repr, deep))} learn a "
            "deep memory from the whole of each weight's gradient, which FSDP2 shards across "
            "the ranks")


def resolve_kind(choice: str, world: int) -> str:
    """``train.parallel`` for this job: none on one process, ddp for ``auto``."""
    if world == 1:
        return "none"
    return "ddp" if choice == "auto" else choice


def wrap(model: nn.Module, schedule, choice: str, device: torch.device) -> Parallel:
    """The model wrapped for this job (before its optimizers are built: FSDP2 replaces the
    parameters by sharded ones)."""
    rank = current_rank()
    kind = resolve_kind(choice, rank.world_size)
    reader = Reader(model, schedule)
    if kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # Buffers are never trained and start equal: no broadcast before every forward.
        quiet = ({"forward_sync_buffers": False} if "forward_sync_buffers"
                 in inspect.signature(DistributedDataParallel).parameters
                 else {"broadcast_buffers": False})
        reader = DistributedDataParallel(reader, device_ids=ids, **quiet)
    elif kind == "fsdp":
        conflict = sharding_conflict(schedule)
        if conflict:  # train_config refuses it first; this guards a program trained from Python
            raise TrainingError(conflict, SHARDING_CONFLICT_HINT)
        _fully_shard(reader, model, schedule)
    return Parallel(kind, rank, reader)


def _fully_shard(reader: Reader, model: nn.Module, schedule) -> None:
    """FSDP2: one group per layer, or, with in-context levels, one group for the whole model.

    Per-layer groups register backward hooks on every layer's outputs, and those hooks run on
    any backward through the layer. An in-context level takes its inner gradients inside the
    read, through the layers after it, and FSDP2 takes that for the step's backward: it ends
    it by resharding every group, freeing the gathered weights the read is still using. So a
    model with in-context levels is one group, gathered for the whole read (the root group's
    hooks sit on the read's loss only); its weights, gradients and optimizer states are still
    sharded between steps, and gathered for one step at a time.
    """
    from torch.distributed.fsdp import fully_shard

    if not in_context_levels(schedule):
        for layer in getattr(model, "layers", []):
            fully_shard(layer)
    fully_shard(reader)

