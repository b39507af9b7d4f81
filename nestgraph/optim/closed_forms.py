"""Closed forms that tie optimizers to memories (NL App. B, App. C), for tests and teaching.

* `elementwise_memory` minimises sum_i |m * g_i - P|^2 + lam |m|^2 exactly: with P = H (the
  sum of squared gradients) and lam -> 0 it is the accumulated gradient, momentum's memory;
  with P = sqrt(H) it is the Adam-like step sum(g) / sqrt(sum(g^2)).
* `dgd_step` is Delta Gradient Descent's closed form for a unit input x (Sherman-Morrison):
  argmin_W 1/2 |W x - u|^2 + 1/(2 eta) |W - W_t|^2 = W_t (I - eta' x x^T) + eta' u x^T with
  eta' = eta / (1 + eta); `proximal_argmin` solves the same problem numerically.
"""

from __future__ import annotations

import torch


def elementwise_memory(grads: torch.Tensor, target: torch.Tensor,
                       lam: float = 0.0) -> torch.Tensor:
    """argmin_m sum_i |m * grads[i] - target|^2 + lam |m|^2, element by element."""
    return target * grads.sum(0) / (grads.pow(2).sum(0) + lam)


def dgd_step(w: torch.Tensor, x: torch.Tensor, u: torch.Tensor, eta: float) -> torch.Tensor:
    eta_prime = eta / (1 + eta)
    return w - eta_prime * torch.outer(w @ x, x) + eta_prime * torch.outer(u, x)


def proximal_argmin(w: torch.Tensor, x: torch.Tensor, u: torch.Tensor,
                    eta: float) -> torch.Tensor:
    """The minimiser from the normal equations W (x x^T + I / eta) = u x^T + W_t / eta."""
    n = x.numel()
    a = torch.outer(x, x) + torch.eye(n, dtype=x.dtype) / eta
    b = torch.outer(u, x) + w / eta
    return torch.linalg.solve(a.T, b.T).T
