"""Optimizers written as levels (ComposedMemories) are the optimizers themselves."""

from __future__ import annotations

import torch
from torch import nn

from nestgraph.optim import DMGD, DeepGain, MemoryMomentum, Muon
from nestgraph.optim.composed import ComposedMemories, MemoryDef
from nestgraph.optim.m3 import m3_memories


def _run(make, steps: int = 15) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4))
    opt = make(model.parameters())
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=gen)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, rtol=1e-6, atol=1e-7)


def test_one_momentum_memory_is_sgd_momentum() -> None:
    _same(_run(lambda ps: ComposedMemories(ps, 0.05, [MemoryDef("m", "momentum", beta=0.9)])),
          _run(lambda ps: MemoryMomentum(ps, lr=0.05, beta=0.9)))
    _same(_run(lambda ps: ComposedMemories(ps, 0.05, [MemoryDef("m", "momentum", beta=0.9)])),
          _run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)))


def test_a_newton_schulz_memory_is_muon() -> None:
    memory = MemoryDef("m", "momentum", beta=0.95, output="muon", nesterov=True)
    _same(_run(lambda ps: ComposedMemories(ps, 0.02, [memory])), _run(lambda ps: Muon(ps)))


def test_a_deep_memory_is_dmgd() -> None:
    for objective in ("dot", "l2"):
        memory = MemoryDef("m", "deep_momentum", hidden=8, inner_lr=0.3, alpha=0.9,
                           objective=objective, delta_strength=0.5)
        composed = _run(lambda ps, memory=memory: ComposedMemories(ps, 0.01, [memory]))
        _same(composed, _run(lambda ps, objective=objective: DMGD(
            ps, lr=0.01, hidden=8, inner_lr=0.3, alpha=0.9, objective=objective,
            delta_strength=0.5, seed=0)))


def test_a_gain_memory_is_the_gain_curve() -> None:
    memory = MemoryDef("m", "deep_gain", hidden=8, inner_lr=0.05, alpha=0.9)
    composed = _run(lambda ps: ComposedMemories(ps, 0.01, [memory]))
    _same(composed, _run(lambda ps: DeepGain(ps, lr=0.01, hidden=8, inner_lr=0.05, alpha=0.9,
                                             seed=0)))


def test_m3_written_as_three_memories() -> None:
    # M3 is defined as its memories; check them against Algorithm 1 written out by hand
    from nestgraph.optim.memory import newton_schulz

    p = nn.Parameter(torch.zeros(4, 3))
    opt = ComposedMemories([p], 0.1, m3_memories(beta1=0.5, beta2=0.25, beta3=0.5, alpha=0.3,
                                                 slow_every=2))
    m1, v, s, m2, o2, w = (torch.zeros(4, 3) for _ in range(6))
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 6):
        g = torch.randn(4, 3, generator=gen)
        p.grad = g.clone()
        opt.step()
        m1, v, s = m1 + 0.5 * g, v + 0.25 * g * g, s + g
        w = w - 0.1 * (newton_schulz(m1) + 0.3 * o2) / (v.sqrt() + 1e-8)
        if t % 2 == 0:
            m2 = m2 + 0.5 * s
            o2, s = newton_schulz(m2), torch.zeros(4, 3)
        assert torch.allclose(p.detach(), w, atol=1e-6)


def test_a_slower_second_moment_divides_nothing_before_it_is_written() -> None:
    for mode in ("ema", "accumulate"):
        weights = _run(lambda ps, mode=mode: ComposedMemories(ps, 0.01, [
            MemoryDef("m", "momentum"), MemoryDef("v", "second_moment", every=3, mode=mode)]),
            steps=5)
        assert all(torch.isfinite(w).all() for w in weights)
        assert all(w.abs().max() < 10 for w in weights)


def test_a_copy_keeps_its_memories() -> None:
    import copy

    from nestgraph.optim import M3

    opt = M3(nn.Linear(3, 2).parameters(), slow_every=4)
    assert copy.deepcopy(opt).memories == opt.memories


def test_a_state_kept_by_other_memories_is_refused_on_load():
    # A checkpoint written when the rule meant the gain curve, loaded where it means DMGD:
    # refused while loading (resume turns it into a checkpoint error), not mid-step.
    import pytest

    w = nn.Parameter(torch.randn(3, 4))
    old = ComposedMemories([w], 0.05, [MemoryDef("m", "deep_gain", hidden=4)])
    w.grad = torch.randn(3, 4)
    old.step()
    new = ComposedMemories([w], 0.05, [MemoryDef("m", "deep_momentum", hidden=4)])
    with pytest.raises(ValueError, match="the optimizer state holds"):
        new.load_state_dict(old.state_dict())
    same = ComposedMemories([w], 0.05, [MemoryDef("m", "deep_gain", hidden=4)])
    same.load_state_dict(old.state_dict())  # the same memories load as before
