"""Each optimizer: what makes it itself, training without a non-finite value, exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nestgraph.optim import (
    DMGD,
    M3,
    DeepGain,
    DeltaGD,
    DeltaMomentum,
    MemoryMomentum,
    Muon,
    PreconditionedMomentum,
)
from nestgraph.optim.closed_forms import dgd_step
from nestgraph.optim.memory import as_matrix

FACTORIES = {
    "sgd_momentum": lambda ps: MemoryMomentum(ps, lr=0.05),
    "delta_momentum": lambda ps: DeltaMomentum(ps, lr=0.05),
    "preconditioned": lambda ps: PreconditionedMomentum(ps, lr=0.01),
    "signed_square_features": lambda ps: MemoryMomentum(ps, lr=0.05, power=2.0, mode="ema"),
    "muon": lambda ps: Muon(ps, lr=0.02),
    "m3": lambda ps: M3(ps, lr=0.01, slow_every=3),
    "m3_ema": lambda ps: M3(ps, lr=0.01, slow_every=3, mode="ema"),
    "dmgd": lambda ps: DMGD(ps, lr=0.05),
    "dmgd_l2": lambda ps: DMGD(ps, lr=0.05, objective="l2", delta_strength=0.5),
    "deep_gain": lambda ps: DeepGain(ps, lr=0.05),
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _batches(n: int):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(8, 3, generator=gen)
    for _ in range(n):
        x = torch.randn(32, 8, generator=gen)
        yield x, (x @ w).argmax(-1)


def _train(model, opt, batches) -> list[float]:
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_trains_without_a_non_finite_value(name: str) -> None:
    model = _model()
    losses = _train(model, FACTORIES[name](model.parameters()), _batches(40))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_state_dict_resume_is_bitwise(name: str) -> None:
    batches = list(_batches(12))
    straight = _model()
    _train(straight, FACTORIES[name](straight.parameters()), batches)
    first = _model()
    opt = FACTORIES[name](first.parameters())
    _train(first, opt, batches[:5])
    saved_model, saved_opt = copy.deepcopy(first.state_dict()), copy.deepcopy(opt.state_dict())
    resumed = _model()
    resumed.load_state_dict(saved_model)
    opt2 = FACTORIES[name](resumed.parameters())
    opt2.load_state_dict(saved_opt)
    _train(resumed, opt2, batches[5:])
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_m3_slow_momentum_changes_exactly_every_f_steps() -> None:
    model = _model()
    opt = M3(model.parameters(), lr=0.01, slow_every=4)
    weight = model[0].weight
    seen = []
    for i, (x, y) in enumerate(_batches(13), start=1):
        before = opt.state[weight]["slow.m"].clone() if opt.state[weight] else torch.zeros(1)
        _train(model, opt, [(x, y)])
        changed = not torch.equal(opt.state[weight]["slow.m"], before.expand_as(weight)
                                  if before.numel() == 1 else before)
        seen.append((i, changed))
    assert [i for i, changed in seen if changed] == [4, 8, 12]


def test_m3_accumulates_without_decay_by_default() -> None:
    p = nn.Parameter(torch.zeros(3, 3))
    opt = M3([p], beta1=0.5, slow_every=100)
    for g in (torch.ones(3, 3), 2 * torch.ones(3, 3)):
        p.grad = g.clone()
        opt.step()
    assert torch.allclose(opt.state[p]["fast.m"], torch.full((3, 3), 1.5))  # 0.5 * (1 + 2)


def _inner_losses(inner_lr: float) -> tuple[float, float]:
    p = nn.Parameter(torch.zeros(64))
    opt = DeepGain([p], lr=1e-3, inner_lr=inner_lr, alpha=1.0)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(64, generator=gen)
    losses = []
    for _ in range(200):
        # an AR(1) gradient stream: each gradient is mostly the last one plus noise
        base = 0.9 * base + 0.3 * torch.randn(64, generator=gen)
        p.grad = base.clone()
        opt.step()
        losses.append(float(opt.state[p]["inner_loss"]))
    return sum(losses[1:21]) / 20, sum(losses[-20:]) / 20


def test_the_gain_curve_inner_loss_falls_over_correlated_gradients() -> None:
    early, late = _inner_losses(inner_lr=0.01)
    assert late < 0.7 * early
    frozen_early, frozen_late = _inner_losses(inner_lr=0.0)  # a memory that does not learn
    assert frozen_late > 0.9 * frozen_early


def test_delta_momentum_forgets_along_the_new_gradient() -> None:
    p = nn.Parameter(torch.zeros(2))
    opt = DeltaMomentum([p], lr=1.0, beta=1.0, delta_strength=1.0)
    p.grad = torch.tensor([1.0, 0.0])
    opt.step()
    p.grad = torch.tensor([2.0, 0.0])
    opt.step()
    # plain momentum would hold 3 along x; delta momentum erased the old 1 first
    assert torch.allclose(opt.state[p]["momentum"], torch.tensor([2.0, 0.0]))


def test_muon_steps_along_an_orthogonal_direction() -> None:
    p = nn.Parameter(torch.zeros(8, 16))
    opt = Muon([p], lr=1.0, beta=0.0, nesterov=False)
    p.grad = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    opt.step()
    s = torch.linalg.svdvals(as_matrix(-p.detach()))
    assert s.min() > 0.6 and s.max() < 1.25


def test_delta_gd_step_is_the_closed_form_for_one_unit_input() -> None:
    layer = nn.Linear(5, 3, bias=False).double()
    w0 = layer.weight.detach().clone()
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x / x.norm()
    opt = DeltaGD([layer], lr=0.3)
    y = layer(x.unsqueeze(0))
    upstream = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)  # grad_y L
    (y * upstream).sum().backward()
    opt.step()
    expected = dgd_step(w0, x, -upstream[0], 0.3)
    assert torch.allclose(layer.weight.detach(), expected, atol=1e-12)
