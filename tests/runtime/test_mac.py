"""Titans' MAC against its token-by-token reference in float64, and read in calls."""

from __future__ import annotations

import itertools

import pytest
import torch

from nestgraph.runtime.layers.core import Attention
from nestgraph.runtime.layers.mac import MemoryAsContext
from nestgraph.runtime.layers.mac_naive import mac_reference
from nestgraph.runtime.layers.titans import NeuralMemory
from nestgraph.runtime.mode import Cache, ReadMode

F64 = torch.float64


def make(kind="mlp", rule="titans", persistent=3, segment=8, chunk=4, conv=3,
         momentum=None) -> MemoryAsContext:
    torch.manual_seed(0)
    mem = NeuralMemory(8, 2, kind=kind, hidden=6, conv=conv, gate=False, chunk=chunk, lr=None,
                       forget=None, momentum=momentum, max_lr=0.2, rule=rule)
    layer = MemoryAsContext(Attention(8, 2, persistent=persistent), mem, segment)
    with torch.no_grad():  # a memory that reads something from the start
        for p in layer.mem.memory.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return layer.to(F64)


def probe_grads(layer, y, x):
    probe = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    return torch.autograd.grad((y * probe).sum(), [x, *layer.parameters()], allow_unused=True)


CASES = [dict(), dict(kind="linear"), dict(kind="plain3"), dict(rule="dgd", momentum=0.0),
         dict(persistent=0, conv=0), dict(segment=4, chunk=1), dict(segment=16, chunk=8)]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_mac_equals_its_token_by_token_reference(case):
    layer = make(**case)
    x = torch.randn(2, 13, 8, dtype=F64, requires_grad=True)  # a partial last segment
    fast, slow = layer(x, {}), mac_reference(layer, x)
    torch.testing.assert_close(fast, slow)
    for a, b in zip(probe_grads(layer, fast, x), probe_grads(layer, slow, x), strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)


def test_double_backward_path_agrees_with_the_fused_one():
    layer = make()
    x = torch.randn(1, 12, 8, dtype=F64)
    fused = layer(x, Cache(None, ReadMode(double_backward=False)))
    plain = layer(x, Cache(None, ReadMode(double_backward=True)))
    torch.testing.assert_close(fused, plain)


@pytest.mark.parametrize("cuts", [(4, 12), (8,), (4, 8, 16, 20)])
def test_reading_in_calls_equals_reading_at_once(cuts):
    layer = make()
    x = torch.randn(2, 24, 8, dtype=F64)
    whole, cache = layer(x, {}), {}
    edges = (0, *cuts, 24)
    parts = torch.cat([layer(x[:, a:b], cache) for a, b in itertools.pairwise(edges)],
                      dim=1)
    torch.testing.assert_close(parts, whole)


def test_the_memory_carries_one_segment_into_the_next():
    # Attention is within the segment (and without the convolutions nothing else reaches
    # back): only the memory can make a token of the second segment depend on the first.
    # With its level switched off the second segment's outputs do not change when the first
    # segment changes; with it on they do.
    x = torch.randn(1, 16, 8, dtype=F64)
    other = x.clone()
    other[:, :8] = torch.randn(1, 8, 8, dtype=F64)
    layer = make(conv=0)
    assert not torch.allclose(layer(x, {})[:, 8:], layer(other, {})[:, 8:])
    off = ReadMode(off=frozenset({id(layer.mem.memory)}))
    torch.testing.assert_close(layer(x, Cache(None, off))[:, 8:],
                               layer(other, Cache(None, off))[:, 8:])


def test_outputs_are_causal():
    layer = make()
    x = torch.randn(1, 16, 8, dtype=F64)
    later = x.clone()
    later[:, 10:] += 1.0
    torch.testing.assert_close(layer(x, {})[:, :10], layer(later, {})[:, :10])


def test_a_windowed_attention_is_refused():
    mem = NeuralMemory(8, 2, gate=False)
    with pytest.raises(ValueError, match="no window"):
        MemoryAsContext(Attention(8, 2, window=4), mem, 8)
