"""Delta Gradient Descent for linear layers (NL Eqs. 56-57, App. C) as an optimizer.

Plain gradient descent is the step that minimises <W x, grad_y L> + |W - W_t|^2 / (2 eta);
DGD replaces the dot product with the L2 regression 1/2 |W x - u|^2, u = -grad_y L, whose
closed form for a unit input (`closed_forms.dgd_step`) is

    W <- W (I - eta' x x^T) - eta' grad_y L x^T,      eta' = eta / (1 + eta):

gradient descent plus a decay of W along the input it has just seen (an adaptive forgetting
that suits non-i.i.d. streams). For a batch, x x^T is the mean over its inputs, each scaled to
unit length, and grad_y L x^T is the weight's gradient. The inputs are taken by forward hooks
on the layers given; other parameters (biases, non-linear layers) get plain gradient descent.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from nestgraph.optim.memory import ParameterwiseOptimizer


class DeltaGD(ParameterwiseOptimizer):
    def __init__(self, layers: Iterable[nn.Linear], lr: float = 0.01,
                 extra_params: Iterable[torch.Tensor] = ()):
        self.layers = list(layers)
        weights = [layer.weight for layer in self.layers]
        others = [p for layer in self.layers if layer.bias is not None for p in [layer.bias]]
        params = [{"params": weights, "delta": True},
                  {"params": others + list(extra_params), "delta": False}]
        params = [g for g in params if g["params"]]
        super().__init__(params, dict(lr=lr))
        self._inputs: dict[int, torch.Tensor] = {}
        self._hooks = [layer.register_forward_pre_hook(self._remember) for layer in self.layers]

    def _remember(self, layer: nn.Module, args) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1])
        unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self._inputs[id(layer.weight)] = unit.T @ unit / unit.shape[0]

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor | None:
        covariance = self._inputs.get(id(p)) if group["delta"] else None
        if covariance is None:
            return g  # plain gradient descent
        eta_prime = group["lr"] / (1 + group["lr"])
        p.sub_(eta_prime * (p @ covariance) + eta_prime * g)
        return None
