"""The self-modifying Titans as a layer (NL §8.1, Eqs. 79–93; the token mixer of Hope).

Two in-context levels own its state: one the main memory (``NAME.memory``), one the projection
memories (``NAME.projections``: M_k, M_v, M_η, M_α, and M_q when ``adaptive_q``). Their initial
states are parameters that a slower level meta-learns (§8.1: "all initial states are
meta-learned"). Everything else (the input convolution, the static query projection, the rate
read-outs, the output norm, gate and projection) is ordinary outer-level weight.

Choices the paper leaves open, with their reasons (also in docs/paper-compliance.md):

* q is static by default (``q_t = x_t W_q``): §8.1's text says q is the one non-adaptive
  projection, and the Table 6 ablation finds the adaptive q no better. ``adaptive_q`` adds M_q.
* η and α are per head: a memory's output is read out to a scalar by a learned vector, then
  ``η = max_lr · sigmoid(·)`` (bounded, so the compiler can check stability) and
  ``α = 1 − sigmoid(·)`` (started at α ≈ 0.9975, as for Titans' forget gate). All memories share
  them (Eq. 88 has one η_t and one α_t per token); each level may scale η by its own max_lr or
  replace either by a constant.
* No momentum: Eq. 88 has none (ambiguity 2).
* v is ℓ2-normalised per head, like q and k. Every memory writes its own reading of v
  (``v̂ = M(v)``); with v unnormalised, a memory that grows makes larger values, which make it
  grow further, and a fresh Hope diverged within five chunks. The output is RMS-normalised
  per head, so v's length carried nothing the read-out keeps.
* The short causal convolution (window 4, §8.3) runs on the input, before the projection
  memories: convolving their outputs would mix values made by different memory states across a
  chunk boundary.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nestgraph.runtime.layers.core import RMSNorm
from nestgraph.runtime.layers.titans import (
    CausalDepthwiseConv,
    MemoryInit,
    constant_rate,
    is_off,
    split_heads,
)
from nestgraph.runtime.ops.delta import delta_scan
from nestgraph.runtime.ops.memory import memory_scan
from nestgraph.runtime.ops.memory_shapes import is_plain, weight_shapes
from nestgraph.runtime.ops.selfmod import Derived, projection_scan

FORGET_START = -6.0  # sigmoid(-6) ≈ 0.0025: start by keeping almost everything


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ℓ2 per head (q, k, v)."""
    return F.normalize(x, dim=-1, eps=1e-6)


class ProjectionInit(nn.Module):
    """Initial states of the projection memories, stacked: (P, heads, ·, ·) per matrix.

    The residual MLP starts near the identity (small ``W1``), so every projection starts as
    "pass the token's features through", and small random ``W1`` tells the roles apart.
    """

    def __init__(self, kind: str, count: int, heads: int, head_dim: int, hidden: int) -> None:
        super().__init__()
        if kind == "linear":
            eye = torch.eye(head_dim).expand(count, heads, head_dim, head_dim)
            self.w = nn.Parameter(eye + 0.02 * torch.randn(count, heads, head_dim, head_dim))
        elif is_plain(kind):  # no identity to start near: random features, as a layer starts
            for name, (rows, cols) in weight_shapes(kind, head_dim, hidden).items():
                setattr(self, name, nn.Parameter(torch.randn(count, heads, rows, cols)
                                                 * cols**-0.5))
        else:
            self.w1 = nn.Parameter(torch.randn(count, heads, head_dim, hidden) * 0.02)
            self.w2 = nn.Parameter(torch.randn(count, heads, hidden, head_dim) * head_dim**-0.5)

    def expand(self, batch: int) -> dict[str, torch.Tensor]:
        return {n: p.unsqueeze(1).expand(p.shape[0], batch, *p.shape[1:])
                for n, p in self.named_parameters()}


class SelfModParts(nn.Module):
    """The outer level's share of the layer."""

    def __init__(self, dim: int, heads: int, conv: int, adaptive_q: bool, gate: bool) -> None:
        super().__init__()
        head_dim = dim // heads
        self.conv = CausalDepthwiseConv(dim, conv) if conv else None
        self.q = None if adaptive_q else nn.Linear(dim, dim, bias=False)
        self.readout = nn.Parameter(torch.randn(2, heads, head_dim) * 0.02)  # η, α
        self.readout_bias = nn.Parameter(torch.tensor([[0.0], [FORGET_START]]).expand(2, heads)
                                         .clone())
        self.norm = RMSNorm(head_dim, eps=1e-6)
        self.gate = nn.Linear(dim, dim, bias=False) if gate else None
        self.out = nn.Linear(dim, dim, bias=False)
        if self.q is not None:
            nn.init.normal_(self.q.weight, std=dim**-0.5)
        nn.init.normal_(self.out.weight, std=0.5 * dim**-0.5)


class SelfModifyingTitans(nn.Module):
    """q (static or a memory), k, v, η, α from in-context memories; the main memory read at q.

    ``chunk``/``proj_chunk``: how often the main and the projection memories are written (the
    periods of the levels that own them). ``lr``/``forget`` (main) and ``proj_lr``/``proj_forget``
    (projections): None means produced per token, else a constant. ``reference`` runs the
    per-token loops instead of the chunk-parallel path (tests and benchmarks only).
    """

    takes_cache = True

    def __init__(self, dim: int, heads: int, kind: str = "mlp", hidden: int = 32,
                 conv: int = 4, adaptive_q: bool = False, adaptive_k: bool = True,
                 adaptive_v: bool = True, gate: bool = True,
                 objective: str = "l2", self_values: bool = True, chunk: int = 64,
                 proj_chunk: int = 8, lr: float | None = None, forget: float | None = None,
                 max_lr: float = 0.01, proj_lr: float | None = None,
                 proj_forget: float | None = None, proj_max_lr: float = 0.05,
                 reference: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.kind, self.objective, self.self_values = kind, objective, self_values
        self.adaptive_q, self.chunk, self.proj_chunk = adaptive_q, chunk, proj_chunk
        # A non-adaptive k (or v) memory is never written in context: it keeps the initial
        # state the outer level learns, a static learned projection (NL Table 6's rows).
        self.written = (adaptive_k, adaptive_v, True, True) + ((True,) if adaptive_q else ())
        self.rates = {"main": (lr, forget, max_lr), "proj": (proj_lr, proj_forget, proj_max_lr)}
        # The main memory's rule: "dgd" (NL Eq. 88), or "titans" (GD with retention and a
        # constant momentum, NL Table 6's ablation of DGD).
        self.main_rule, self.momentum, self.proj_rule = "dgd", 0.0, "dgd"
        self.reference = reference
        self.proj = SelfModParts(dim, heads, conv, adaptive_q, gate)
        self.memory = MemoryInit(kind, heads, self.head_dim, hidden, identity=self_values)
        self.projections = ProjectionInit(kind, 5 if adaptive_q else 4, heads, self.head_dim,
                                          hidden)

    def learn_as(self, part: str, level) -> None:
        """Take the chunk and rates of the level that owns one of its memories (``memory``:
        the main memory, also the objective; ``projections``: the P memories), a `LevelDef`
        stated once in the program's SCHEDULE (see `levels.bind_levels`)."""
        rule = level.rule
        rates = (constant_rate(rule.lr), constant_rate(rule.forget), rule.max_lr)
        if part == "memory":
            self.chunk, self.objective, self.rates["main"] = level.period, level.objective, rates
            self.main_rule = getattr(rule, "tag", "dgd")
            self.momentum = float(getattr(rule, "momentum", 0.0) or 0.0)
        elif part == "projections":
            self.proj_chunk, self.rates["proj"] = level.period, rates
            self.proj_rule = getattr(rule, "tag", "dgd")
            if getattr(rule, "momentum", 0.0):
                raise ValueError("the projection memories learn by DGD or plain GD: a "
                                 "momentum is not kept for them")
        else:
            raise ValueError(f"a self-modifying memory has 'memory' and 'projections', not "
                             f"{part!r}")

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, t, d = x.shape
        # Each of the two levels can be switched off on its own (no writes, no forgetting).
        proj_off, main_off = is_off(self.projections, cache), is_off(self.memory, cache)
        state = cache.get(id(self)) if cache is not None else None
        proj_w, mem_w, tail, velocity = state if state is not None else (
            self.projections.expand(b), self.memory.expand(b), None, None)
        z = x
        if self.proj.conv is not None:
            z, tail = self.proj.conv(x, tail)
        scan, main_scan = _naive_scans() if self.reference else (projection_scan, delta_scan)
        derived, proj_w = scan(self.kind, self.objective, proj_w, split_heads(z, self.heads),
                               partial(self._derive, frozen=proj_off), chunk=self.proj_chunk,
                               self_values=self.self_values, rule=self.proj_rule)
        q = (derived.extra[..., : self.head_dim] if self.adaptive_q
             else normalize(split_heads(self.proj.q(z), self.heads)))
        raw = derived.extra[..., -2:]
        lr, forget = self._rates("main", raw[..., 0], raw[..., 1], main_off)
        if self.main_rule == "titans":
            y, mem_w, velocity = self._gd_scan(mem_w, velocity, q, derived, lr, forget)
        else:
            y, mem_w = main_scan(self.kind, self.objective, mem_w, q, derived.k, derived.v, lr,
                                 forget, chunk=self.chunk, self_values=self.self_values)
        if cache is not None:
            cache[id(self)] = (proj_w, mem_w, tail, velocity)
        y = self.proj.norm(y).transpose(1, 2).reshape(b, t, d)
        if self.proj.gate is not None:
            y = y * torch.sigmoid(self.proj.gate(x))
        return self.proj.out(y)

    def _gd_scan(self, weights, velocity, q, derived: Derived, lr, forget):
        """The main memory by the Titans rule instead of DGD: ``S = μ S − θ ∇ℓ``,
        ``M = (1 − α) M + S``, with the same per-token θ and α; the momentum S is kept in the
        cache with the weights, so it carries across the engine's chunks."""
        if self.reference:
            from nestgraph.runtime.ops.memory_naive import memory_scan_reference as scan
        else:
            scan = memory_scan
        decay = torch.full_like(lr, self.momentum)
        return scan(self.kind, self.objective, weights, velocity, q, derived.k, derived.v, lr,
                    forget, decay, chunk=self.chunk, use_momentum=self.momentum > 0,
                    self_values=self.self_values)

    def _derive(self, outs: torch.Tensor, frozen: bool = False) -> Derived:
        """Projection memories' outputs (P, B, H, C, d) -> keys, values, rates (Eqs. 79–82)."""
        k, v = normalize(outs[0]), normalize(outs[1])
        raw = (outs[2:4] * self.proj.readout[:, None, :, None, :]).sum(-1)
        raw = raw + self.proj.readout_bias[:, None, :, None]  # (2, B, H, C): η, α logits
        lr, forget = self._rates("proj", raw[0], raw[1], frozen)
        if not all(self.written):  # per memory: the non-adaptive ones take no step
            keep = lr.new_tensor(self.written)[:, None, None, None]
            lr, forget = lr * keep, forget * keep
        kept = [normalize(outs[4])] if self.adaptive_q else []
        extra = torch.cat([*kept, raw.permute(1, 2, 3, 0)], dim=-1)
        return Derived(k, v, lr, forget, extra)

    def _rates(self, which: str, lr_logit: torch.Tensor, forget_logit: torch.Tensor,
               frozen: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        lr, forget, max_lr = self.rates[which]
        if frozen:  # in-context learning switched off: nothing is written or forgotten
            return torch.zeros_like(lr_logit), torch.zeros_like(forget_logit)
        lr = max_lr * torch.sigmoid(lr_logit) if lr is None else torch.full_like(lr_logit, lr)
        forget = (torch.sigmoid(forget_logit) if forget is None
                  else torch.full_like(forget_logit, forget))
        return lr, forget


def _naive_scans():
    """The per-token references (tests and benchmarks set ``reference``): imported only then,
    so the training path never loads them."""
    from nestgraph.runtime.ops.delta_naive import delta_scan_reference
    from nestgraph.runtime.ops.selfmod_naive import projection_scan_reference

    return projection_scan_reference, delta_scan_reference
