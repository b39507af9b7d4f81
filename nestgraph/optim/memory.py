"""The pieces a gradient memory is made of (NL §4.2-4.5): what it reads (a feature map of the
gradient), how it writes (an objective and its step), and what it gives back (an output map).

Every optimizer in this package is one of these memories, or a few at different speeds.
"""

from __future__ import annotations

import torch

# Newton-Schulz coefficients. "cubic" is the classic iteration O <- 1.5 O - 0.5 O O^T O, one
# gradient step on the orthogonality objective read off NL §4.5 (its fixed points are the
# orthogonal matrices); "quintic" is Muon's tuned polynomial (a, b, c) = (3.4445, -4.7750,
# 2.0315), which gets close to orthogonal in 5 steps at the price of not converging exactly.
NS_COEFFICIENTS = {"cubic": (1.5, -0.5, 0.0), "quintic": (3.4445, -4.7750, 2.0315)}


def features(g: torch.Tensor, power: float) -> torch.Tensor:
    """phi(g) = sign(g) |g|^power (NL Eq. 51): power 1 is the gradient itself, 0 its sign,
    2 the signed square (a higher-order feature map)."""
    if power == 1:
        return g
    if power == 0:
        return torch.sign(g)
    return torch.sign(g) * g.abs().pow(power)


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """A tensor as the matrix an output map orthogonalises: rows = the first dimension."""
    return t.reshape(t.shape[0], -1) if t.dim() >= 2 else t.reshape(1, -1)


def newton_schulz(m: torch.Tensor, steps: int = 5, kind: str = "quintic",
                  eps: float = 1e-7) -> torch.Tensor:
    """The orthogonal factor of `m` (its polar part U V^T), approximately, by Newton-Schulz.

    `m` is scaled to spectral norm <= 1 first (by its Frobenius norm), then iterated with the
    polynomial of `kind`; the wide orientation is used so that X X^T is the small product.
    """
    a, b, c = NS_COEFFICIENTS[kind]
    x = as_matrix(m)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * (s @ s)) @ x
    if tall:
        x = x.T
    return x.reshape(m.shape)


def output(m: torch.Tensor, kind: str, ns_steps: int, ns_kind: str) -> torch.Tensor:
    """sigma(m) (NL Eq. 52): the memory's read-out that becomes the update direction.

    ``newton_schulz`` is NS_T(m) as M3's Algorithm 1 writes it; ``muon`` also scales it by
    sqrt(max(1, rows / cols)), Muon's way of keeping the update's per-entry size comparable
    across shapes. Both apply to matrices; a vector or scalar is given back unchanged."""
    if kind == "identity":
        return m
    if kind == "sign":
        return torch.sign(m)
    if kind in ("newton_schulz", "muon"):
        if m.dim() < 2:
            return m
        out = newton_schulz(m, ns_steps, ns_kind)
        if kind == "muon":
            rows, cols = as_matrix(m).shape
            out = out * max(1.0, rows / cols) ** 0.5
        return out
    raise ValueError(f"unknown output map {kind!r}")


def write(buffer: torch.Tensor, value: torch.Tensor, beta: float, mode: str) -> None:
    """One step of a value-less (dot-product) memory of `value`, in place (NL §4.2):

    * ``plain``: m <- beta m + v (SGD momentum: gradient descent on <m, -v> with retention),
    * ``ema``: m <- beta m + (1 - beta) v,
    * ``accumulate``: m <- m + beta v (M3's Algorithm 1 as printed: no decay).
    """
    if mode == "plain":
        buffer.mul_(beta).add_(value)
    elif mode == "ema":
        buffer.mul_(beta).add_(value, alpha=1 - beta)
    elif mode == "accumulate":
        buffer.add_(value, alpha=beta)
    else:
        raise ValueError(f"unknown write mode {mode!r}")


def delta_erase(buffer: torch.Tensor, g: torch.Tensor, strength: float) -> None:
    """The gradient-dependent decay of delta momentum (NL Eqs. 48-49), in place:
    m <- m - strength <m, g_hat> g_hat with g_hat = g / |g|.

    The paper prints m (alpha I - g^T g), which mixes shapes; on the flattened tensor with a
    unit gradient it is this projection: the L2 inner objective makes the memory forget what it
    held along the direction it is now told about, before writing the new gradient.
    """
    flat, direction = buffer.reshape(-1), g.reshape(-1)
    # A zero gradient gives a zero direction (nothing erased), with no host read to test it.
    direction = direction / direction.norm().clamp_min(torch.finfo(direction.dtype).tiny)
    flat.sub_(direction * (strength * (flat @ direction)))


class ParameterwiseOptimizer(torch.optim.Optimizer):
    """An optimizer whose step is `update(p, grad, group)` for every parameter with a gradient,
    followed by the move ``p <- p (1 - lr wd) - lr direction`` it returns (None: it moved p)."""

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor | None:
        raise NotImplementedError

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
                direction = self.update(p, p.grad, group)
                if direction is not None:
                    step_parameter(p, direction, group)
        return loss


def step_parameter(p: torch.Tensor, direction: torch.Tensor, group: dict) -> None:
    """p <- p (1 - lr weight_decay) - lr direction (decoupled decay, as in AdamW)."""
    if group.get("weight_decay"):
        p.mul_(1 - group["lr"] * group["weight_decay"])
    p.add_(direction, alpha=-group["lr"])
