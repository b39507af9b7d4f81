"""Reading a long context in windows with the state carried, and the per-level off switches.

Tiny float64 builds of the shipped specs (one layer, width 16, periods that fire inside a
16-token window). Carrying, four windows of 16 compute what one read of all 64 tokens does;
without a carry, each window is a fresh sequence.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nestgraph.runtime.engine import init_stream, read_sequence
from nestgraph.runtime.program import load_program
from nestgraph.runtime.reader import read_long
from nestgraph.testing import compile_build

W, T = 16, 64  # window (the training length) and context length
TINY = ["model.dim=16", "model.layers=1", f"train.seq_len={W}"]
SPECS = {
    "cms": ["levels.cms_fast.every=4 tokens", "levels.cms_mid.every=8 tokens",
            "levels.cms_slow.every=32 tokens"],
    "titans": ["levels.memory.every=4 tokens"],
    "hope": ["levels.projections.every=4 tokens", "levels.memory.every=8 tokens",
             "levels.cms_fast.every=8 tokens", "levels.cms_mid.every=8 tokens",
             "levels.cms_slow.every=32 tokens"],
    "transformer": [],
}


@pytest.fixture(scope="module", params=list(SPECS))
def built(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / "build"
    program = load_program(compile_build(folder, request.param, TINY + SPECS[request.param]))
    torch.manual_seed(0)
    model = program.build_model().double()
    return request.param, model, program.schedule


def context(b=2, t=T + 1, seed=3):
    return torch.randint(0, 256, (b, t), generator=torch.Generator().manual_seed(seed))


def test_carried_windows_equal_one_read(built):
    _, model, schedule = built
    tokens = context()
    stream = init_stream(model, schedule)
    # Attention limited to the whole context, so one read and the windows see the same keys.
    windows = read_long(model, schedule, tokens, seq_len=W, stream=stream, attention_window=T)
    whole = read_long(model, schedule, tokens, seq_len=T, stream=stream, attention_window=T)
    torch.testing.assert_close(windows.losses, whole.losses, rtol=1e-9, atol=1e-9)
    assert torch.equal(windows.predictions, whole.predictions)
    # Not carrying must differ after the first window, or the equality above proves nothing.
    fresh = read_long(model, schedule, tokens, seq_len=W, stream=stream, carry=False)
    torch.testing.assert_close(fresh.losses[:, :W], whole.losses[:, :W], rtol=1e-9, atol=1e-9)
    assert not torch.allclose(fresh.losses[:, W:], whole.losses[:, W:])


def test_carried_windows_equal_one_read_while_the_stream_learns(built):
    name, model, schedule = built
    tokens = context()
    a, b = init_stream(model, schedule), init_stream(model, schedule)
    windows = read_long(model, schedule, tokens, seq_len=W, stream=a, attention_window=T,
                        learn_stream=True)
    whole = read_long(model, schedule, tokens, seq_len=T, stream=b, attention_window=T,
                      learn_stream=True)
    torch.testing.assert_close(windows.losses, whole.losses, rtol=1e-9, atol=1e-9)
    assert a.position == b.position == T
    for n in a.weights:
        torch.testing.assert_close(a.weights[n], b.weights[n], rtol=1e-9, atol=1e-12)
        assert bool(a.weights[n].abs().sum() > 0), "the stream level should have learned"


def test_without_carry_windows_are_independent(built):
    _, model, schedule = built
    tokens = context()
    stream = init_stream(model, schedule)
    fresh = read_long(model, schedule, tokens, seq_len=W, stream=stream, carry=False)
    parts = [read_long(model, schedule, tokens[:, s:s + W + 1], seq_len=W, stream=stream).losses
             for s in range(0, T, W)]
    torch.testing.assert_close(fresh.losses, torch.cat(parts, dim=1), rtol=1e-12, atol=1e-12)


def test_attention_limit_is_a_sliding_window_of_the_training_length(built):
    name, model, schedule = built
    if name != "transformer":
        pytest.skip("a transformer alone isolates attention")
    tokens = context()
    stream = init_stream(model, schedule)
    limited = read_long(model, schedule, tokens, seq_len=W, stream=stream)  # default: W keys
    sliding = read_long(model, schedule, tokens, seq_len=T, stream=stream, attention_window=W)
    full = read_long(model, schedule, tokens, seq_len=T, stream=stream, attention_window=T)
    torch.testing.assert_close(limited.losses, sliding.losses, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(limited.losses[:, W:], full.losses[:, W:])


def _zero_rates(model, schedule, names):
    """The same schedule and model with zero learning rates (and no forgetting) for `names`."""
    out = []
    for lv in schedule:
        if lv.name in names and lv.kind == "in_context":
            lv = dataclasses.replace(lv, rule=dataclasses.replace(lv.rule, lr=0.0))
        elif lv.name in names and lv.kind == "memory":
            for path in lv.modules:
                _freeze(model, path)
        out.append(lv)
    return tuple(out)


def _freeze(model, path):
    parent = model.get_submodule(path.rsplit(".", 1)[0])
    part = path.rsplit(".", 1)[1]
    if hasattr(parent, "rates"):  # self-modifying Titans: main memory or projections
        which = "main" if part == "memory" else "proj"
        parent.rates[which] = (0.0, 0.0, parent.rates[which][2])
    else:  # Titans' memory: every rate it produces or holds, zeroed
        original = parent._rates

        def zeroed(x, original=original):
            lr, forget, momentum = original(x)
            return torch.zeros_like(lr), torch.zeros_like(forget), momentum
        parent._rates = zeroed


def _learning_levels(schedule):
    return [lv.name for lv in schedule if lv.kind in ("in_context", "memory")]


def test_off_equals_zero_learning_rates(built, tmp_path):
    name, model, schedule = built
    tokens = context()
    x, y = tokens[:, :W], tokens[:, 1:W + 1]
    for level in _learning_levels(schedule):
        stream = init_stream(model, schedule)
        on = read_sequence(model, schedule, x, y, stream, differentiable=False,
                           learn_stream=False, keep_logits=True)
        off = read_sequence(model, schedule, x, y, stream, differentiable=False,
                            learn_stream=False, keep_logits=True, off=frozenset({level}))
        torch.manual_seed(0)
        twin = load_program(compile_build(tmp_path / level, name, TINY + SPECS[name]))
        twin_model = twin.build_model().double()
        twin_model.load_state_dict(model.state_dict())
        zero = read_sequence(twin_model, _zero_rates(twin_model, schedule, {level}), x, y,
                             stream, differentiable=False, learn_stream=False,
                             keep_logits=True)
        torch.testing.assert_close(off.logits, zero.logits, rtol=1e-12, atol=1e-12)
        lifetime = next(lv.lifetime for lv in schedule if lv.name == level)
        if lifetime == "sequence":  # a stream level fires beyond this window
            assert not torch.allclose(off.logits, on.logits), f"off did nothing for {level}"


def test_every_level_off_equals_no_in_context_learning(built):
    _, model, schedule = built
    tokens = context()
    x, y = tokens[:, :W], tokens[:, 1:W + 1]
    stream = init_stream(model, schedule)
    kw = dict(differentiable=False, learn_stream=False, keep_logits=True)
    none = read_sequence(model, schedule, x, y, stream, in_context=False, **kw)
    every = read_sequence(model, schedule, x, y, stream,
                          off=frozenset(_learning_levels(schedule)), **kw)
    assert torch.equal(none.logits, every.logits)


def test_reset_returns_a_stream_level_to_its_initial_state(built):
    name, model, schedule = built
    if name not in ("cms", "hope"):
        pytest.skip("needs a stream level")
    tokens = context()
    learned = init_stream(model, schedule)
    read_long(model, schedule, tokens, seq_len=W, stream=learned, learn_stream=True)
    kept = learned.copy()
    fresh = init_stream(model, schedule)
    reset = read_long(model, schedule, tokens, seq_len=W, stream=learned, reset={"cms_slow"})
    initial = read_long(model, schedule, tokens, seq_len=W, stream=fresh)
    used = read_long(model, schedule, tokens, seq_len=W, stream=learned)
    assert torch.equal(reset.losses, initial.losses)
    assert not torch.allclose(used.losses, initial.losses)
    assert all(torch.equal(kept.weights[n], learned.weights[n]) for n in kept.weights)
