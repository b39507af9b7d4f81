"""Titans' neural long-term memory (LMM) as a layer: projections around `memory_scan`.

The memory's weights are written while the sequence is read, chunk by chunk, inside this
layer's forward pass (the in-context level that owns ``NAME.memory``); their initial values
are parameters that a slower level meta-learns. Reading a sequence in several calls, the layer
keeps its memory, momentum and convolution tail in the engine's ``cache`` dict, so that the
calls compute exactly what one call over the whole sequence would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nestgraph.runtime.layers.core import RMSNorm
from nestgraph.runtime.mode import mode_of
from nestgraph.runtime.ops.delta import delta_scan
from nestgraph.runtime.ops.memory import memory_scan
from nestgraph.runtime.ops.memory_shapes import depth, is_plain, weight_shapes


class CausalDepthwiseConv(nn.Module):
    """A short causal convolution per channel (Titans §4.4), with a tail carried across calls."""

    def __init__(self, channels: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.weight = nn.Parameter(torch.zeros(channels, 1, window))
        with torch.no_grad():
            self.weight[:, 0, -1] = 1.0  # starts as the identity: the current token only

    def forward(self, x: torch.Tensor, tail: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        # x: (B, T, C), C the first C of the layer's channels (all of them, or a leading
        # share such as the queries alone). The tail holds the last window-1 inputs of the
        # previous call.
        b, t, c = x.shape
        if tail is None:
            tail = x.new_zeros(b, self.window - 1, c)
        padded = torch.cat([tail, x], dim=1)
        y = F.conv1d(padded.transpose(1, 2), self.weight[:c], groups=c).transpose(1, 2)
        return y, padded[:, -(self.window - 1):, :] if self.window > 1 else padded[:, :0, :]


def constant_rate(value) -> float | None:
    """A rate named by a string is produced per token by the module: None."""
    return None if isinstance(value, str) else float(value)


def is_off(part: nn.Module, cache: dict | None) -> bool:
    """Whether the engine switched off the level that owns ``part`` (the engine puts the ids
    of switched-off levels' sub-modules in the read's mode)."""
    return id(part) in mode_of(cache).off


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H·d) -> (B, H, T, d)."""
    b, t, _ = x.shape
    return x.view(b, t, heads, -1).transpose(1, 2)


class MemoryInit(nn.Module):
    """The memory's initial weights, one set per head (the state its level resets to).

    A linear memory starts at zero, or at the identity with ``identity=True`` (a memory that
    writes its own values, ``M(v)``, would never leave zero).
    """

    def __init__(self, kind: str, heads: int, head_dim: int, hidden: int,
                 identity: bool = False) -> None:
        super().__init__()
        self.kind = kind
        if kind == "linear":
            start = torch.eye(head_dim) if identity else torch.zeros(head_dim, head_dim)
            self.w = nn.Parameter(start.repeat(heads, 1, 1))
        elif is_plain(kind):
            # A plain MLP has no identity to start at: its last layer starts at zero (reads
            # nothing), or random when the memory writes its own values (zero would stay zero).
            last = f"p{depth(kind)}"
            for name, (rows, cols) in weight_shapes(kind, head_dim, hidden).items():
                scale = 0.0 if name == last and not identity else cols**-0.5
                setattr(self, name, nn.Parameter(torch.randn(heads, rows, cols) * scale))
        else:
            self.w1 = nn.Parameter(torch.zeros(heads, head_dim, hidden))
            self.w2 = nn.Parameter(torch.randn(heads, hidden, head_dim) * head_dim**-0.5)

    def expand(self, batch: int) -> dict[str, torch.Tensor]:
        """One copy per sequence of the batch; expand keeps the path to the parameters."""
        return {n: p.unsqueeze(0).expand(batch, *p.shape) for n, p in self.named_parameters()}


class MemoryProjections(nn.Module):
    """Everything around the memory that ordinary (outer) training owns."""

    def __init__(self, dim: int, heads: int, conv: int, gate: bool, rates: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.conv = CausalDepthwiseConv(3 * dim, conv) if conv else None
        self.rates = nn.Linear(dim, rates * heads) if rates else None
        self.norm = RMSNorm(dim // heads, eps=1e-6)
        self.gate = nn.Linear(dim, dim, bias=False) if gate else None
        self.out = nn.Linear(dim, dim, bias=False)
        nn.init.normal_(self.qkv.weight, std=dim**-0.5)
        nn.init.normal_(self.out.weight, std=0.5 * dim**-0.5)


class NeuralMemory(nn.Module):
    """q, k, v from SiLU projections (and a causal conv), a memory written every `chunk` tokens
    by the Titans rule (or by DGD, ``rule="dgd"``), the output normalised per head and gated.

    Rates given as numbers are constants; given as None they are produced per token from the
    input: ``lr = max_lr * sigmoid(.)``, ``forget = sigmoid(.)``,
    ``momentum = max_momentum * sigmoid(.)``.
    """

    RATES = ("lr", "forget", "momentum")
    takes_cache = True  # it keeps its memory across the engine's chunked calls

    def __init__(self, dim: int, heads: int, kind: str = "mlp", hidden: int = 64,
                 conv: int = 4, qk_norm: bool = True, gate: bool = True, chunk: int = 16,
                 objective: str = "l2", lr: float | None = None, forget: float | None = 0.0,
                 momentum: float | None = 0.0, max_lr: float = 0.005,
                 max_momentum: float = 0.9, rule: str = "titans",
                 self_values: bool = False, produces: tuple[str, ...] | None = None) -> None:
        super().__init__()
        if produces is not None:  # the rates it makes per token; `learn_as` sets the rest
            lr, forget, momentum = (None if name in produces else 0.0 for name in self.RATES)
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.kind, self.chunk = dim, heads, kind, chunk
        if rule not in ("titans", "dgd"):
            raise ValueError(f"unknown memory rule {rule!r}; expected 'titans' or 'dgd'")
        self.objective, self.qk_norm = objective, qk_norm
        self.rule, self.self_values = rule, self_values
        self.max_lr, self.max_momentum = max_lr, max_momentum
        self.constants = {"lr": lr, "forget": forget, "momentum": momentum}
        self.produced = [name for name in self.RATES if self.constants[name] is None]
        self.proj = MemoryProjections(dim, heads, conv, gate, len(self.produced))
        self.memory = MemoryInit(kind, heads, dim // heads, hidden)
        self._init_rates()

    def learn_as(self, part: str, level) -> None:
        """Take the chunk, objective and rule of the level that owns this memory (a
        `LevelDef`, stated once in the program's SCHEDULE; see `levels.bind_levels`)."""
        if part != "memory":
            raise ValueError(f"a neural memory has one memory, 'memory', not {part!r}")
        rule = level.rule
        constants = {name: constant_rate(getattr(rule, name, 0.0)) for name in self.RATES}
        produced = [name for name in self.RATES if constants[name] is None]
        if produced != self.produced:
            raise ValueError(f"level '{level.name}' has the memory produce {produced} per token, "
                             f"but it was built producing {self.produced}")
        if getattr(rule, "tag", None) not in ("titans", "dgd"):
            raise ValueError(f"level '{level.name}': a neural memory applies the titans or dgd "
                             f"rule, not {type(rule).__name__}")
        self.rule = rule.tag
        self.chunk, self.objective, self.constants = level.period, level.objective, constants
        self.max_lr, self.max_momentum = rule.max_lr, getattr(rule, "max_momentum", 0.9)

    def _init_rates(self) -> None:
        """Start at half the largest step and momentum, and with little forgetting.

        With sigmoid gates at 0.5 (their default init) the memory would forget half of itself
        every token and keep nothing; the biases below set where training starts.
        """
        if self.proj.rates is None:
            return
        start = {"lr": 0.0, "forget": -6.0, "momentum": 0.0}  # sigmoid: 0.5, 0.0025, 0.5
        with torch.no_grad():
            nn.init.normal_(self.proj.rates.weight, std=0.02)
            bias = self.proj.rates.bias.view(len(self.produced), self.heads)
            for i, name in enumerate(self.produced):
                bias[i].fill_(start[name])

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, t, d = x.shape
        state = cache.get(id(self)) if cache is not None else None
        weights, momentum, tail = state if state is not None else (
            self.memory.expand(b), None, None)
        (q, k, v), tail = self.project(x, tail)
        y, weights, momentum = self.write_and_read(x, q, k, v, weights, momentum, cache)
        if cache is not None:
            cache[id(self)] = (weights, momentum, tail)
        y = self.merge(y)
        if self.proj.gate is not None:
            y = y * torch.sigmoid(self.proj.gate(x))
        return self.proj.out(y)

    def project(self, x: torch.Tensor, tail: torch.Tensor | None):
        """q, k, v per head (B, H, T, d) from SiLU projections and the causal convolution,
        with the convolution's tail to carry on."""
        qkv = F.silu(self.proj.qkv(x))
        if self.proj.conv is not None:
            qkv, tail = self.proj.conv(qkv, tail)
        q, k, v = (split_heads(z, self.heads) for z in qkv.chunk(3, dim=-1))
        if self.qk_norm:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        return (q, k, v), tail

    def queries(self, x: torch.Tensor, tail: torch.Tensor | None):
        """The q of `project` alone (B, H, T, d), from the first third of the projection and
        of the convolution, with the convolution's tail (queries only) to carry on."""
        q = F.silu(F.linear(x, self.proj.qkv.weight[:self.dim]))
        if self.proj.conv is not None:
            q, tail = self.proj.conv(q, tail)
        q = split_heads(q, self.heads)
        return (F.normalize(q, dim=-1) if self.qk_norm else q), tail

    def write_and_read(self, x, q, k, v, weights, momentum, cache):
        """Write (k, v) chunk by chunk with the rates made from `x`, reading q at each chunk's
        start state: the read (B, H, T, d), the weights and the momentum after."""
        lr, forget, momentum_rate = self._rates(x)
        if is_off(self.memory, cache):  # its level's updates are switched off: no writes
            lr, forget = torch.zeros_like(lr), torch.zeros_like(forget)
        if self.rule == "dgd":  # NL Eq. 88: decay along the key, no momentum
            y, weights = delta_scan(self.kind, self.objective, weights, q, k, v, lr, forget,
                                    chunk=self.chunk, self_values=self.self_values)
            return y, weights, momentum
        return memory_scan(self.kind, self.objective, weights, momentum, q, k, v, lr, forget,
                           momentum_rate, chunk=self.chunk,
                           use_momentum=self.constants["momentum"] != 0.0,
                           self_values=self.self_values)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """A read (B, H, T, d), normalised per head, as (B, T, H·d)."""
        b, _, t, _ = y.shape
        return self.proj.norm(y).transpose(1, 2).reshape(b, t, self.dim)

    def _rates(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, H, T) tensors for lr, forget and momentum: produced or constant."""
        b, t, _ = x.shape
        produced = {}
        if self.proj.rates is not None:
            raw = self.proj.rates(x).view(b, t, len(self.produced), self.heads)
            for i, name in enumerate(self.produced):
                gate = torch.sigmoid(raw[:, :, i, :].transpose(1, 2))
                scale = {"lr": self.max_lr, "momentum": self.max_momentum}.get(name, 1.0)
                produced[name] = scale * gate
        out = []
        for name in self.RATES:
            value = produced.get(name)
            if value is None:
                value = x.new_full((b, self.heads, t), float(self.constants[name]))
            out.append(value)
        return tuple(out)


class MemoryAsGate(nn.Module):
    """Titans' MAG: sliding-window attention gated by the neural memory, both branches
    normalised with learned gains: ``out = norm_a(SWA(x)) * sigmoid(norm_m(M(x)))``."""

    takes_cache = True

    def __init__(self, attn: nn.Module, mem: NeuralMemory) -> None:
        super().__init__()
        self.attn, self.mem = attn, mem
        self.norms = nn.ModuleDict({"attn": RMSNorm(mem.dim, eps=1e-6),
                                    "mem": RMSNorm(mem.dim, eps=1e-6)})

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        short = self.norms["attn"](self.attn(x, cache))
        long = self.norms["mem"](self.mem(x, cache))
        return short * torch.sigmoid(long)
