"""The closed forms behind the optimizers (NL App. B, App. C, §4.5), checked numerically."""

from __future__ import annotations

import torch

from nestgraph.optim.closed_forms import dgd_step, elementwise_memory, proximal_argmin
from nestgraph.optim.memory import as_matrix, newton_schulz

F64 = torch.float64


def _numerical_elementwise(grads, target, lam):
    m = torch.zeros_like(target, requires_grad=True)
    opt = torch.optim.LBFGS([m], lr=1, max_iter=500, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (m * grads - target).pow(2).sum() + lam * m.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return m.detach()


def test_elementwise_memory_is_the_argmin() -> None:
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(7, 5, generator=gen, dtype=F64)
    target = torch.randn(5, generator=gen, dtype=F64)
    exact = elementwise_memory(grads, target, lam=0.3)
    assert torch.allclose(exact, _numerical_elementwise(grads, target, 0.3), atol=1e-8)


def test_elementwise_memory_gives_momentum_and_an_adam_like_step() -> None:
    grads = torch.randn(9, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    h = grads.pow(2).sum(0)
    # P = H, lam -> 0: the accumulated gradient, momentum's memory (NL App. B)
    assert torch.allclose(elementwise_memory(grads, h), grads.sum(0))
    # P = sqrt(H): the Adam-like step sum(g) / sqrt(sum(g^2))
    assert torch.allclose(elementwise_memory(grads, h.sqrt()), grads.sum(0) / h.sqrt())


def test_dgd_closed_form_equals_the_proximal_argmin_for_unit_inputs() -> None:
    gen = torch.Generator().manual_seed(2)
    for eta in (0.01, 0.5, 3.0):
        w = torch.randn(4, 6, generator=gen, dtype=F64)
        x = torch.randn(6, generator=gen, dtype=F64)
        x = x / x.norm()
        u = torch.randn(4, generator=gen, dtype=F64)
        assert torch.allclose(dgd_step(w, x, u, eta), proximal_argmin(w, x, u, eta), atol=1e-12)


def test_newton_schulz_output_is_close_to_orthogonal() -> None:
    gen = torch.Generator().manual_seed(3)
    m = torch.randn(16, 32, generator=gen, dtype=F64)
    exact = newton_schulz(m, steps=40, kind="cubic")
    o = as_matrix(exact)
    assert torch.allclose(o @ o.T, torch.eye(16, dtype=F64), atol=1e-6)  # cubic: converges to U V^T
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    assert torch.allclose(exact, u @ vh, atol=1e-6)
    s = torch.linalg.svdvals(newton_schulz(m, steps=5, kind="quintic"))
    assert s.min() > 0.6 and s.max() < 1.25  # Muon's 5 quintic steps: near orthogonal
    tall = newton_schulz(m.T, steps=40, kind="cubic")
    assert torch.allclose(tall.T @ tall, torch.eye(16, dtype=F64), atol=1e-6)
