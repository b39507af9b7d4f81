"""DMGD, Deep Momentum Gradient Descent (NL Eq. 50): the momentum is an MLP whose weights are
the memory of the past gradients, trained online on its own inner objective.

Eq. 50 reads ``W_{i+1} = W_i + m_{i+1}(u_i)``, ``m_{i+1} = alpha m_i - eta grad L(m_i; u_i)``
and leaves the memory, its keys and values and its objective open. Ordinary momentum is the
case where m is linear: it must come out exactly, so the choices below are made to let it.

Keys and values. A tensor is read as a matrix (its first dimension the rows, `as_matrix`).
Row i of the gradient is the value written under key e_i, the row's address (a one-hot
vector); the memory is read at the same keys, so its read-out m(K) has the tensor's shape and
is the update direction. The key is the address, not the gradient: momentum's read-out is
its state whatever the query, so a linear memory queried by the current gradient (the
gradient rows as keys) could never equal momentum; the current gradient enters through the
write, made just before the read, as momentum writes ``m_{i+1}`` and then steps along it.

The memory, per tensor, is a residual two-layer MLP of the key:

    m(e_i) = M_i + tanh(C_i + b) R / sqrt(hidden)

with M (rows x cols) the linear part, C (rows x hidden) the first layer (on a one-hot key it
is one row per address: each row's learned code), b its bias, R (hidden x cols) the second
layer. Written out for all rows at once, m(K) = M + tanh(C + b) R / sqrt(hidden): two
matrix products, no loop over rows. The hidden path shares what it stores across rows: its
read-out for row i is a combination of what was written for the rows whose codes are close
to row i's, a low-rank non-linear memory that the linear part (a plain momentum) lacks. R
starts at zero, so the memory starts as the linear one; C starts as seeded Gaussian codes,
deterministic from the seed, so resuming needs no random state.

Objectives, for the gradient G written this step (g_hat = G / |G|, on the whole tensor):

* ``dot``: L(phi) = -<m(K), G>, the value-less objective; linear, it is SGD momentum
  ``M <- alpha M + G``;
* ``l2``: L(phi) = -<m(K), G> + (s / 2) <m(K), g_hat>^2, whose second term makes the memory
  forget what it holds along the direction it is told about now: linear, it is delta
  momentum as Eq. 49 prints it, ``M <- alpha M - s <M, g_hat> g_hat + G`` (the erase is not
  scaled by alpha there; `DeltaMomentum` erases before retention, so it is this with
  ``s = alpha delta_strength``).

One gradient step per outer step (Eq. 50): phi <- phi_0 + alpha (phi - phi_0) - eta grad L.
The step eta is 1 for M (so that the linear memory is momentum) and `inner_lr` for C, b, R.
Retention pulls the memory back towards its initial state phi_0: that is 0 for M, b and R
(alpha times the weights, as in Eq. 50), and the seeded codes for C, which would otherwise
all decay to zero and make every row's code the same. The gradient of L is written out by
hand (the MLP is two layers); tests hold it to autograd on a per-row loop in float64.

``hidden = 0`` is the linear memory alone: exactly momentum (dot) or delta momentum (l2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from nestgraph.optim.memory import ParameterwiseOptimizer, as_matrix

OBJECTIVES = ("dot", "l2")
# What a deep memory keeps per tensor (besides the bookkeeping of the optimizer using it).
WEIGHTS = ("linear", "codes", "codes_init", "bias", "readout", "inner_loss")


def init_deep_memory(p: torch.Tensor, hidden: int, seed: int) -> dict[str, torch.Tensor]:
    """A fresh memory for parameter `p`, deterministic from `seed`; it starts as the linear
    memory at zero (the second layer is zero), i.e. as momentum's empty buffer."""
    rows, cols = as_matrix(p).shape
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randn(rows, hidden, generator=gen).to(p)
    return {"linear": torch.zeros_like(p),
            "codes": codes,
            "codes_init": codes.clone(),
            "bias": torch.zeros(hidden, dtype=p.dtype, device=p.device),
            "readout": torch.zeros(hidden, cols, dtype=p.dtype, device=p.device),
            "inner_loss": torch.zeros((), dtype=p.dtype, device=p.device)}


def _scale(phi: dict[str, torch.Tensor]) -> float:
    return 1.0 / math.sqrt(max(1, phi["codes"].shape[1]))


def read(phi: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """m(K) for every row at once, as a matrix, and the hidden activations tanh(C + b)."""
    hidden = torch.tanh(phi["codes"] + phi["bias"])
    return as_matrix(phi["linear"]) + (hidden @ phi["readout"]) * _scale(phi), hidden


def _cotangent(out: torch.Tensor, g: torch.Tensor, objective: str,
               strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-dL/dm(K) for the objective at read-out `out` and gradient `g` (matrices), and L."""
    loss = -(out * g).sum()
    if objective == "dot":
        return g, loss
    # A zero gradient gives a zero direction (nothing erased), with no host read to test it.
    direction = g / g.norm().clamp_min(torch.finfo(g.dtype).tiny)
    along = (out * direction).sum()
    return g - (strength * along) * direction, loss + 0.5 * strength * along * along


def write(phi: dict[str, torch.Tensor], g: torch.Tensor, alpha: float, inner_lr: float,
          objective: str = "dot", strength: float = 1.0) -> torch.Tensor:
    """One step of the memory on its objective for gradient `g`, in place; then its read-out,
    the update direction, in `g`'s shape. ``phi["inner_loss"]`` gets L before the step."""
    out, hidden = read(phi)
    c, loss = _cotangent(out, as_matrix(g), objective, strength)
    scale = _scale(phi)
    # -grad L by block, all at the weights before the step: m(K) is linear in M and R.
    d_readout = (hidden.T @ c) * scale
    d_pre = (c @ phi["readout"].T) * scale * (1 - hidden * hidden)
    phi["linear"].mul_(alpha).add_(c.reshape(g.shape))
    codes, init = phi["codes"], phi["codes_init"]
    codes.sub_(init).mul_(alpha).add_(init).add_(d_pre, alpha=inner_lr)
    phi["bias"].mul_(alpha).add_(d_pre.sum(0), alpha=inner_lr)
    phi["readout"].mul_(alpha).add_(d_readout, alpha=inner_lr)
    phi["inner_loss"].copy_(loss)
    return read(phi)[0].reshape(g.shape)


class DMGD(ParameterwiseOptimizer):
    """DMGD as an optimizer: W <- W - lr m(K), the memory written with each gradient first.

    lr: the parameters' step. hidden: the MLP's width (0: the linear memory, momentum).
    alpha: the memory's retention (momentum's beta). inner_lr: the hidden layers' step.
    objective: ``dot`` or ``l2`` (with `delta_strength`). seed: where the codes start from.
    weight_decay: decoupled, as in AdamW.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, hidden: int = 16,
                 alpha: float = 0.9, inner_lr: float = 0.1, objective: str = "dot",
                 delta_strength: float = 1.0, weight_decay: float = 0.0, seed: int = 0):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if hidden < 0:
            raise ValueError(f"hidden must be 0 or more, got {hidden}")
        defaults = dict(lr=lr, hidden=hidden, alpha=alpha, inner_lr=inner_lr,
                        objective=objective, delta_strength=delta_strength,
                        weight_decay=weight_decay, seed=seed)
        super().__init__(params, defaults)

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        state = self.state[p]
        if not state:  # one seed per parameter, in the order they are first stepped
            state.update(init_deep_memory(p, group["hidden"], group["seed"] + len(self.state)))
        return write(state, g, group["alpha"], group["inner_lr"], group["objective"],
                     group["delta_strength"])
