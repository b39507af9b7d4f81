"""DMGD's memory (NL Eq. 50): linear, it is momentum; deep, it is what a slow per-row loop with
autograd says it is; and it holds the history of the gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nestgraph.optim import DMGD, DeltaMomentum, MemoryMomentum
from nestgraph.optim.dmgd import init_deep_memory, write

F64 = torch.float64


def _steps(make, shape=(5, 7), steps: int = 12) -> torch.Tensor:
    """The parameter after `steps` optimizer steps on a fixed stream of gradients that depend
    on where it is (so any difference in the updates shows)."""
    gen = torch.Generator().manual_seed(0)
    p = nn.Parameter(torch.randn(shape, dtype=F64, generator=gen))
    opt = make([p])
    for _ in range(steps):
        p.grad = torch.randn(shape, dtype=F64, generator=gen) + 0.5 * p.detach()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("shape", [(5, 7), (9,), (3, 2, 4)])
def test_the_linear_memory_with_the_dot_objective_is_sgd_momentum(shape) -> None:
    dmgd = _steps(lambda ps: DMGD(ps, lr=0.1, hidden=0, alpha=0.9), shape)
    assert torch.equal(dmgd, _steps(lambda ps: MemoryMomentum(ps, lr=0.1, beta=0.9), shape))
    torch_sgd = _steps(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), shape)
    assert torch.allclose(dmgd, torch_sgd, rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape", [(5, 7), (9,)])
def test_the_linear_memory_with_the_l2_objective_is_delta_momentum(shape) -> None:
    # Eq. 49 erases by s before retention alpha; DeltaMomentum erases by s' and then retains:
    # the same update when s = alpha s'.
    dmgd = _steps(lambda ps: DMGD(ps, lr=0.1, hidden=0, alpha=0.9, objective="l2",
                                  delta_strength=0.9 * 0.5), shape)
    delta = _steps(lambda ps: DeltaMomentum(ps, lr=0.1, beta=0.9, delta_strength=0.5), shape)
    assert torch.allclose(dmgd, delta, rtol=0, atol=1e-13)
    plain = _steps(lambda ps: MemoryMomentum(ps, lr=0.1, beta=0.9), shape)
    assert not torch.allclose(dmgd, plain, atol=1e-3)  # the erase did something


def _reference_write(phi: dict, g: torch.Tensor, alpha: float, inner_lr: float,
                     objective: str, strength: float) -> torch.Tensor:
    """The same step written the slow, obvious way: the memory read one row at a time, the
    objective summed over the rows in a Python loop, its gradient by autograd."""
    rows = g.shape[0]
    hidden = phi["codes"].shape[1]
    names = ("linear", "codes", "bias", "readout")
    leaves = {k: phi[k].detach().clone().requires_grad_(True) for k in names}

    def row(i: int) -> torch.Tensor:  # m(e_i), e_i the key of row i
        key = torch.zeros(rows, dtype=g.dtype)
        key[i] = 1.0
        code = key @ leaves["codes"]
        deep = torch.tanh(code + leaves["bias"]) @ leaves["readout"] / max(1, hidden) ** 0.5
        return key @ leaves["linear"] + deep

    out = torch.stack([row(i) for i in range(rows)])
    loss = -sum((out[i] * g[i]).sum() for i in range(rows))
    if objective == "l2":
        unit = g / g.norm()
        along = sum((out[i] * unit[i]).sum() for i in range(rows))
        loss = loss + 0.5 * strength * along ** 2
    grads = dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names]),
                     strict=True))
    steps = {"linear": 1.0, "codes": inner_lr, "bias": inner_lr, "readout": inner_lr}
    for k in names:
        start = phi["codes_init"] if k == "codes" else torch.zeros_like(phi[k])
        phi[k] = start + alpha * (phi[k] - start) - steps[k] * grads[k]
    phi["inner_loss"] = loss.detach()
    return _read_rows(phi, rows)


def _read_rows(phi: dict, rows: int) -> torch.Tensor:
    hidden = phi["codes"].shape[1]
    return torch.stack([phi["linear"][i] + torch.tanh(phi["codes"][i] + phi["bias"])
                        @ phi["readout"] / max(1, hidden) ** 0.5 for i in range(rows)])


@pytest.mark.parametrize("objective", ["dot", "l2"])
def test_the_vectorised_write_is_the_per_row_autograd_reference(objective) -> None:
    p = torch.zeros(6, 4, dtype=F64)
    fast = init_deep_memory(p, hidden=5, seed=3)
    slow = {k: v.clone() for k, v in fast.items()}
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, dtype=F64, generator=gen)
    for _ in range(8):
        g = base + 0.5 * torch.randn(6, 4, dtype=F64, generator=gen)
        got = write(fast, g, alpha=0.8, inner_lr=0.7, objective=objective, strength=0.6)
        want = _reference_write(slow, g, alpha=0.8, inner_lr=0.7, objective=objective,
                                strength=0.6)
        assert torch.allclose(got, want, rtol=0, atol=1e-12)
        for k in ("linear", "codes", "bias", "readout", "inner_loss"):
            assert torch.allclose(fast[k], slow[k], rtol=0, atol=1e-12), k
    # the hidden layers did learn: the codes moved off their start and the read-out is not
    # the linear part's
    assert (fast["codes"] - fast["codes_init"]).abs().max() > 1e-3
    assert (got - fast["linear"]).abs().max() > 1e-2


def _inner_losses(correlation: float, hidden: int = 16) -> list[float]:
    """The memory's inner loss before each write, per unit of gradient energy, over a stream
    where each gradient is `correlation` times the last one plus fresh noise."""
    p = nn.Parameter(torch.zeros(16, 8, dtype=F64))
    opt = DMGD([p], lr=1e-3, hidden=hidden, alpha=0.9)
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(16, 8, dtype=F64, generator=gen)
    losses = []
    for _ in range(120):
        noise = torch.randn(16, 8, dtype=F64, generator=gen)
        g = correlation * g + (1 - correlation ** 2) ** 0.5 * noise
        p.grad = g.clone()
        opt.step()
        losses.append(float(opt.state[p]["inner_loss"]) / float(g.pow(2).sum()))
    return losses


def test_the_inner_loss_falls_on_correlated_gradients_and_not_on_independent_ones() -> None:
    correlated = _inner_losses(0.9)
    late = sum(correlated[-40:]) / 40
    assert correlated[0] == 0.0  # an empty memory predicts nothing
    assert late < -1.0  # what it holds points along the next gradient
    independent = _inner_losses(0.0)
    assert abs(sum(independent[-40:]) / 40) < 0.3  # the past says nothing about the next one
    # With the hidden path the read-out reaches further along the next gradient than the
    # linear memory's. The dot objective is unbounded below, so this measures extent along
    # the gradient, not a better direction: a larger read-out alone would pass it.
    assert late < sum(_inner_losses(0.9, hidden=0)[-40:]) / 40


def test_the_memory_starts_from_the_seed_alone() -> None:
    p = torch.zeros(4, 3)
    a, b = init_deep_memory(p, 8, seed=5), init_deep_memory(p, 8, seed=5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["codes"], init_deep_memory(p, 8, seed=6)["codes"])
    assert not a["readout"].any() and not a["linear"].any()  # starts as the empty momentum


def test_bad_arguments_are_refused() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="objective"):
        DMGD(p, objective="cosine")
    with pytest.raises(ValueError, match="hidden"):
        DMGD(p, hidden=-1)
