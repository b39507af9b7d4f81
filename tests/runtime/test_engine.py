"""The chunk-parallel engine against the per-token reference, and the level clock."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nestgraph.runtime.engine import chunk_size, init_stream, read_sequence
from nestgraph.runtime.engine_naive import read_sequence_reference
from nestgraph.runtime.layers import core as L
from nestgraph.runtime.levels import ClosedFormRule, GDRule, LevelDef
from nestgraph.runtime.stream import Carry, StreamState

DIM = 8


def tiny_model(variant: str = "sequential") -> L.NestedLM:
    torch.manual_seed(0)

    def layer():
        chain = L.MLPChain({"fast": L.MLP(DIM, 16), "slow": L.MLP(DIM, 16)}, variant=variant)
        return L.Layer({
            "attn": L.Residual(L.make_norm("rms", DIM), L.Attention(DIM, 2)),
            "cms": L.Residual(L.make_norm("rms", DIM), chain),
        })

    return L.NestedLM(32, DIM, [layer(), layer()], L.make_norm("rms", DIM)).double()


def cms_levels(fast=4, slow=8, meta="second_order", lifetime="sequence", momentum=0.0):
    def paths(block):
        return tuple(f"layers.{i}.blocks.cms.body.blocks.{block}" for i in range(2))

    rule = GDRule(lr=0.1, momentum=momentum, weight_decay=0.01, clip=5.0)
    return (
        LevelDef("attention", "nonparametric", 1, "token", "sequence", ClosedFormRule()),
        LevelDef("cms_fast", "in_context", fast, "token", "sequence", rule, paths("fast"),
                 meta=meta),
        LevelDef("cms_slow", "in_context", slow, "token", lifetime, rule, paths("slow"),
                 meta=meta),
    )


def batch(b=2, t=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 32, (b, t), generator=g), torch.randint(0, 32, (b, t), generator=g)


def grads_of(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


CASES = [
    pytest.param(dict(), id="second-order"),
    pytest.param(dict(meta="first_order"), id="first-order"),
    pytest.param(dict(meta="truncated"), id="truncated"),
    pytest.param(dict(meta="truncated", fast=1, slow=2), id="truncated-chunk-1"),
    pytest.param(dict(momentum=0.5), id="momentum"),
    pytest.param(dict(fast=1, slow=1), id="chunk-1"),
    pytest.param(dict(fast=4, slow=16), id="slow-once"),
]


@pytest.mark.parametrize("kw", CASES)
def test_chunked_engine_matches_per_token_reference(kw):
    model, levels = tiny_model(), cms_levels(**kw)
    x, y = batch()
    fast = read_sequence(model, levels, x, y, StreamState(), keep_logits=True)
    slow_loss, slow_logits = read_sequence_reference(model, levels, x, y,
                                                     chunk=chunk_size(levels, x.shape[1]))
    torch.testing.assert_close(fast.logits, slow_logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast.loss, slow_loss, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads_of(model, fast.loss), grads_of(model, slow_loss), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_second_order_gradient_differs_from_first_order():
    # The option must do something: stopping the meta-gradient changes the initial-state grads.
    model, x_y = tiny_model(), batch()
    second = read_sequence(model, cms_levels(), *x_y, StreamState())
    first = read_sequence(model, cms_levels(meta="first_order"), *x_y, StreamState())
    torch.testing.assert_close(second.loss, first.loss)  # same forward
    w = model.layers[0].blocks.cms.body.blocks.fast.w1
    g2, = torch.autograd.grad(second.loss, [w])
    g1, = torch.autograd.grad(first.loss, [w])
    assert not torch.allclose(g1, g2)


def test_truncated_meta_gradient_lies_between_the_others():
    # Same forward and the same in-context updates as both other modes; outer gradients of the
    # initial states differ from both (the truncation is real, and is not first order).
    model, x_y = tiny_model(), batch()
    reads = {m: read_sequence(model, cms_levels(meta=m), *x_y, StreamState(), trace=[])
             for m in ("second_order", "truncated", "first_order")}
    w = model.layers[0].blocks.cms.body.blocks.fast.w1
    grads = {m: torch.autograd.grad(r.loss, [w])[0] for m, r in reads.items()}
    torch.testing.assert_close(reads["truncated"].loss, reads["second_order"].loss)
    assert not torch.allclose(grads["truncated"], grads["second_order"])
    assert not torch.allclose(grads["truncated"], grads["first_order"])
    # Closer to the full meta-gradient than first order is.
    gap = {m: (grads[m] - grads["second_order"]).norm() for m in ("truncated", "first_order")}
    assert gap["truncated"] < gap["first_order"]


def test_independent_chain_matches_reference():
    model, levels = tiny_model("independent"), cms_levels()
    x, y = batch()
    fast = read_sequence(model, levels, x, y, StreamState())
    slow, _ = read_sequence_reference(model, levels, x, y, chunk=chunk_size(levels, 16))
    torch.testing.assert_close(fast.loss, slow, rtol=1e-10, atol=1e-10)


def test_in_context_learning_changes_the_prediction():
    # Without this the equality tests above could pass with levels that never update.
    model, levels = tiny_model(), cms_levels()
    frozen = tuple(lv for lv in levels if lv.kind != "in_context")
    x, y = batch()
    learning = read_sequence(model, levels, x, y, StreamState(), keep_logits=True)
    static = read_sequence(model, frozen, x, y, StreamState(), keep_logits=True)
    torch.testing.assert_close(learning.logits[:, :4], static.logits[:, :4])  # before 1st update
    assert not torch.allclose(learning.logits[:, 4:], static.logits[:, 4:])


def test_timeline_fires_each_level_exactly_at_its_period():
    model = tiny_model()
    rule = GDRule(lr=0.01)
    paths = {b: (f"layers.0.blocks.cms.body.blocks.{b}",) for b in ("fast", "slow")}
    levels = (
        LevelDef("every_token", "in_context", 1, "token", "sequence", rule, paths["fast"]),
        LevelDef("every_16", "in_context", 16, "token", "sequence", rule, paths["slow"]),
        LevelDef("every_256", "in_context", 256, "token", "sequence", rule,
                 ("layers.1.blocks.cms.body.blocks.fast",)),
    )
    x, y = batch(b=1, t=256)
    for carry, last in ((Carry(), 257), (None, 256)):
        # Without a carry the updates at the sequence's end (reset before anything reads them)
        # are skipped; carrying, the next window reads them, so they are made.
        timeline = []
        read_sequence(model, levels, x, y, StreamState(), differentiable=False,
                      timeline=timeline, carry=carry)
        fired = {name: [pos for n, pos in timeline if n == name] for name in
                 ("every_token", "every_16", "every_256")}
        assert fired["every_token"] == list(range(1, last))
        assert fired["every_16"] == list(range(16, last, 16))
        assert fired["every_256"] == list(range(256, last, 256))


def test_cms_weights_change_only_at_their_boundaries():
    model, levels = tiny_model(), cms_levels(fast=4, slow=12)
    assert chunk_size(levels, 24) == 4
    trace = []
    x, y = batch(t=24)
    read_sequence(model, levels, x, y, StreamState(), trace=trace, carry=Carry())
    name = "layers.0.blocks.cms.body.blocks.slow.w1"
    previous = model.get_parameter(name).expand(2, -1, -1)
    changed_at = []
    for position, weights in trace:
        if not torch.equal(weights[name], previous):
            changed_at.append(position)
        previous = weights[name]
    assert changed_at == [12, 24]


def test_stream_state_carries_across_sequences_and_matches_one_long_read():
    # A stream level sees the same updates whether the stream is read as one sequence or as
    # consecutive ones (the attention cache aside, so this uses a chain without attention).
    torch.manual_seed(0)
    chain = L.MLPChain({"slow": L.MLP(DIM, 16)})
    layer = L.Layer({"cms": L.Residual(L.make_norm("rms", DIM), chain)})
    model = L.NestedLM(32, DIM, [layer], L.make_norm("rms", DIM)).double()
    level = LevelDef("slow", "in_context", 4, "token", "stream", GDRule(lr=0.1),
                     ("layers.0.blocks.cms.body.blocks.slow",))
    x, y = batch(b=1, t=24)
    whole = init_stream(model, (level,))
    read_sequence(model, (level,), x, y, whole, differentiable=False)
    split = init_stream(model, (level,))
    for start in (0, 8, 16):
        read_sequence(model, (level,), x[:, start:start + 8], y[:, start:start + 8], split,
                      differentiable=False)
    assert whole.position == split.position == 24
    for name in whole.weights:
        torch.testing.assert_close(whole.weights[name], split.weights[name])
    assert not torch.equal(whole.weights[name], model.get_parameter(name))


def test_evaluation_leaves_the_stream_untouched():
    model = tiny_model()
    levels = cms_levels(lifetime="stream", slow=4)
    stream = init_stream(model, levels)
    before = {k: v.clone() for k, v in stream.weights.items()}
    x, y = batch()
    read_sequence(model, levels, x, y, stream, learn_stream=False, differentiable=False)
    assert stream.position == 0
    assert all(torch.equal(before[k], stream.weights[k]) for k in before)


def test_window_attention_chunked_equals_whole():
    torch.manual_seed(0)
    attn = L.Attention(DIM, 2, window=3).double()
    x = torch.randn(2, 10, DIM, dtype=torch.float64)
    whole = attn(x, {})
    cache: dict = {}
    parts = [attn(x[:, i:i + 4], cache) for i in range(0, 10, 4)]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole)


def test_levels_are_plain_frozen_records():
    level = cms_levels()[1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        level.period = 3


def nested_levels(meta="second_order"):
    """cms_slow also learns cms_fast's initial state and restarts it from there (nested CMS)."""
    fast_paths = tuple(f"layers.{i}.blocks.cms.body.blocks.fast" for i in range(2))
    levels = cms_levels(meta=meta)
    return (*levels[:2], dataclasses.replace(levels[2], resets=fast_paths))


@pytest.mark.parametrize("meta", ["second_order", "first_order"])
def test_nested_chain_matches_reference(meta):
    model, levels = tiny_model("nested"), nested_levels(meta)
    x, y = batch()
    fast = read_sequence(model, levels, x, y, StreamState())
    slow, _ = read_sequence_reference(model, levels, x, y, chunk=chunk_size(levels, 16))
    torch.testing.assert_close(fast.loss, slow, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads_of(model, fast.loss), grads_of(model, slow), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_nested_chain_restarts_the_faster_block_from_its_learned_start():
    # cms_fast steps at 4 and 8; at 8 cms_slow fires too and restarts cms_fast from the initial
    # state it has just learned (the initial state moved by cms_fast's summed gradients): so
    # from 8 on the nested block differs from the sequential one, and it is neither the old
    # initial state nor where cms_fast's own steps had taken it.
    model, (x, y) = tiny_model("nested"), batch()
    trace_nested, trace_plain = [], []
    read_sequence(model, nested_levels(), x, y, StreamState(), trace=trace_nested)
    read_sequence(model, cms_levels(), x, y, StreamState(), trace=trace_plain)
    name = "layers.0.blocks.cms.body.blocks.fast.w1"
    nested = {pos: w[name][0] for pos, w in trace_nested}
    plain = {pos: w[name][0] for pos, w in trace_plain}
    initial = dict(model.named_parameters())[name].detach()
    torch.testing.assert_close(nested[4], plain[4])  # before the first reset: the same
    assert not torch.allclose(nested[8], plain[8])
    assert not torch.allclose(nested[8], initial)
    assert not torch.allclose(nested[12], nested[8])  # and it steps on from there


def test_stream_weight_is_trained_initial_value_plus_in_context_change():
    # W0 (the module's parameter) gets the ordinary gradient through W0 + Δ; Δ moves in context.
    model = tiny_model()
    levels = cms_levels(lifetime="stream", slow=4)
    stream = init_stream(model, levels)
    name = "layers.0.blocks.cms.body.blocks.slow.w1"
    assert torch.equal(stream.weights[name], torch.zeros_like(model.get_parameter(name)))
    x, y = batch()
    loss = read_sequence(model, levels, x, y, stream).loss
    grad, = torch.autograd.grad(loss, [model.get_parameter(name)])
    assert bool(grad.abs().sum() > 0)
    assert bool(stream.weights[name].abs().sum() > 0)
    # Reading again from Δ = 0 with W0 moved by the change gives the same first prediction as
    # W0 unchanged with the learned Δ: the weight used is their sum.
    moved = read_sequence(model, levels, x, y, stream.copy(), keep_logits=True,
                          learn_stream=False, differentiable=False)
    with torch.no_grad():
        model.get_parameter(name).add_(stream.weights[name])
    shifted = stream.copy()
    shifted.reset({name})
    shifted.accum[name] = stream.accum[name].clone()
    same = read_sequence(model, levels, x, y, shifted, keep_logits=True, learn_stream=False,
                         differentiable=False)
    torch.testing.assert_close(moved.logits[:, :4], same.logits[:, :4])


@pytest.mark.parametrize("meta", ["second_order", "truncated"])
def test_compile_is_refused_for_levels_that_need_a_double_backward(meta):
    from nestgraph.errors import TrainingError
    from nestgraph.runtime.train.step import _wants_compile

    with pytest.raises(TrainingError, match="double backward"):
        _wants_compile("on", torch.device("cpu"), cms_levels(meta=meta))
    assert _wants_compile("on", torch.device("cpu"), cms_levels(meta="first_order"))


@pytest.mark.slow
def test_compiled_layers_train_with_first_order_in_context_levels(tmp_path):
    # The inner gradients keep the graph; a compiled backward must accept that (minutes on a CPU).
    from nestgraph.testing import SMALL_CMS, train_records

    overrides = [*SMALL_CMS, "levels.cms_fast.meta=first_order",
                 "levels.cms_mid.meta=first_order", "train.compile=on", "train.log_every=1"]
    records = train_records(tmp_path, "cms", overrides, 3)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
