"""Sharded checkpoints of FSDP2 runs, through ``torch.distributed.checkpoint`` (DCP).

Every rank writes its own shard of the weights, the optimizers' states and the gradients still
pending into ``checkpoints/.tmp-step-N/shards/``; rank 0 then adds ``state.pt`` (the stream
state and RNG states, the same on every rank) and ``trainer_state.json``, and renames the
folder into place, so a checkpoint appears whole or not at all. DCP records where each piece of
every tensor lives, so a checkpoint written by N ranks loads on any other number of ranks, or
into a single process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.runtime.train.distributed import active, barrier, current_rank, from_main


def save_sharded(model: torch.nn.Module, optimizers: dict, step: int, run_dir: Path,
                 state: dict, meta: dict, keep_last: int | None) -> None:
    """Write the checkpoint of `step`; every rank calls this, rank 0 publishes it."""
    main = current_rank().is_main
    tmp = Path(from_main(str(ckpt.temporary_folder(run_dir, step)) if main else None))
    barrier()  # the folder exists before anyone writes into it
    try:
        dcp.save(_sharded_state(model, optimizers), checkpoint_id=tmp / ckpt.SHARDS_DIR,
                 no_dist=not active())
        if main:
            pending = sorted(n for n, p in model.named_parameters() if p.grad is not None)
            ckpt.write_files(tmp, weights=None, state={**state, "pending": pending},
                             meta={**meta, "step": step, "format": "sharded"})
            ckpt.publish(tmp, step, keep_last)
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        barrier()


def load_sharded(model: torch.nn.Module, optimizers: dict, path: Path,
                 pending: list[str]) -> None:
    """Read a sharded checkpoint into this job's (possibly sharded) model and optimizers."""
    params = dict(model.named_parameters())
    for name in pending:  # a place for each pending gradient, shaped as this job shards it
        params[name].grad = torch.zeros_like(params[name])
    target = _sharded_state(model, optimizers)
    dcp.load(target, checkpoint_id=path / ckpt.SHARDS_DIR, no_dist=not active())
    model.load_state_dict(target["model"])
    for name, opt in optimizers.items():
        set_optimizer_state_dict(model, opt, target["optimizers"][name])
    for name in pending:
        params[name].grad.copy_(target["grads"][name])


def _sharded_state(model: torch.nn.Module, optimizers: dict) -> dict:
    """Weights, optimizer states (by parameter name) and pending gradients, as DCP names them."""
    return {"model": model.state_dict(),
            "optimizers": {n: get_optimizer_state_dict(model, o) for n, o in optimizers.items()},
            "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None}}
