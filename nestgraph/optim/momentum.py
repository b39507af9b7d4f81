"""Momentum as a memory of gradients, and the optimizers that are variations of it.

`MemoryMomentum` is the general form of NL §4.2-4.5:

    v_t = P_t phi(g_t)                     what is written (feature map, preconditioner)
    m_t = write(m_{t-1}, v_t)              value-less memory (dot), or delta rule (l2)
    W_t = W_{t-1} - lr sigma(m_t)          the output map gives the update direction

Each named optimizer fixes some of these choices: `DeltaMomentum` the L2 objective,
`Muon` the Newton-Schulz output, `PreconditionedMomentum` a second-moment preconditioner.
All work on any PyTorch model (``opt = Muon(model.parameters(), lr=0.02)``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

import nestgraph.optim.memory as mem


class MemoryMomentum(mem.ParameterwiseOptimizer):
    """A gradient memory as an optimizer.

    lr: step size of the parameters. beta: the memory's retention. mode: how the memory writes
    (``plain`` SGD momentum, ``ema``, ``accumulate``). objective: ``dot`` (value-less,
    Hebbian) or ``l2`` (delta momentum, forgetting along each new gradient by
    `delta_strength`). power: the feature map sign(g)|g|^power. precondition: ``none`` or
    ``second_moment`` (v = EMA of g^2 with beta2; writes g / (sqrt(v) + eps)). output:
    ``identity``, ``sign``, ``newton_schulz`` or ``muon`` (ns_steps, ns_kind). nesterov: read the memory
    one write ahead. weight_decay: decoupled, as in AdamW.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, beta: float = 0.9,
                 mode: str = "plain", objective: str = "dot", delta_strength: float = 1.0,
                 power: float = 1.0, precondition: str = "none", beta2: float = 0.999,
                 eps: float = 1e-8, output: str = "identity", ns_steps: int = 5,
                 ns_kind: str = "quintic", nesterov: bool = False, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if objective not in ("dot", "l2") or precondition not in ("none", "second_moment"):
            raise ValueError("objective must be dot or l2; precondition none or second_moment")
        defaults = dict(lr=lr, beta=beta, mode=mode, objective=objective,
                        delta_strength=delta_strength, power=power, precondition=precondition,
                        beta2=beta2, eps=eps, output=output, ns_steps=ns_steps, ns_kind=ns_kind,
                        nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _written(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        """P phi(g): what the memory writes this step."""
        value = mem.features(g, group["power"])
        if group["precondition"] == "second_moment":
            state = self.state[p]
            v = state.setdefault("second_moment", torch.zeros_like(p))
            state["steps"] = state.get("steps", 0) + 1
            v.mul_(group["beta2"]).addcmul_(g, g, value=1 - group["beta2"])
            corrected = v / (1 - group["beta2"] ** state["steps"])
            value = value / (corrected.sqrt() + group["eps"])
        return value

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        value = self._written(p, g, group)
        m = self.state[p].setdefault("momentum", torch.zeros_like(p))
        if group["objective"] == "l2":
            mem.delta_erase(m, g, group["delta_strength"])
        mem.write(m, value, group["beta"], group["mode"])
        read = value + group["beta"] * m if group["nesterov"] else m
        return mem.output(read, group["output"], group["ns_steps"], group["ns_kind"])


class DeltaMomentum(MemoryMomentum):
    """Delta momentum (NL Eqs. 48-49): the L2 inner objective, so the memory forgets what it
    held along each new gradient's direction before writing it."""

    def __init__(self, params: Iterable, lr: float = 0.01, beta: float = 0.9,
                 delta_strength: float = 1.0, **kw):
        super().__init__(params, lr=lr, beta=beta, objective="l2",
                         delta_strength=delta_strength, **kw)


class PreconditionedMomentum(MemoryMomentum):
    """Preconditioned momentum (NL Eqs. 46-47): the memory writes P g, with P from a second
    memory, of squared gradients (the diagonal preconditioner Adam also uses)."""

    def __init__(self, params: Iterable, lr: float = 0.001, beta: float = 0.9,
                 beta2: float = 0.999, **kw):
        super().__init__(params, lr=lr, beta=beta, mode="ema", precondition="second_moment",
                         beta2=beta2, **kw)


class Muon(MemoryMomentum):
    """Muon: momentum with a Newton-Schulz output map (NL Eq. 52 with a linear memory).
    Matrices get the orthogonalised update; vectors and scalars plain momentum."""

    def __init__(self, params: Iterable, lr: float = 0.02, beta: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, **kw):
        super().__init__(params, lr=lr, beta=beta, output="muon", nesterov=nesterov,
                         ns_steps=ns_steps, **kw)
