"""The Titans memory layer: chunked calls, learning in context, wiring from a spec."""

from __future__ import annotations

import pytest
import torch

from nestgraph.runtime.layers.titans import NeuralMemory


def layer(**kw) -> NeuralMemory:
    torch.manual_seed(0)
    args = dict(dim=8, heads=2, kind="mlp", hidden=6, conv=4, chunk=4, lr=None, forget=None,
                momentum=None, max_lr=0.05)
    return NeuralMemory(**{**args, **kw}).double()


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_reading_in_calls_equals_reading_at_once(kind):
    mem = layer(kind=kind)
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    whole = mem(x, {})
    cache: dict = {}
    parts = torch.cat([mem(x[:, i:i + 8], cache) for i in (0, 8)], dim=1)
    torch.testing.assert_close(parts, whole)
    (g_whole,) = torch.autograd.grad(whole.sum(), [mem.memory.w if kind == "linear"
                                                   else mem.memory.w2])
    (g_parts,) = torch.autograd.grad(parts.sum(), [mem.memory.w if kind == "linear"
                                                   else mem.memory.w2])
    torch.testing.assert_close(g_parts, g_whole)


def test_the_memory_learns_in_context():
    # The same layer with the step size forced to zero reads its initial state throughout;
    # with learning, outputs after the first chunk differ.
    learning, frozen = layer(lr=0.05), layer(lr=0.0)
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    a, b = learning(x, {}), frozen(x, {})
    torch.testing.assert_close(a[:, :4], b[:, :4])  # the first chunk reads the initial state
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_produced_rates_stay_within_their_bounds():
    mem = layer(max_lr=0.01, max_momentum=0.5)
    x = torch.randn(2, 8, 8, dtype=torch.float64) * 100  # extreme inputs
    lr, forget, momentum = mem._rates(x)
    assert lr.max() <= 0.01 and momentum.max() <= 0.5 and 0 <= forget.min() <= forget.max() <= 1


def test_long_deep_stack_stays_finite():
    torch.manual_seed(0)
    stack = [NeuralMemory(32, 4, chunk=16, lr=None, forget=None, momentum=None)
             for _ in range(4)]
    x = torch.randn(2, 1024, 32)
    for mem in stack:
        x = x + mem(torch.nn.functional.rms_norm(x, (32,)), {})
    assert torch.isfinite(x).all()


def test_memory_as_gate_reads_in_calls_as_at_once():
    from nestgraph.runtime.layers.core import Attention
    from nestgraph.runtime.layers.titans import MemoryAsGate

    torch.manual_seed(0)
    mag = MemoryAsGate(Attention(8, 2, window=5), layer(gate=False)).double()
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    whole = mag(x, {})
    cache: dict = {}
    parts = torch.cat([mag(x[:, i:i + 4], cache) for i in range(0, 16, 4)], dim=1)
    torch.testing.assert_close(parts, whole)


def test_titans_depth_four_trains_200_steps_without_a_non_finite_value(tmp_path):
    """The most common complaint about public Titans code is NaN at depth (about 30 s)."""
    from nestgraph.testing import train_records

    records = train_records(tmp_path, "titans", [
        "model.layers=4", "train.batch=4", "train.seq_len=128", "train.eval_every=50",
        "train.eval_batches=2", "data.max_bytes=400000"], steps=200)
    values = [r[k] for r in records for k in ("loss", "heldout_bpb") if k in r]
    assert len(values) > 200 and all(v == v and abs(v) < 1e6 for v in values)
    evals = [r["heldout_bpb"] for r in records if "heldout_bpb" in r]
    assert evals[-1] < evals[0]
