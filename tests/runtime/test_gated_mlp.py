"""The gated MLP ``W2 (act(W1 x) * W3 x)`` (Llama's SwiGLU with silu), held to the formula
written out per token, with shared and with per-sequence (fast) weights."""

from __future__ import annotations

import math

import pytest
import torch

from nestgraph.runtime.layers import core as L


def by_hand(x, w1, w2, w3):
    """One token at a time, the activation and the gate element by element."""
    out = torch.zeros(*x.shape[:-1], w2.shape[0], dtype=x.dtype)
    for t in range(x.shape[0]):
        gate, up = w1 @ x[t], w3 @ x[t]
        hidden = torch.stack([g / (1 + math.exp(-g)) * u for g, u in zip(gate.tolist(), up,
                                                                              strict=True)])
        out[t] = w2 @ hidden
    return out


def test_a_gated_mlp_is_swiglu():
    torch.manual_seed(0)
    mlp = L.MLP(6, 10, activation="silu", gated=True).double()
    assert [n for n, _ in mlp.named_parameters()] == ["w1", "w2", "w3"]
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    got = mlp(x)
    for b in range(2):
        want = by_hand(x[b], mlp.w1.detach(), mlp.w2.detach(), mlp.w3.detach())
        torch.testing.assert_close(got[b], want, rtol=1e-12, atol=1e-12)


def test_per_sequence_weights_gate_each_sequence_with_its_own():
    torch.manual_seed(1)
    mlp = L.MLP(4, 8, activation="silu", gated=True).double()
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    fast = {n: torch.randn(3, *p.shape, dtype=torch.float64) for n, p in mlp.named_parameters()}
    got = torch.func.functional_call(mlp, fast, (x,))
    for b in range(3):
        want = by_hand(x[b], fast["w1"][b], fast["w2"][b], fast["w3"][b])
        torch.testing.assert_close(got[b], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gated", [False, True])
def test_the_gate_leaves_an_ungated_mlps_initial_weights_alone(gated):
    torch.manual_seed(2)
    plain = L.MLP(4, 8)
    torch.manual_seed(2)
    other = L.MLP(4, 8, gated=gated)
    assert torch.equal(plain.w1, other.w1) and torch.equal(plain.w2, other.w2)
    assert (other.w3 is not None) == gated
