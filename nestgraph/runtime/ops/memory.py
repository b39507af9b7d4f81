"""Associative memory with fast weights, trained chunk-parallel (Titans §3, NL §8).

A memory ``M`` maps keys to values. Every head of every sequence in the batch owns its own fast
weights, so every tensor here carries two leading dimensions ``(B, H)``. Two architectures:

* ``linear``: ``M(z) = W z`` with ``weights = {"w": (B, H, d, d)}`` (``W[out, in]``);
* ``mlp``: the residual two-layer ``M(z) = z + W1 σ(W2 z)`` with
  ``weights = {"w1": (B, H, d, h), "w2": (B, H, h, d)}`` and ``σ`` = SiLU, fixed;
* ``plain2`` … ``plain4``: the plain (non-residual) MLPs of Titans' depth study,
  ``M(z) = P_L σ(⋯ σ(P_1 z))`` (shapes in `memory_shapes`).

Each token ``t`` writes the pair ``(k_t, v_t)`` with the inner objective

* ``l2``: ``ℓ_t(M) = ‖M(k_t) − v_t‖²`` (no 1/2, no mean: scale lives in the step size);
* ``dot``: ``ℓ_t(M) = −⟨M(k_t), v_t⟩``;

and the Titans rule with momentum ("surprise") and forgetting, every rate per (B, H, T)::

    S_t = η_t S_{t−1} − θ_t u_t          (η = ``decay``, θ = ``lr``)
    M_t = (1 − α_t) M_{t−1} + S_t        (α = ``retention``, the forget gate as Titans writes it)

applied alike to every weight matrix of the memory.

Chunking. The sequence is cut into chunks of ``chunk`` tokens (the last may be shorter). Inside
a chunk every gradient is taken at the chunk-start state ``M_0``: ``u_t = ∇ℓ_t(M_0)``, and every
token reads the memory as it was at the start of its chunk: ``y_t = M_0(q_t)``. With
``chunk=1`` this is the per-token rule, and ``y_t = M_{t−1}(q_t)`` reads the state before token
``t`` is written, so the output is causal.

Once the gradients are fixed the rule is linear, so a chunk of length ``C`` ends at::

    M_C = a M_0 + b S_0 + Σ_i c_i u_i,      S_C = d S_0 + Σ_i e_i u_i

with, writing ``β_j = 1 − α_j``, ``P_t = Π_{j=t+1..C} β_j`` (what forgetting after ``t`` leaves
of a write made at ``t``) and ``G_{t,i} = Π_{j=i+1..t} η_j`` (what momentum carries of ``u_i``
to step ``t``)::

    S_t = G_{t,0} S_0 − Σ_{i≤t} θ_i G_{t,i} u_i
    M_C = (Π_{j≤C} β_j) M_0 + Σ_t P_t S_t
    a = Π_{j≤C} β_j,  b = Σ_t P_t G_{t,0},  c_i = −θ_i Σ_{t≥i} P_t G_{t,i},
    d = G_{C,0},      e_i = −θ_i G_{C,i}.

In terms of ``B_t = Π_{j≤t} β_j``, ``P_t = B_C/B_t``, so ``−c_i = θ_i Σ_{t≥i} (B_C/B_t)
Π_{j=i+1..t} η_j``: momentum carries ``u_i`` forward to every later ``t`` of the chunk, and each
``S_t`` enters ``M`` at ``t`` and then decays. `chunk_coefficients` computes all of them for
every chunk at once; the loop in `memory_scan` runs over chunks, never over tokens.
``Σ_i c_i u_i`` is never formed token by token: every per-token gradient is an outer product
``L_i R_iᵀ`` (`_grad_factors`: for ``linear``+``l2``, ``2(W k_i − v_i) k_iᵀ``; for ``mlp``, the
closed-form backprop through ``z + W1 σ(W2 z)``), so the weighted sum is the matmul
``(diag(c) L)ᵀ R`` per weight matrix (`_weighted_outer`).

Decisions:

* Products are taken directly, not as differences of cumulative log sums: ``G`` is a cumulative
  product down the columns of a ``C×C`` matrix holding ``η_t`` below the diagonal and ones
  elsewhere, and ``P`` a reversed cumulative product. This costs the same ``O(C²)`` as the
  log-space ratio matrix, needs no ``η, 1 − α ≥ tiny`` guard, never divides (so nothing
  overflows when a long run of ``α ≈ 1`` drives the products to zero), and stays exact, values
  and gradients, at ``η_t = 0`` or ``α_t = 1``.
* ``use_momentum=False`` is ``η ≡ 0``: ``S_t = −θ_t u_t``. The incoming momentum is then
  ignored and the returned momentum is the last token's ``S_T``.
* Nothing is detached: the outer gradient also flows through the chunk-start weights inside
  every ``u_t`` (the exact meta-gradient, as autograd through the per-token reference gives).
* ``σ`` is SiLU and not an argument, so the closed-form backprop and the reference agree on it.
* Nothing is clamped. A chunk sums its ``C`` gradients at one state (Titans' mini-batch form),
  so the step sizes that keep the rule stable shrink roughly as ``1/C``; for the MLP the
  curvature also grows with ``‖σ(W2 k)‖``, so a large ``θ`` can diverge even per token. That
  is the rule's dynamics (the reference diverges identically), left to whoever sets ``θ``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from nestgraph.runtime.ops.memory_shapes import KINDS, depth, is_plain, weight_shapes

Tensor = torch.Tensor

OBJECTIVES = ("l2", "dot")


def init_weights(kind: str, batch: int, heads: int, dim: int, hidden: int | None = None,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Random fast weights, one copy per (sequence, head), scaled by 1/sqrt(fan-in)."""
    _check_kind(kind)

    def normal(rows: int, cols: int) -> Tensor:
        w = torch.randn(batch, heads, rows, cols, generator=generator, dtype=dtype)
        return w / cols**0.5

    hidden = hidden or dim  # no hidden width given: as wide as the memory
    return {n: normal(*shape) for n, shape in weight_shapes(kind, dim, hidden).items()}


def memory_read(kind: str, weights: dict[str, Tensor], z: Tensor) -> Tensor:
    """``M(z)`` for ``z`` of shape (B, H, N, d), without writing anything."""
    _check_kind(kind)
    return _forward(kind, weights, z)[0]


def memory_scan(kind: str, objective: str, weights: dict[str, Tensor],
                momentum: dict[str, Tensor] | None, q: Tensor, k: Tensor, v: Tensor,
                lr: Tensor, retention: Tensor, decay: Tensor, *, chunk: int,
                use_momentum: bool = True, self_values: bool = False
                ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Read queries and write (key, value) pairs over a sequence, chunk by chunk.

    ``q, k, v``: (B, H, T, d). ``lr`` (θ_t ≥ 0, step size), ``retention`` (α_t ∈ [0, 1], forget
    gate: 1 erases the memory), ``decay`` (η_t ∈ [0, 1), momentum decay): (B, H, T).
    ``momentum`` None means zeros. ``self_values``: write ``(k_t, M_0(v_t))``, the memory's
    own reading of the value at the chunk-start state (NL Eq. 84), instead of ``(k_t, v_t)``.
    Returns the reads ``y`` (B, H, T, d) and the final weights
    and momentum (same keys and shapes as ``weights``). Differentiable in every tensor input.
    """
    _check_args(kind, objective, chunk)
    state = dict(weights)
    velocity = _initial_momentum(weights, momentum)
    if q.shape[-2] == 0:
        return q.new_zeros(q.shape), state, velocity
    ys = []
    # split, not indexing: indexing's backward writes a zero-filled full-length copy per chunk.
    pieces = zip(q.split(chunk, -2), k.split(chunk, -2), v.split(chunk, -2),
                 _chunks(lr, retention, decay, chunk, use_momentum), strict=True)
    for q_c, k_c, v_c, coeffs in pieces:
        y, state, velocity = _chunk_step(kind, objective, state, velocity, q_c, k_c, v_c, coeffs,
                                         self_values)
        ys.append(y)
    return torch.cat(ys, dim=-2), state, velocity


class Coefficients(NamedTuple):
    """Scalars of one chunk's closed form; ``a, b, d``: (...,), ``c, e``: (..., C)."""

    a: Tensor  # M_0 -> M_C
    b: Tensor  # S_0 -> M_C
    c: Tensor  # u_i -> M_C
    d: Tensor  # S_0 -> S_C
    e: Tensor  # u_i -> S_C

    def unbind(self) -> list[Coefficients]:
        """One per chunk of a batch of chunks (the dimension before the token one)."""
        # unbind, not indexing: indexing's backward writes a zero-filled copy per chunk.
        fields = (self.a.unbind(-1), self.b.unbind(-1), self.c.unbind(-2), self.d.unbind(-1),
                  self.e.unbind(-2))
        return [Coefficients(*chunk) for chunk in zip(*fields, strict=True)]


def chunk_coefficients(lr: Tensor, retention: Tensor, decay: Tensor,
                       use_momentum: bool = True) -> Coefficients:
    """The closed form's coefficients for chunks laid along the last dimension (..., C)."""
    keep = 1 - retention
    suffix = torch.flip(torch.cumprod(torch.flip(keep, [-1]), dim=-1), [-1])  # Π_{j≥t} β_j
    after = torch.cat([suffix[..., 1:], torch.ones_like(suffix[..., :1])], dim=-1)  # P_t
    if not use_momentum:
        # η ≡ 0: G is the identity, nothing of S_0 survives, S_C is the last token's write.
        zero = torch.zeros_like(lr[..., 0])
        last = torch.cat([torch.zeros_like(lr[..., :-1]), -lr[..., -1:]], dim=-1)
        return Coefficients(suffix[..., 0], zero, -lr * after, zero, last)
    carry = _segment_products(decay)  # G_{t,i}, i ≥ 1
    reach = torch.cumprod(decay, dim=-1)  # G_{t,0}
    c = -lr * (after.unsqueeze(-2) @ carry).squeeze(-2)
    return Coefficients(suffix[..., 0], (after * reach).sum(-1), c, reach[..., -1],
                        -lr * carry[..., -1, :])


def _segment_products(x: Tensor) -> Tensor:
    """``G[..., t, i] = Π_{j=i+1..t} x_j`` on and below the diagonal, zero above it."""
    size = x.shape[-1]
    # Column i holds x_t only for t > i (ones on and above the diagonal), so running down it
    # multiplies exactly x_{i+1..t}; built from tril alone, no index masks per call.
    factors = 1 + torch.tril(x.unsqueeze(-1).expand(*x.shape, size) - 1, -1)
    return torch.tril(torch.cumprod(factors, dim=-2))


def _chunks(lr: Tensor, retention: Tensor, decay: Tensor, chunk: int,
            use_momentum: bool) -> list[Coefficients]:
    """Every chunk's coefficients, in order; all full chunks are solved in one batch."""
    seq_len = lr.shape[-1]
    full = seq_len // chunk
    out = []
    if full:
        rates = [x[..., : full * chunk].unflatten(-1, (full, chunk))
                 for x in (lr, retention, decay)]
        out += chunk_coefficients(*rates, use_momentum=use_momentum).unbind()
    if seq_len % chunk:
        tail = [x[..., full * chunk :] for x in (lr, retention, decay)]
        out.append(chunk_coefficients(*tail, use_momentum=use_momentum))
    return out


def _chunk_step(kind: str, objective: str, state: dict[str, Tensor],
                velocity: dict[str, Tensor], q: Tensor, k: Tensor, v: Tensor,
                coeffs: Coefficients, self_values: bool = False
                ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Read one chunk at the chunk-start state, then jump the state to the chunk's end."""
    y, pred, target, pre = read_chunk(kind, state, q, k, v, self_values)
    factors = _grad_factors(kind, state, k, _output_grad(objective, pred, target), pre)
    new_state, new_velocity = {}, {}
    for n, (left, right) in factors.items():
        # M_C = a M_0 + b S_0 + Σ c_i u_i and S_C = d S_0 + Σ e_i u_i, fused multiply-adds.
        to_state = _weighted_outer(coeffs.c, left, right)
        new_state[n] = _scale_add(coeffs.b, velocity[n], _scale_add(coeffs.a, state[n], to_state))
        new_velocity[n] = _scale_add(coeffs.d, velocity[n], _weighted_outer(coeffs.e, left, right))
    return y, new_state, new_velocity


def read_chunk(kind: str, state: dict[str, Tensor], q: Tensor | None, k: Tensor, v: Tensor,
               self_values: bool) -> tuple[Tensor | None, Tensor, Tensor, Tensor | None]:
    """One pass of the chunk-start weights over a chunk's queries (if any), keys and, when the
    memory writes its own values, values. Returns the reads of ``q`` (None without queries),
    ``M_0(k)``, the values to write (``M_0(v)`` or ``v``) and, for the MLP, the pre-activations
    at ``k`` (kept for the closed-form backprop)."""
    parts = ([] if q is None else [q]) + [k] + ([v] if self_values else [])
    sizes = [p.shape[-2] for p in parts]
    out, pre = _forward(kind, state, torch.cat(parts, dim=-2))
    reads = list(out.split(sizes, dim=-2))
    y = None if q is None else reads.pop(0)
    pred = reads[0]
    target = reads[1] if self_values else v
    at_keys = 0 if q is None else 1
    if isinstance(pre, tuple):
        pre = tuple(a.split(sizes, dim=-2)[at_keys] for a in pre)
    elif pre is not None:
        pre = pre.split(sizes, dim=-2)[at_keys]
    return y, pred, target, pre


def _forward(kind: str, weights: dict[str, Tensor], z: Tensor):
    """``M(z)`` and, for the MLPs, its pre-activations (kept for the closed-form backprop):
    one tensor for ``mlp``, a tuple of one per hidden layer for ``plainL``."""
    if kind == "linear":
        return z @ weights["w"].transpose(-1, -2), None
    if is_plain(kind):
        pres, h = [], z
        for i in range(1, depth(kind)):
            pres.append(h @ weights[f"p{i}"].transpose(-1, -2))
            h = F.silu(pres[-1])
        return h @ weights[f"p{depth(kind)}"].transpose(-1, -2), tuple(pres)
    pre = z @ weights["w2"].transpose(-1, -2)
    return z + F.silu(pre) @ weights["w1"].transpose(-1, -2), pre


def _output_grad(objective: str, pred: Tensor, v: Tensor) -> Tensor:
    """``∂ℓ_t / ∂M(k_t)`` for every token at once."""
    if objective == "l2":
        return 2 * (pred - v)
    return -v


def _grad_factors(kind: str, weights: dict[str, Tensor], k: Tensor, err: Tensor,
                  pre: Tensor | None) -> dict[str, tuple[Tensor, Tensor]]:
    """Per weight matrix, (L, R) with ``∇ℓ_i = L_i R_iᵀ`` for every token i: (B, H, C, ·)."""
    if kind == "linear":
        return {"w": (err, k)}
    if is_plain(kind):
        return _plain_factors(depth(kind), weights, k, err, pre)
    gate = torch.sigmoid(pre)
    # Backprop through z + W1 σ(W2 z) by hand: into the hidden layer, then through SiLU.
    back = (err @ weights["w1"]) * gate * (1 + pre * (1 - gate))
    return {"w1": (err, pre * gate), "w2": (back, k)}


def _plain_factors(layers: int, weights: dict[str, Tensor], k: Tensor, err: Tensor,
                   pres: tuple[Tensor, ...]) -> dict[str, tuple[Tensor, Tensor]]:
    """Backprop through ``P_L σ(⋯ σ(P_1 k))`` by hand: each matrix's gradient is the error at
    its output times its input, the error carried down one layer at a time through SiLU."""
    inputs = [k] + [F.silu(a) for a in pres]
    factors, delta = {}, err
    for i in range(layers, 0, -1):
        factors[f"p{i}"] = (delta, inputs[i - 1])
        if i > 1:
            a = pres[i - 2]
            gate = torch.sigmoid(a)
            delta = (delta @ weights[f"p{i}"]) * gate * (1 + a * (1 - gate))
    return dict(reversed(factors.items()))  # the weights' own order, p1 first


def _weighted_outer(coef: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``Σ_i coef_i left_i right_iᵀ``: (B, H, m, n) from (B, H, C), (B, H, C, m), (B, H, C, n)."""
    return (coef.unsqueeze(-1) * left).transpose(-1, -2) @ right


def _scale_add(s: Tensor, x: Tensor, base: Tensor) -> Tensor:
    """``base + s x`` for a scalar per (B, H) and (B, H, m, n) matrices, in one pass."""
    return torch.addcmul(base, s[..., None, None], x)


def _initial_momentum(weights: dict[str, Tensor],
                      momentum: dict[str, Tensor] | None) -> dict[str, Tensor]:
    if momentum is None:
        return {n: torch.zeros_like(w) for n, w in weights.items()}
    if set(momentum) != set(weights):
        raise ValueError(f"momentum keys {sorted(momentum)} differ from weights {sorted(weights)}")
    return dict(momentum)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown memory kind {kind!r}; expected one of {KINDS}")


def _check_args(kind: str, objective: str, chunk: int) -> None:
    _check_kind(kind)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
