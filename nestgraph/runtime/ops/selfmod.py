"""The self-modifying Titans (NL §8.1–8.2, Eqs. 79–93): every projection is a memory.

Per head, the keys, values, learning rate η and retention α (and, by a flag, the queries) are
produced by in-context memories ``M_k, M_v, M_η, M_α (, M_q)`` rather than by fixed matrices
(Eqs. 79–82). Each of them, and the main memory ``M_memory``, is written by DGD with weight
decay (Eq. 88) on ``‖M(k_t) − v̂_t‖²``; with ``self_values`` every memory writes its own values
``v̂_□ = M_□(v_t)`` (Eqs. 83–85), otherwise all write the shared ``v_t`` (the first version,
Eqs. 79–82). The read is ``y_t = M_memory(q_t)``.

Chunk-wise training (§8.2). The projection memories share one chunk size and the main memory
has its own (the paper's two chunk sizes). Inside a projection chunk, every memory produces its
outputs from its chunk-start state, and every gradient is taken there, so a chunk is a handful
of batched matmuls and one triangular solve per matrix (`delta.delta_step`). The projections
never read the main memory, so they are scanned first over the whole call, and the main memory
(`delta.delta_scan`) after; the loops run over chunks, never tokens. `selfmod_naive.projection_scan_reference`
is the per-token loop beside the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from nestgraph.runtime.ops.delta import delta_step
from nestgraph.runtime.ops.memory import (
    _check_args,
    _forward,
    _grad_factors,
    _output_grad,
    _scale_add,
    _weighted_outer,
    chunk_coefficients,
    read_chunk,
)

Tensor = torch.Tensor


class Derived(NamedTuple):
    """What one chunk of projection outputs becomes: the keys and values every memory writes
    with (..., C, d), the projections' own rates (..., C), and anything else the caller wants
    kept, laid out (..., C, e)."""

    k: Tensor
    v: Tensor
    lr: Tensor
    forget: Tensor
    extra: Tensor


Derive = Callable[[Tensor], Derived]


def projection_scan(kind: str, objective: str, weights: dict[str, Tensor], z: Tensor,
                    derive: Derive, *, chunk: int, self_values: bool = True, rule: str = "dgd"
                    ) -> tuple[Derived, dict[str, Tensor]]:
    """Run the stacked projection memories over ``z`` (..., T, d), chunk by chunk.

    ``weights`` carry one extra leading dimension, the memories (P, ..., ·, ·). ``derive`` maps
    their outputs (P, ..., C, d) at the chunk-start state to a `Derived`. Returns the derived
    values over the whole sequence (time along dimension -2, rates along -1) and the final
    weights. ``rule="titans"``: the memories learn by plain GD with retention,
    ``M = (1 − α) M − η ∇ℓ``, instead of DGD (NL Table 6's ablation).
    """
    _check_args(kind, objective, chunk)
    state, parts = dict(weights), []
    write = _write_chunk if rule == "dgd" else _write_chunk_gd
    for z_c in z.split(chunk, -2):
        out = derive(_forward(kind, state, z_c.unsqueeze(0))[0])
        parts.append(out)
        state = write(kind, objective, state, out, self_values)
    if not parts:
        raise ValueError("projection_scan needs at least one token")
    return _concat(parts), state


def _write_chunk(kind: str, objective: str, state: dict[str, Tensor], out: Derived,
                 self_values: bool) -> dict[str, Tensor]:
    """Every projection memory writes the chunk's (k, v̂) pairs, gradients at the chunk start."""
    # Keys, values and rates are shared by the memories: passed once, they broadcast against
    # the stacked weights, so what depends on them alone is computed once.
    _, pred, target, pre = read_chunk(kind, state, None, out.k, out.v, self_values)
    return delta_step(kind, objective, state, out.k, pred, pre, target, out.lr, out.forget)


def _write_chunk_gd(kind: str, objective: str, state: dict[str, Tensor], out: Derived,
                    self_values: bool) -> dict[str, Tensor]:
    """The same writes by GD: ``M_C = a M_0 + Σ c_i ∇ℓ_i`` from Titans' closed form with no
    momentum (`memory.chunk_coefficients`), one weighted outer-product sum per matrix."""
    _, pred, target, pre = read_chunk(kind, state, None, out.k, out.v, self_values)
    factors = _grad_factors(kind, state, out.k, _output_grad(objective, pred, target), pre)
    coeffs = chunk_coefficients(out.lr, out.forget, torch.zeros_like(out.lr),
                                use_momentum=False)
    return {n: _scale_add(coeffs.a, state[n], _weighted_outer(coeffs.c, left, right))
            for n, (left, right) in factors.items()}


def _concat(parts: list[Derived]) -> Derived:
    return Derived(*(torch.cat([getattr(p, f) for p in parts], dim=-1 if f in ("lr", "forget")
                               else -2) for f in Derived._fields))
