"""The slow, obvious reference for `delta.delta_scan`: one token at a time.

For every token: at a chunk boundary, remember the weights as the chunk-start state; read the
query there; make the token's value there when the memory writes its own; take the token's
gradient there with autograd (``torch.func.grad``, none of the closed forms); then apply Eq. 88
literally, one matrix at a time: ``W ← W (α I − η x̂ x̂ᵀ) − η ∇W``, with ``x̂`` the matrix's
normalised input. ``chunk=1`` is the per-token rule; a larger chunk is the naive chunked loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nestgraph.runtime.ops.memory import _check_args, memory_read
from nestgraph.runtime.ops.memory_shapes import depth, is_plain

Tensor = torch.Tensor


def delta_scan_reference(kind: str, objective: str, weights: dict[str, Tensor], q: Tensor,
                         k: Tensor, v: Tensor, lr: Tensor, forget: Tensor, *, chunk: int,
                         self_values: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """Same contract as `delta.delta_scan`, computed with a Python loop over tokens."""
    _check_args(kind, objective, chunk)
    state, start, ys = dict(weights), dict(weights), []
    for t in range(q.shape[-2]):
        if t % chunk == 0:
            start = dict(state)
        token = slice(t, t + 1)
        ys.append(memory_read(kind, start, q[..., token, :]))
        value = memory_read(kind, start, v[..., token, :]) if self_values else v[..., token, :]
        state = token_update(kind, objective, state, start, k[..., token, :], value,
                             lr[..., t], forget[..., t])
    y = torch.cat(ys, dim=-2) if ys else q.new_zeros(q.shape)
    return y, state


def token_update(kind: str, objective: str, state: dict[str, Tensor], start: dict[str, Tensor],
                 key: Tensor, value: Tensor, lr: Tensor, forget: Tensor) -> dict[str, Tensor]:
    """One token of Eq. 88, the gradient taken at ``start``; ``key``, ``value``: (..., 1, d)."""
    u = torch.func.grad(lambda w: _loss(kind, objective, w, key, value))(start)
    inputs = layer_inputs(kind, start, key)
    eta, alpha = lr[..., None, None], 1 - forget[..., None, None]
    out = {}
    for name, w in state.items():
        x = F.normalize(inputs[name], dim=-1, eps=1e-12)  # (..., 1, n)
        out[name] = alpha * w - eta * (w @ x.transpose(-1, -2)) @ x - eta * u[name]
    return out


def layer_inputs(kind: str, weights: dict[str, Tensor], key: Tensor) -> dict[str, Tensor]:
    """What each weight matrix multiplies when the memory reads ``key``."""
    if kind == "linear":
        return {"w": key}
    if is_plain(kind):
        out, h = {}, key
        for i in range(1, depth(kind) + 1):
            out[f"p{i}"] = h
            h = F.silu(h @ weights[f"p{i}"].transpose(-1, -2))
        return out
    return {"w2": key, "w1": F.silu(key @ weights["w2"].transpose(-1, -2))}


def _loss(kind: str, objective: str, w: dict[str, Tensor], key: Tensor, value: Tensor) -> Tensor:
    # Summed over every leading index: their weights are disjoint, so the gradient with respect
    # to the stacked weights is each one's own.
    pred = memory_read(kind, w, key)
    if objective == "l2":
        return ((pred - value) ** 2).sum()
    return -(pred * value).sum()
