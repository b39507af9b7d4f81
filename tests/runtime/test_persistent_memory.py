"""Titans' persistent memory tokens in attention, against a per-query loop in float64."""

from __future__ import annotations

import math

import pytest
import torch

from nestgraph.runtime.layers.core import Attention, rope
from nestgraph.runtime.mode import Cache, ReadMode

F64 = torch.float64


def make(window: int, persistent: int = 3) -> Attention:
    torch.manual_seed(0)
    return Attention(16, 2, window=window, persistent=persistent).to(F64)


def reference(layer: Attention, x: torch.Tensor) -> torch.Tensor:
    """Query by query: softmax over the persistent keys, then the visible past keys."""
    b, t, d = x.shape
    h, hd = layer.heads, d // layer.heads
    q, k, v = layer.qkv(x).view(b, t, 3, h, hd).permute(2, 0, 3, 1, 4)
    q, k = rope(q, 0, layer.rope_base), rope(k, 0, layer.rope_base)
    pk, pv = layer.persistent
    rows = []
    for i in range(t):
        first = 0 if not layer.window else max(0, i - layer.window + 1)
        keys = torch.cat([pk.expand(b, *pk.shape), k[:, :, first : i + 1]], dim=-2)
        values = torch.cat([pv.expand(b, *pv.shape), v[:, :, first : i + 1]], dim=-2)
        scores = (q[:, :, i : i + 1] @ keys.transpose(-1, -2)) / math.sqrt(hd)
        rows.append(torch.softmax(scores, dim=-1) @ values)
    y = torch.cat(rows, dim=-2)
    return layer.out(y.transpose(1, 2).reshape(b, t, d))


def grads(layer, y):
    probe = (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(1),
                             dtype=F64)).sum()
    return torch.autograd.grad(probe, list(layer.parameters()))


@pytest.mark.parametrize("double_backward", [False, True], ids=["fused", "math"])
@pytest.mark.parametrize("window", [0, 4])
def test_persistent_tokens_match_the_per_query_reference(window, double_backward):
    layer = make(window)
    x = torch.randn(2, 12, 16, dtype=F64, generator=torch.Generator().manual_seed(2))
    cache = Cache(None, ReadMode(double_backward, frozenset(), 0))
    y = layer(x, cache)
    slow = reference(layer, x)
    torch.testing.assert_close(y, slow)
    for a, b in zip(grads(layer, y), grads(layer, reference(layer, x)), strict=True):
        torch.testing.assert_close(a, b)


def test_reading_in_chunks_equals_reading_at_once_and_the_tokens_matter():
    layer = make(window=4)
    x = torch.randn(2, 12, 16, dtype=F64, generator=torch.Generator().manual_seed(3))
    whole = layer(x, Cache(None, ReadMode(False, frozenset(), 0)))
    cache = Cache(None, ReadMode(False, frozenset(), 0))
    pieces = torch.cat([layer(x[:, i : i + 4], cache) for i in range(0, 12, 4)], dim=1)
    torch.testing.assert_close(pieces, whole)
    # Far past the window the persistent tokens are still read: without them the output moves.
    plain = make(window=4, persistent=0)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "persistent"})
    assert (plain(x, Cache(None, ReadMode(False, frozenset(), 0))) - whole)[:, -1].abs().max() \
        > 1e-3
    (g_persistent,) = [g for (n, _), g in zip(layer.named_parameters(),
                                                grads(layer, whole), strict=True)
                       if n == "persistent"]
    assert g_persistent.abs().sum() > 0  # the outer level trains them
