"""DeepGain: an online-trained element-wise gain curve on the gradient.

This was the toolkit's first reading of DMGD (NL Eq. 50), kept under an honest name: a small
MLP, shared by all of a tensor's coordinates, maps each coordinate of the gradient at unit
scale to a number, and the update is the gradient plus that number. Its weights change over
time, but they hold no history of the gradients the way momentum does: at each step the
direction is a function of the current gradient alone, ``u + m(u)``. `nestgraph.optim.dmgd`
is the DMGD whose momentum is a memory of the past gradients. Per tensor:

* the gain curve m_phi reads one number per coordinate: u = g / rms(g);
* it is trained by L2 regression of the gradient stream on itself one step back:
  L2(phi) = mean_j (m_phi(u_{t-1, j}) - u_{t, j})^2, one step per outer step with retention
  alpha: phi <- alpha phi - inner_lr grad L2(phi);
* the update is W <- W - lr rms(g_t) (u_t + m_phi(u_t)).

The MLP's last layer starts at zero, so the first steps are plain gradient descent.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from nestgraph.optim.memory import ParameterwiseOptimizer


def _mlp(phi: dict[str, torch.Tensor], u: torch.Tensor) -> torch.Tensor:
    hidden = torch.tanh(u.unsqueeze(-1) * phi["w1"] + phi["b1"])
    return hidden @ phi["w2"]


def init_gain_curve(p: torch.Tensor, hidden: int, seed: int) -> dict[str, torch.Tensor]:
    """A fresh gain curve for parameter `p`: deterministic from `seed`, so resuming needs no
    random state of its own; the last layer at zero, so it starts as plain descent."""
    gen = torch.Generator().manual_seed(seed)
    return {"w1": torch.randn(hidden, generator=gen).to(p),
            "b1": (torch.rand(hidden, generator=gen) - 0.5).to(p),
            "w2": torch.zeros(hidden).to(p),
            "previous": torch.zeros_like(p),
            "inner_loss": torch.zeros((), dtype=p.dtype, device=p.device)}


def _inner_step(phi: dict[str, torch.Tensor], key: torch.Tensor, value: torch.Tensor,
                inner_lr: float, alpha: float) -> None:
    """One gradient step of the gain curve on its own objective, with retention alpha, in place."""
    with torch.enable_grad():
        leaves = {k: phi[k].detach().requires_grad_(True) for k in ("w1", "b1", "w2")}
        inner = (_mlp(leaves, key) - value).pow(2).mean()
        grads = torch.autograd.grad(inner, list(leaves.values()))
    for name, grad in zip(leaves, grads, strict=True):
        phi[name].mul_(alpha).sub_(grad, alpha=inner_lr)
    phi["inner_loss"].copy_(inner.detach())


def gain_direction(phi: dict[str, torch.Tensor], g: torch.Tensor, inner_lr: float,
                   alpha: float, learn: bool) -> torch.Tensor:
    """Train the gain curve on (previous gradient -> this one), then read it at this gradient:
    the update direction rms(g) (u + m(u)), u = g / rms(g)."""
    scale = g.pow(2).mean().sqrt() + 1e-12
    u = (g / scale).reshape(-1)
    if learn:
        _inner_step(phi, phi["previous"].reshape(-1), u, inner_lr, alpha)
    phi["previous"].copy_(u.reshape(g.shape))
    return (u + _mlp(phi, u)).reshape(g.shape) * scale


class DeepGain(ParameterwiseOptimizer):
    """The gain curve as an optimizer: lr, the MLP's width `hidden`, its step `inner_lr` and
    retention `alpha`, decoupled `weight_decay`, and the `seed` its weights start from."""

    def __init__(self, params: Iterable, lr: float = 0.01, hidden: int = 16,
                 inner_lr: float = 0.05, alpha: float = 0.99, weight_decay: float = 0.0,
                 seed: int = 0):
        defaults = dict(lr=lr, hidden=hidden, inner_lr=inner_lr, alpha=alpha,
                        weight_decay=weight_decay, seed=seed)
        super().__init__(params, defaults)

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        state = self.state[p]
        if not state:
            state.update(init_gain_curve(p, group["hidden"], group["seed"] + len(self.state)))
            state["step"] = torch.zeros((), dtype=torch.int64)
        direction = gain_direction(state, g, group["inner_lr"], group["alpha"],
                                   learn=int(state["step"]) > 0)
        state["step"] += 1
        return direction
