"""The self-modifying Titans' projection memories one token at a time, with autograd gradients:
the slow, obvious reference beside `selfmod.projection_scan` (tests and benchmarks only)."""

from __future__ import annotations

import torch
from torch import Tensor

from nestgraph.runtime.ops.delta_naive import _loss, token_update
from nestgraph.runtime.ops.memory import _check_args, memory_read
from nestgraph.runtime.ops.selfmod import Derive, Derived, _concat


def projection_scan_reference(kind: str, objective: str, weights: dict[str, Tensor],
                              z: Tensor, derive: Derive, *, chunk: int,
                              self_values: bool = True, rule: str = "dgd"
                              ) -> tuple[Derived, dict[str, Tensor]]:
    """Same contract as `projection_scan`, one token at a time with autograd gradients."""
    update = token_update if rule == "dgd" else gd_token_update
    _check_args(kind, objective, chunk)
    state, start, parts = dict(weights), dict(weights), []
    for t in range(z.shape[-2]):
        if t % chunk == 0:
            start = dict(state)
        out = derive(memory_read(kind, start, z[..., t : t + 1, :].unsqueeze(0)))
        parts.append(out)
        memories = next(iter(state.values())).shape[0]
        key = out.k.unsqueeze(0).expand(memories, *out.k.shape)
        value = out.v.unsqueeze(0).expand(memories, *out.v.shape)
        if self_values:
            value = memory_read(kind, start, value)
        lr, forget = (_per_memory(r[..., 0], memories, out.k.dim() - 2)
                      for r in (out.lr, out.forget))
        state = update(kind, objective, state, start, key, value, lr, forget)
    if not parts:
        raise ValueError("projection_scan_reference needs at least one token")
    return _concat(parts), state


def gd_token_update(kind: str, objective: str, state: dict[str, Tensor],
                    start: dict[str, Tensor], key: Tensor, value: Tensor, lr: Tensor,
                    forget: Tensor) -> dict[str, Tensor]:
    """One token of plain GD with retention, the gradient taken at ``start``:
    ``M ← (1 − α) M − η ∇ℓ(M_start)``."""
    u = torch.func.grad(lambda w: _loss(kind, objective, w, key, value))(start)
    eta, alpha = lr[..., None, None], forget[..., None, None]
    return {name: (1 - alpha) * w - eta * u[name] for name, w in state.items()}


def _per_memory(rate: Tensor, memories: int, shared_dims: int) -> Tensor:
    """One rate per memory: a rate shared by all of them is repeated, a per-memory one kept."""
    if rate.dim() > shared_dims:
        return rate
    return rate.unsqueeze(0).expand(memories, *rate.shape)
