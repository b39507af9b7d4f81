"""Delta Gradient Descent (DGD) on an associative memory, trained chunk-parallel (NL Eq. 88).

The memory and its objectives are those of `nestgraph.runtime.ops.memory` (``linear`` or the
residual ``mlp``; ``l2`` or ``dot``). The rule is the one the self-modifying Titans uses for
every one of its memories::

    M_t = M_{t−1} (α_t I − η_t x̂_t x̂_tᵀ) − η_t ∇ℓ_t(M_0)

``η_t`` is the step size (``lr``), ``α_t = 1 − forget_t`` the retention. The decay along
``x̂_t`` is DGD's (NL App. C): the weights forget what they stored along the direction they
are about to write. ``∇ℓ_t`` is taken at the chunk-start state ``M_0`` (§8.2); with ``l2`` the
``kkᵀ`` term therefore appears twice, once from DGD and once from the loss, exactly as Eq. 93
prints it (docs/paper-compliance.md, ambiguity 3).

Which direction. Each weight matrix decays along its *own* input, normalised: the key ``k``
for the linear memory and for ``W2`` of the MLP, the hidden activation ``σ(W2 k)`` (at the
chunk-start state) for ``W1``. For a single matrix this is Eq. 88 as printed (``M(αI − ηkkᵀ)``);
for the MLP it is DGD applied layer by layer, as App. C derives it for any layer from that
layer's input. The input is normalised because DGD's closed form assumes ``‖x‖ = 1``; it keeps
``αI − ηx̂x̂ᵀ`` a contraction whenever ``η ≤ 1 + α``.

Chunk form. Every per-token gradient of a matrix is an outer product with that matrix's input,
``∇ℓ_t = L_t x_tᵀ``, so the rule reads ``M_t = M_{t−1} A_t + w_t x̂_tᵀ`` with
``A_t = α_t I − η_t x̂_t x̂_tᵀ`` and ``w_t = −η_t ‖x_t‖ L_t``. Unrolled over a chunk of ``C``
tokens (``γ_t = Π_{j≤t} α_j``, ``g_{t,i} = Π_{j=i+1..t} α_j``)::

    M_t = γ_t M_0 + Σ_{i≤t} g_{t,i} z_i x̂_iᵀ,      z_i = w_i − η_i M_{i−1} x̂_i

and ``M_{i−1} x̂_i`` expands in the earlier ``z_j``, so the ``z`` solve one unit lower-triangular
system per chunk (the WY / "UT" form of DeltaNet, here with DGD's un-gated decay term)::

    (I + A) Z = W − diag(η γ_{·−1}) X̂ M_0ᵀ,     A_{ij} = η_i g_{i−1,j} ⟨x̂_i, x̂_j⟩  (j < i)

after which ``M_C = γ_C M_0 + (diag(g_{C,·}) Z)ᵀ X̂`` is one matmul. No product is divided
by another, so ``α_t = 0`` is exact. Only chunks are looped over; `delta_reference` holds the
per-token loop this is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nestgraph.runtime.ops.memory import (
    _check_args,
    _grad_factors,
    _output_grad,
    _segment_products,
    read_chunk,
)

Tensor = torch.Tensor

# Floor of an input's norm before it is normalised (an all-zero hidden activation).
_TINY = 1e-12


def delta_scan(kind: str, objective: str, weights: dict[str, Tensor], q: Tensor, k: Tensor,
               v: Tensor, lr: Tensor, forget: Tensor, *, chunk: int,
               self_values: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """Read ``q`` and write ``(k, v)`` by DGD, chunk by chunk; reads see the chunk-start state.

    ``q, k, v``: (..., T, d); ``lr`` (η ≥ 0) and ``forget`` (1 − α ∈ [0, 1]): (..., T).
    ``self_values``: the memory writes its own values ``v̂_t = M_0(v_t)`` (NL Eq. 84) instead of
    ``v_t``. Returns the reads (..., T, d) and the final weights.
    """
    _check_args(kind, objective, chunk)
    state, ys = dict(weights), []
    pieces = zip(q.split(chunk, -2), k.split(chunk, -2), v.split(chunk, -2),
                 lr.split(chunk, -1), forget.split(chunk, -1), strict=True)
    for q_c, k_c, v_c, lr_c, forget_c in pieces:
        y, pred, target, pre = read_chunk(kind, state, q_c, k_c, v_c, self_values)
        state = delta_step(kind, objective, state, k_c, pred, pre, target, lr_c, forget_c)
        ys.append(y)
    if not ys:
        return q.new_zeros(q.shape), state
    return torch.cat(ys, dim=-2), state


def delta_step(kind: str, objective: str, state: dict[str, Tensor], k: Tensor, pred: Tensor,
               pre: Tensor | None, target: Tensor, lr: Tensor,
               forget: Tensor) -> dict[str, Tensor]:
    """One chunk of DGD: the state at the chunk's end, from ``pred = M_0(k)`` (and, for the
    MLP, its pre-activations) already computed at the chunk-start state."""
    factors = _grad_factors(kind, state, k, _output_grad(objective, pred, target), pre)
    decay = _Decay.of(lr, 1 - forget)
    return {n: _solve_chunk(state[n], left, right, decay) for n, (left, right) in factors.items()}


class _Decay:
    """What the rates of one chunk contribute, shared by every matrix the chunk writes."""

    def __init__(self, lr: Tensor, carry_prev: Tensor, step_reach: Tensor, last: Tensor,
                 reach: Tensor) -> None:
        self.lr, self.carry_prev, self.step_reach = lr, carry_prev, step_reach
        self.last, self.reach = last, reach

    @classmethod
    def of(cls, lr: Tensor, keep: Tensor) -> _Decay:
        carry = _segment_products(keep)  # g_{t,i}, zero above the diagonal
        reach = torch.cumprod(keep, dim=-1)  # γ_t
        # Row t of the "previous" matrices holds g_{t−1,·} and γ_{t−1} (γ_{−1} = 1).
        carry_prev = F.pad(carry[..., :-1, :], (0, 0, 1, 0)) * lr.unsqueeze(-1)
        step_reach = (lr * F.pad(reach[..., :-1], (1, 0), value=1.0)).unsqueeze(-1)
        return cls(lr.unsqueeze(-1), carry_prev, step_reach, carry[..., -1, :].unsqueeze(-1),
                   reach[..., -1, None, None])


def _solve_chunk(m0: Tensor, left: Tensor, right: Tensor, decay: _Decay) -> Tensor:
    """``M_C`` for ``M_t = M_{t−1}(α_t I − η_t x̂x̂ᵀ) − η_t L_t x_tᵀ`` over one chunk.

    ``m0``: (..., m, n); ``left``: (..., C, m); ``right`` (the inputs ``x``): (..., C, n).
    Leading dimensions broadcast: inputs shared by several memories are passed once.
    """
    norm = right.norm(dim=-1, keepdim=True).clamp_min(_TINY)
    x = right / norm
    # Strictly lower (carry_prev is zero on the diagonal); the solve takes the unit diagonal
    # as given, so I is never added.
    system = decay.carry_prev * (x @ x.transpose(-1, -2))
    # Per-token scalars go on the inputs, which several memories may share, not on the
    # (larger) per-memory products.
    rhs = (decay.lr * norm) * left + (decay.step_reach * x) @ m0.transpose(-1, -2)
    z = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    return decay.reach * m0 - z.transpose(-1, -2) @ (decay.last * x)
