"""Continual-learning metrics over a matrix of losses (lower is better).

``R[i][j]`` is the loss on domain ``j`` after training phase ``i``; ``before[j]`` the loss on
domain ``j`` before any phase. The definitions are GEM's (Lopez-Paz & Ranzato 2017) and
forgetting is Chaudhry et al.'s (2018, as in Avalanche), written for a loss: every sign is
flipped against the accuracy versions so that, as there, a positive BWT or FWT is good
(learning later domains lowered an earlier one's loss; earlier domains lowered a later one's
loss before it was trained) and a positive forgetting is a loss increase.
"""

from __future__ import annotations


def _check(matrix: list[list[float]]) -> int:
    t = len(matrix)
    if t == 0 or any(len(row) != t for row in matrix):
        raise ValueError("the loss matrix must be square: one row per phase, one column per domain")
    return t


def average_final(matrix: list[list[float]]) -> float:
    """Mean loss over all domains after the last phase (GEM's ACC, as a loss)."""
    t = _check(matrix)
    return sum(matrix[-1]) / t


def backward_transfer(matrix: list[list[float]]) -> float:
    """Mean over the earlier domains of (loss right after its own phase - loss at the end).

    Negative: training later domains raised the loss of earlier ones (forgetting). 0 for one
    domain.
    """
    t = _check(matrix)
    if t < 2:
        return 0.0
    return sum(matrix[j][j] - matrix[-1][j] for j in range(t - 1)) / (t - 1)


def forward_transfer(matrix: list[list[float]], before: list[float]) -> float:
    """Mean over domains 2..T of (loss before any phase - loss just before its own phase).

    Positive: earlier domains already lowered a later one's loss. GEM's baseline is a freshly
    initialised model; here it is the model the phases start from (``before``).
    """
    t = _check(matrix)
    if len(before) != t:
        raise ValueError("one starting loss per domain is needed")
    if t < 2:
        return 0.0
    return sum(before[j] - matrix[j - 1][j] for j in range(1, t)) / (t - 1)


def forgetting(matrix: list[list[float]]) -> float:
    """Mean over the earlier domains of (final loss - best loss at any earlier phase).

    Positive: the loss rose again after its best. Negative when a domain's loss kept falling
    through every later phase (Chaudhry et al.'s forgetting is negative there too).
    """
    t = _check(matrix)
    if t < 2:
        return 0.0
    per = [matrix[-1][j] - min(matrix[i][j] for i in range(t - 1)) for j in range(t - 1)]
    return sum(per) / (t - 1)


def summary(matrix: list[list[float]], before: list[float]) -> dict[str, float]:
    return {"average_final": average_final(matrix), "bwt": backward_transfer(matrix),
            "fwt": forward_transfer(matrix, before), "forgetting": forgetting(matrix)}
