"""The network's building blocks. They take plain arguments, never a spec.

Weights that an in-context level owns are *fast weights*: while a sequence is read, the engine
substitutes them (via `torch.func.functional_call`) with tensors that carry a leading batch
dimension, one copy per sequence of the batch, so that no sequence learns from another's tokens.
`fast_linear` is the one place that tells the two cases apart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nestgraph.runtime.mode import mode_of


def fast_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` for a shared ``(out, in)`` weight or per-sequence ``(B, out, in)`` ones."""
    if weight.dim() == 3:
        return torch.bmm(x, weight.transpose(1, 2))
    return F.linear(x, weight)


ACTIVATIONS = {"gelu": F.gelu, "silu": F.silu, "relu": F.relu}


class RMSNorm(nn.RMSNorm):
    """`nn.RMSNorm` whose weight takes the input's dtype. Under bf16 autocast the input is bf16
    and the (fp32 master) weight is not, which sends ``torch.rms_norm`` to its unfused
    fallback; the cast is differentiable, so the fp32 weight still gets the gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if weight is not None and weight.dtype != x.dtype:
            weight = weight.to(x.dtype)
        return F.rms_norm(x, self.normalized_shape, weight, self.eps)


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "rms":
        return RMSNorm(dim, eps=1e-6)
    if kind == "layer":
        return nn.LayerNorm(dim)
    return nn.Identity()


class MLP(nn.Module):
    """``W2 act(W1 x)``, bias-free, usable with fast (per-sequence) weights.

    ``gated``: ``W2 (act(W1 x) * W3 x)``, a GLU (with silu, SwiGLU: Llama's MLP, whose gate,
    up and down projections are W1, W3 and W2), so that such a model's MLPs load exactly.
    """

    def __init__(self, dim: int, hidden: int, activation: str = "gelu",
                 gated: bool = False) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(hidden, dim))
        self.w2 = nn.Parameter(torch.empty(dim, hidden))
        self.act = ACTIVATIONS[activation]
        nn.init.normal_(self.w1, std=dim**-0.5)
        # Small output init keeps a freshly initialised residual stream close to identity.
        nn.init.normal_(self.w2, std=0.5 * hidden**-0.5)
        self.w3 = None
        if gated:  # drawn last: an ungated MLP's initial weights stay what they were
            self.w3 = nn.Parameter(torch.empty(hidden, dim))
            nn.init.normal_(self.w3, std=dim**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(fast_linear(x, self.w1))
        if self.w3 is not None:
            h = h * fast_linear(x, self.w3)
        return fast_linear(h, self.w2)


class MLPChain(nn.Module):
    """The Continuum Memory System's MLP chain (NL Eq. 70), each block its own level's state.

    ``sequential``: ``h <- h + MLP_k(h)`` for each block in order (the paper omits norms and
    residuals; the inner residual is our choice, so that a block whose level has not learned
    anything yet passes its input through); ``nested`` reads the same way (what differs is how
    its levels reset, `fast_weights.FastWeights.update`). ``independent``: the blocks read the
    same input and a learnable softmax-weighted sum aggregates them (the Agg of the independent
    variant).

    Each block named in ``step_sizes`` also has a read-out ``rates.BLOCK`` that its in-context
    level turns into a per-token step size ``sigmoid(r·h_t + b)`` from the block's input
    (NL Eq. 71's data-dependent ``η_t``); the forward pass does not use it.
    """

    takes_cache = True

    def __init__(self, blocks: dict[str, nn.Module], variant: str = "sequential",
                 step_sizes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)
        self.variant = variant
        if variant == "independent":
            self.mix = nn.Parameter(torch.zeros(len(blocks)))
        if step_sizes:
            self.rates = nn.ModuleDict({name: _rate_readout(blocks[name].w1.shape[1])
                                        for name in step_sizes})

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if self.variant == "independent":
            weights = torch.softmax(self.mix, dim=0)
            return sum(w * block(x) for w, block in zip(weights, self.blocks.values(), strict=True))
        h = x
        for block in self.blocks.values():
            h = h + block(h)
        return h - x


def _rate_readout(dim: int) -> nn.Linear:
    # Starts near sigmoid(0) = 0.5 for every token: half the largest step, as Titans' rates.
    readout = nn.Linear(dim, 1)
    nn.init.normal_(readout.weight, std=0.02)
    nn.init.zeros_(readout.bias)
    return readout


def rope(x: torch.Tensor, offset: int, base: float) -> torch.Tensor:
    """Rotary position embedding for ``x`` of shape (B, heads, T, head_dim) at positions offset+t."""
    half = x.shape[-1] // 2
    t = torch.arange(offset, offset + x.shape[-2], device=x.device, dtype=torch.float64)
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) / half)
    angles = torch.outer(t, freqs)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([rotated, x[..., 2 * half :]], dim=-1)


class Attention(nn.Module):
    """Causal softmax attention: the non-parametric in-context level.

    Its state is the key/value cache, written every token. Reading a sequence chunk by chunk,
    the engine passes a `cache` dict in which this module appends its keys and values, so that
    chunk c attends to every earlier chunk exactly as the whole sequence read at once would.
    """

    takes_cache = True  # its key/value cache spans the engine's chunked calls

    def __init__(self, dim: int, heads: int, window: int = 0, use_rope: bool = True,
                 rope_base: float = 10000.0, persistent: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.window, self.use_rope, self.rope_base = heads, window, use_rope, rope_base
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        nn.init.normal_(self.qkv.weight, std=dim**-0.5)
        nn.init.normal_(self.out.weight, std=0.5 * dim**-0.5)
        # Titans' persistent memory (§3.3): learned, input-independent tokens every query sees,
        # whatever the window; held as their keys and values (no position: no RoPE).
        self.persistent = None
        if persistent:
            self.persistent = nn.Parameter(torch.randn(2, heads, persistent, dim // heads)
                                           * (dim // heads) ** -0.5)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        past = cache.get(id(self)) if cache is not None else None
        offset = 0 if past is None else past[2]  # absolute position of this chunk's first token
        if self.use_rope:
            q, k = rope(q, offset, self.rope_base), rope(k, offset, self.rope_base)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
        window = self._window(cache)
        if cache is not None:
            # A sliding window only ever needs the last `window` keys of the past.
            keep = k.shape[-2] if window == 0 else min(window, k.shape[-2])
            cache[id(self)] = (k[..., -keep:, :], v[..., -keep:, :], offset + t)
        return self.attend(q, k, v, self._mask(t, k.shape[-2], window, x.device), cache)

    def attend(self, q, k, v, mask, cache: dict | None) -> torch.Tensor:
        """Softmax attention of q (B, H, T, d) over k, v behind the persistent tokens, then the
        output projection: (B, T, H·d)."""
        if self.persistent is not None:
            k, v, mask = self._with_persistent(k, v, mask)
        if mode_of(cache).double_backward:
            y = attention_math(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, t, _ = q.shape
        return self.out(y.transpose(1, 2).reshape(b, t, -1))

    def _with_persistent(self, k, v, mask):
        """The persistent keys and values in front of the sequence's, visible to every query."""
        b = k.shape[0]
        pk, pv = (p.to(k.dtype).unsqueeze(0).expand(b, *p.shape) for p in self.persistent)
        seen = torch.ones(mask.shape[0], pk.shape[-2], dtype=torch.bool, device=mask.device)
        return torch.cat([pk, k], dim=-2), torch.cat([pv, v], dim=-2), torch.cat([seen, mask], -1)

    def _window(self, cache: dict | None) -> int:
        """The module's own window, or the engine's limit for a carried read, the tighter.

        Reading a long context in windows, the engine limits attention to the last
        ``seq_len`` keys: RoPE is relative, so every query then sees the distances it saw in
        training, and the carried cache stays bounded.
        """
        limit = mode_of(cache).attention_window
        return min(w for w in (self.window, limit) if w) if self.window or limit else 0

    def _mask(self, t: int, s: int, window: int, device: torch.device) -> torch.Tensor:
        # Query i sits at absolute position s - t + i; it sees keys j <= that position, and with
        # a window only the last `window` of them.
        qpos = torch.arange(s - t, s, device=device)[:, None]
        kpos = torch.arange(s, device=device)[None, :]
        mask = kpos <= qpos
        if window:
            mask &= kpos > qpos - window
        return mask


def attention_math(q, k, v, mask):
    # The fused CPU kernel has no double backward; second-order in-context levels need one.
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v


class Residual(nn.Module):
    """``x + body(norm(x))`` (or ``body(norm(x))`` without the residual)."""

    def __init__(self, norm: nn.Module, body: nn.Module, residual: bool = True) -> None:
        super().__init__()
        self.norm, self.body, self.residual = norm, body, residual

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        y = self.body(self.norm(x), cache) if _takes_cache(self.body) else self.body(self.norm(x))
        return x + y if self.residual else y


def _takes_cache(module: nn.Module) -> bool:
    return getattr(module, "takes_cache", False)


class Layer(nn.Module):
    """One layer: its sub-blocks in order, keyed by the spec's module names."""

    def __init__(self, blocks: dict[str, Residual]) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x, cache)
        return x


class NestedLM(nn.Module):
    """Byte embedding, layers, final norm, next-byte logits."""

    def __init__(self, vocab: int, dim: int, layers: list[Layer], final_norm: nn.Module,
                 tie_embeddings: bool = True) -> None:
        super().__init__()
        self.vocab, self.dim = vocab, dim
        self.embed = nn.Embedding(vocab, dim)
        nn.init.normal_(self.embed.weight, std=1.0)
        self.layers = nn.ModuleList(layers)
        self.norm = final_norm
        self.unembed = None if tie_embeddings else nn.Linear(dim, vocab, bias=False)
        if self.unembed is not None:
            nn.init.normal_(self.unembed.weight, std=dim**-0.5)

    def forward(self, tokens: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, cache)
        x = self.norm(x)
        if self.unembed is None:
            return F.linear(x, self.embed.weight) / math.sqrt(self.dim)
        return self.unembed(x)
