"""CMS levels with data-dependent step sizes (NL Eq. 71's η_t), against the per-token engine."""

from __future__ import annotations

import pytest
import torch

from nestgraph.runtime.engine import chunk_size, read_sequence
from nestgraph.runtime.engine_naive import read_sequence_reference
from nestgraph.runtime.layers import core as L
from nestgraph.runtime.levels import ClosedFormRule, GDRule, LevelDef
from nestgraph.runtime.stream import StreamState

DIM = 8


def tiny_model(bias: float = 0.0) -> L.NestedLM:
    torch.manual_seed(0)

    def layer():
        chain = L.MLPChain({"fast": L.MLP(DIM, 16), "slow": L.MLP(DIM, 16)},
                           step_sizes=("fast", "slow"))
        with torch.no_grad():  # step sizes that differ from token to token
            for readout in chain.rates.values():
                readout.weight.normal_(0.0, 1.0)
                readout.bias.fill_(bias)
        return L.Layer({"attn": L.Residual(L.make_norm("rms", DIM), L.Attention(DIM, 2)),
                        "cms": L.Residual(L.make_norm("rms", DIM), chain)})

    return L.NestedLM(32, DIM, [layer(), layer()], L.make_norm("rms", DIM)).double()


def levels(fast=4, slow=8, meta="second_order", produced=True, momentum=0.0):
    def paths(kind, block):
        return tuple(f"layers.{i}.blocks.cms.body.{kind}.{block}" for i in range(2))

    rule = GDRule(lr="cms.lr" if produced else 0.1, max_lr=0.2, momentum=momentum,
                  weight_decay=0.01, clip=5.0)
    extra = (lambda block: {"step_sizes": paths("rates", block)}) if produced else (
        lambda block: {})
    return (
        LevelDef("attention", "nonparametric", 1, "token", "sequence", ClosedFormRule()),
        LevelDef("cms_fast", "in_context", fast, "token", "sequence", rule,
                 paths("blocks", "fast"), meta=meta, **extra("fast")),
        LevelDef("cms_slow", "in_context", slow, "token", "sequence", rule,
                 paths("blocks", "slow"), meta=meta, **extra("slow")),
    )


def batch(b=2, t=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 32, (b, t), generator=g), torch.randint(0, 32, (b, t), generator=g)


CASES = [dict(), dict(meta="truncated"), dict(fast=1, slow=2), dict(momentum=0.5)]


@pytest.mark.parametrize("kw", CASES, ids=[str(c) for c in CASES])
def test_weighted_chunks_match_the_per_token_engine(kw):
    model, lvs = tiny_model(), levels(**kw)
    x, y = batch()
    fast = read_sequence(model, lvs, x, y, StreamState(), keep_logits=True)
    slow_loss, slow_logits = read_sequence_reference(model, lvs, x, y,
                                                     chunk=chunk_size(lvs, x.shape[1]))
    torch.testing.assert_close(fast.logits, slow_logits, rtol=1e-10, atol=1e-10)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(fast.loss, params),
                    torch.autograd.grad(slow_loss, params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_the_outer_level_learns_the_readout_through_the_update():
    model, lvs = tiny_model(), levels()
    read = read_sequence(model, lvs, *batch(), StreamState())
    readout = model.layers[0].blocks.cms.body.rates.fast
    grad, = torch.autograd.grad(read.loss, [readout.weight])
    assert grad.abs().max() > 0


def test_a_saturated_readout_is_the_constant_step():
    # sigmoid(large) = 1 at every token: the produced rule is GD at lr = max_lr.
    model, x_y = tiny_model(bias=60.0), batch()
    produced = read_sequence(model, levels(), *x_y, StreamState(), keep_logits=True)
    constant = read_sequence(model, [*levels(produced=False)[:1], *(
        LevelDef(lv.name, lv.kind, lv.period, lv.unit, lv.lifetime,
                 GDRule(lr=0.2, weight_decay=0.01, clip=5.0), lv.modules)
        for lv in levels(produced=False)[1:])], *x_y, StreamState(), keep_logits=True)
    torch.testing.assert_close(produced.logits, constant.logits)


def test_step_sizes_change_the_prediction():
    model, x_y = tiny_model(), batch()
    weighted = read_sequence(model, levels(), *x_y, StreamState(), keep_logits=True)
    uniform = read_sequence(tiny_model(bias=60.0), levels(), *x_y, StreamState(),
                            keep_logits=True)
    assert not torch.allclose(weighted.logits, uniform.logits)
