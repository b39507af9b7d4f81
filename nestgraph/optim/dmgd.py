"""DMGD, Deep Momentum Gradient Descent (NL Eq. 50): the momentum is an MLP, trained online by
gradient descent on its own inner objective over the stream of gradients.

The paper gives Eq. 50 as a schematic (W_{i+1} = W_i + m_{i+1}(u_i), m_{i+1} = alpha m_i -
eta grad L2(m_i; u_i)) and leaves the memory and its objective open. Our choices, per tensor:

* the memory m_phi is a small MLP shared by the tensor's coordinates, reading one number per
  coordinate: u = g / rms(g), the gradient at unit scale;
* its inner objective is L2 regression of the gradient stream on itself one step back:
  L2(phi) = mean_j (m_phi(u_{t-1, j}) - u_{t, j})^2. A memory that has compressed the stream
  predicts what the next gradient will be: persistent directions (what momentum exploits)
  are predicted, oscillations are predicted to flip;
* one inner step per outer step: phi <- alpha phi - inner_lr grad L2(phi) (retention alpha);
* the update is the gradient plus the memory's prediction of the next one:
  W <- W - lr rms(g_t) (u_t + m_phi(u_t)).

The MLP's last layer starts at zero, so the first steps are plain gradient descent.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def _mlp(phi: dict[str, torch.Tensor], u: torch.Tensor) -> torch.Tensor:
    hidden = torch.tanh(u.unsqueeze(-1) * phi["w1"] + phi["b1"])
    return hidden @ phi["w2"]


class DMGD(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 0.01, hidden: int = 16,
                 inner_lr: float = 0.05, alpha: float = 0.99, eps: float = 1e-12,
                 weight_decay: float = 0.0, seed: int = 0):
        defaults = dict(lr=lr, hidden=hidden, inner_lr=inner_lr, alpha=alpha, eps=eps,
                        weight_decay=weight_decay, seed=seed)
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            # Deterministic per parameter: resuming needs no random state of its own.
            gen = torch.Generator().manual_seed(group["seed"] + len(self.state))
            h = group["hidden"]
            state["w1"] = torch.randn(h, generator=gen).to(p)
            state["b1"] = (torch.rand(h, generator=gen) - 0.5).to(p)
            state["w2"] = torch.zeros(h).to(p)
            state["previous"] = torch.zeros_like(p)
            state["inner_loss"] = torch.zeros((), dtype=p.dtype, device=p.device)
            state["step"] = torch.zeros((), dtype=torch.int64)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p, group)
                g = p.grad
                scale = g.pow(2).mean().sqrt() + group["eps"]
                u = (g / scale).reshape(-1)
                if int(state["step"]) > 0:
                    self._inner_step(state, state["previous"].reshape(-1), u, group)
                state["step"] += 1
                phi = {k: state[k] for k in ("w1", "b1", "w2")}
                direction = (u + _mlp(phi, u)).reshape(p.shape) * scale
                state["previous"].copy_(u.reshape(p.shape))
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(direction, alpha=-group["lr"])
        return loss

    @staticmethod
    def _inner_step(state: dict, key: torch.Tensor, value: torch.Tensor, group: dict) -> None:
        """One gradient step of the memory on its own objective, with retention alpha."""
        with torch.enable_grad():
            phi = {k: state[k].detach().requires_grad_(True) for k in ("w1", "b1", "w2")}
            inner = (_mlp(phi, key) - value).pow(2).mean()
            grads = torch.autograd.grad(inner, list(phi.values()))
        for (name, _), grad in zip(phi.items(), grads, strict=True):
            state[name].mul_(group["alpha"]).sub_(grad, alpha=group["inner_lr"])
        state["inner_loss"].copy_(inner.detach())
