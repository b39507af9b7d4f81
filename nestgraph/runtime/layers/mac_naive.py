"""The slow, obvious reference for `mac.MemoryAsContext`: Titans §4.1 token by token.

Whole sequence at once, with the layer's own parameters: the convolutions written as sums over
their window, every retrieval, attention row and memory token taken one at a time (the memory
through `memory_scan_reference` / `delta_scan_reference`, themselves per-token loops). Tests
hold the layer to it in float64, outputs and gradients. Far too slow for training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nestgraph.runtime.layers.core import rope
from nestgraph.runtime.layers.titans import split_heads
from nestgraph.runtime.ops.delta_naive import delta_scan_reference
from nestgraph.runtime.ops.memory import memory_read
from nestgraph.runtime.ops.memory_naive import memory_scan_reference


def mac_reference(layer, x: torch.Tensor) -> torch.Tensor:
    mem, attn, (b, t, _) = layer.mem, layer.attn, x.shape
    weights, momentum, ys, outs = mem.memory.expand(b), None, [], []
    q_x = _queries(mem, x)
    for start in range(0, t, layer.segment):
        seg = range(start, min(start + layer.segment, t))
        recalled = [_recall(mem, weights, q_x[:, :, i]) for i in seg]
        y = torch.stack([_attend_row(attn, recalled, x, seg, i) for i in seg], dim=1)
        ys.append(y)
        q, k, v = _qkv(mem, torch.cat(ys, dim=1))  # the convolution runs over every y so far
        q, k, v = (z[:, :, start:] for z in (q, k, v))
        read, weights, momentum = _memory(mem, y, q, k, v, weights, momentum)
        gate = layer.norms["mem"](mem.proj.out(mem.merge(read)))
        outs.append(layer.norms["attn"](y) * torch.sigmoid(gate))
    return torch.cat(outs, dim=1)


def _conv(mem, z: torch.Tensor) -> torch.Tensor:
    """``out_t = Σ_w weight[:, w] · z_{t-W+1+w}``, zero before the sequence."""
    if mem.proj.conv is None:
        return z
    weight, width = mem.proj.conv.weight[:, 0, :], mem.proj.conv.window
    rows = []
    for i in range(z.shape[1]):
        acc = torch.zeros_like(z[:, 0])
        for w in range(width):
            j = i - width + 1 + w
            if j >= 0:
                acc = acc + weight[:, w] * z[:, j]
        rows.append(acc)
    return torch.stack(rows, dim=1)


def _qkv(mem, z: torch.Tensor):
    q, k, v = (split_heads(p, mem.heads) for p in _conv(mem, F.silu(mem.proj.qkv(z))).chunk(3, -1))
    if mem.qk_norm:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    return q, k, v


def _queries(mem, x: torch.Tensor) -> torch.Tensor:
    return _qkv(mem, x)[0]


def _recall(mem, weights, q_i: torch.Tensor) -> torch.Tensor:
    """``h_i = out(norm(M(q_i)))`` at the segment's start state: (B, d)."""
    read = memory_read(mem.kind, weights, q_i.unsqueeze(-2))
    return mem.proj.out(mem.merge(read))[:, 0]


def _attend_row(attn, recalled: list, x: torch.Tensor, seg: range, i: int) -> torch.Tensor:
    """Token i's attention over the persistent tokens, h_j and x_j for j <= i (segment
    positions): (B, d)."""
    b, _, d = x.shape
    heads, hd, first = attn.heads, d // attn.heads, seg.start
    seen = [recalled[j - first] for j in range(first, i + 1)] + [x[:, j] for j in
                                                               range(first, i + 1)]
    pos = list(range(i + 1 - first)) * 2
    _, k, v = attn.qkv(torch.stack(seen, dim=1)).view(b, len(seen), 3, heads, hd).unbind(2)
    q = attn.qkv(x[:, i])[:, :d].view(b, heads, 1, hd)
    k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, H, S, hd)
    if attn.use_rope:
        q = rope(q, i - first, attn.rope_base)
        k = torch.cat([rope(k[:, :, n:n + 1], p, attn.rope_base) for n, p in enumerate(pos)], 2)
    if attn.persistent is not None:
        pk, pv = attn.persistent
        k = torch.cat([pk.expand(b, *pk.shape), k], dim=2)
        v = torch.cat([pv.expand(b, *pv.shape), v], dim=2)
    weights = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd), dim=-1)
    return attn.out((weights @ v).reshape(b, d))


def _memory(mem, y, q, k, v, weights, momentum):
    lr, forget, momentum_rate = mem._rates(y)
    if mem.rule == "dgd":
        read, weights = delta_scan_reference(mem.kind, mem.objective, weights, q, k, v, lr,
                                             forget, chunk=mem.chunk,
                                             self_values=mem.self_values)
        return read, weights, momentum
    return memory_scan_reference(mem.kind, mem.objective, weights, momentum, q, k, v, lr,
                                 forget, momentum_rate, chunk=mem.chunk,
                                 use_momentum=mem.constants["momentum"] != 0.0,
                                 self_values=mem.self_values)
