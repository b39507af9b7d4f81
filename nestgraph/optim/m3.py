"""M3, Multi-scale Momentum Muon (NL §7.2, Algorithm 1): Adam's second moment, Muon's
orthogonalised momentum, and a two-level continuum memory over the momentum.

Per step t (gradient g):   M1 <- write(M1, g, beta1)        fast momentum, every step
                           V  <- write(V, g^2, beta2)       second moment
                           S  <- S + g                      the slow level's chunk
                           W  <- W - lr (NS(M1) + alpha O2) / (sqrt(V) + eps)
every `slow_every` steps:  M2 <- write(M2, S, beta3); O2 <- NS(M2); S <- 0

O2 changes only at the slow level's updates and is used from the next step on. The printed
algorithm accumulates with no decay (``mode="accumulate"``, the default here, as written);
``mode="ema"`` gives the exponential moving averages several re-implementations use (with
Adam's bias correction of the second moment, which the EMA needs at the start).
Vectors and scalars (biases, norms) get the same memories without Newton-Schulz.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from nestgraph.optim import memory as mem


class M3(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 0.02, beta1: float = 0.95,
                 beta2: float = 0.999, beta3: float = 0.9, alpha: float = 0.1,
                 slow_every: int = 10, mode: str = "accumulate", eps: float = 1e-8,
                 ns_steps: int = 5, ns_kind: str = "quintic", weight_decay: float = 0.0):
        if slow_every < 1:
            raise ValueError("slow_every must be at least 1")
        defaults = dict(lr=lr, beta1=beta1, beta2=beta2, beta3=beta3, alpha=alpha,
                        slow_every=slow_every, mode=mode, eps=eps, ns_steps=ns_steps,
                        ns_kind=ns_kind, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            for name in ("fast", "second", "chunk", "slow", "slow_out"):
                state[name] = torch.zeros_like(p)
            state["step"] = torch.zeros((), dtype=torch.int64)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            ns = (group["ns_steps"], group["ns_kind"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self._state(p)
                state["step"] += 1
                mem.write(state["fast"], g, group["beta1"], group["mode"])
                mem.write(state["second"], g * g, group["beta2"], group["mode"])
                state["chunk"].add_(g)
                fast = mem.output(state["fast"], "newton_schulz", *ns)
                second = state["second"]
                if group["mode"] == "ema":  # Adam's bias correction, for the EMA variant only
                    second = second / (1 - group["beta2"] ** int(state["step"]))
                direction = (fast + group["alpha"] * state["slow_out"]) / (
                    second.sqrt() + group["eps"])
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(direction, alpha=-group["lr"])
                if int(state["step"]) % group["slow_every"] == 0:
                    mem.write(state["slow"], state["chunk"], group["beta3"], group["mode"])
                    state["slow_out"].copy_(mem.output(state["slow"], "newton_schulz", *ns))
                    state["chunk"].zero_()
        return loss
