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
Adam's bias correction of the second moment, which the EMA needs at the start). Vectors and
scalars (biases, norms) get the same memories without Newton-Schulz.

M3 is three memories at two speeds, so it is `ComposedMemories` with `m3_memories`: the same
optimizer a spec's levels compile to (specs/optimizers/m3.yaml).
"""

from __future__ import annotations

from collections.abc import Iterable

from nestgraph.optim.composed import ComposedMemories, MemoryDef


def m3_memories(beta1: float = 0.95, beta2: float = 0.999, beta3: float = 0.9,
                alpha: float = 0.1, slow_every: int = 10, mode: str = "accumulate",
                ns_steps: int = 5) -> list[MemoryDef]:
    if slow_every < 1:
        raise ValueError("slow_every must be at least 1")
    ns = dict(output="newton_schulz", ns_steps=ns_steps, mode=mode)
    return [MemoryDef("fast", "momentum", beta=beta1, **ns),
            MemoryDef("second", "second_moment", beta=beta2, mode=mode),
            MemoryDef("slow", "momentum", every=slow_every, beta=beta3, weight=alpha, **ns)]


class M3(ComposedMemories):
    def __init__(self, params: Iterable, lr: float = 0.02, beta1: float = 0.95,
                 beta2: float = 0.999, beta3: float = 0.9, alpha: float = 0.1,
                 slow_every: int = 10, mode: str = "accumulate", eps: float = 1e-8,
                 ns_steps: int = 5, weight_decay: float = 0.0):
        memories = m3_memories(beta1, beta2, beta3, alpha, slow_every, mode, ns_steps)
        super().__init__(params, lr, memories, weight_decay=weight_decay, eps=eps)
