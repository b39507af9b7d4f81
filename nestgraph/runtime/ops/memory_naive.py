"""The slow, obvious reference for `memory.memory_scan`: one token at a time.

For every token: at a chunk boundary, remember the current weights as the chunk-start state;
read the query from that state; take the gradient of the token's loss at that state with
autograd (``torch.func.grad``, not the closed forms of `memory`); then apply the Titans rule
literally, ``S = η S − θ u`` and ``M = (1 − α) M + S``. With ``chunk=1`` this is the textbook
per-token rule; with a larger chunk it is the naive chunked loop. Tests hold the chunk-parallel
path to it in float64, outputs and gradients. Far too slow for training.
"""

from __future__ import annotations

import torch

from nestgraph.runtime.ops.memory import _check_args, _initial_momentum, memory_read

Tensor = torch.Tensor


def memory_scan_reference(kind: str, objective: str, weights: dict[str, Tensor],
                          momentum: dict[str, Tensor] | None, q: Tensor, k: Tensor, v: Tensor,
                          lr: Tensor, retention: Tensor, decay: Tensor, *, chunk: int,
                          use_momentum: bool = True, self_values: bool = False
                          ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Same contract as `memory.memory_scan`, computed with a Python loop over tokens."""
    _check_args(kind, objective, chunk)
    state = dict(weights)
    velocity = _initial_momentum(weights, momentum)

    def loss(w: dict[str, Tensor], key: Tensor, value: Tensor) -> Tensor:
        # Summed over sequences and heads: their weights are disjoint, so the gradient with
        # respect to the stacked weights is every head's own gradient.
        pred = memory_read(kind, w, key)
        if objective == "l2":
            return ((pred - value) ** 2).sum()
        return -(pred * value).sum()

    grad = torch.func.grad(loss)
    ys = []
    start = state
    for t in range(q.shape[-2]):
        if t % chunk == 0:
            start = dict(state)  # a snapshot: the loop below rebinds the entries of `state`
        token = slice(t, t + 1)
        ys.append(memory_read(kind, start, q[:, :, token]))
        value = v[:, :, token]
        if self_values:
            value = memory_read(kind, start, value)
        u = grad(start, k[:, :, token], value)
        theta, alpha, eta = (x[:, :, t, None, None] for x in (lr, retention, decay))
        for name in state:
            surprise = -theta * u[name]
            if use_momentum:
                surprise = eta * velocity[name] + surprise
            velocity[name] = surprise
            state[name] = (1 - alpha) * state[name] + surprise
    y = torch.cat(ys, dim=-2) if ys else q.new_zeros(q.shape)
    return y, state, velocity
