"""The period rules, shared by the compiler (at compile time) and `train` (when a run changes
`train.seq_len`). Plain integers only, so neither caller needs the other's world."""

from __future__ import annotations

import math
from collections.abc import Iterator


def in_tokens(period: int, unit: str, seq_len: int) -> int:
    """A level's period in tokens per sequence lane: a step reads `seq_len` tokens."""
    return period * (seq_len if unit == "step" else 1)


def nesting_violations(tokens: dict[str, int],
                       order: list[str]) -> Iterator[tuple[str, str, list[int]]]:
    """``(slow, fast, faster_periods)`` for each level whose period is not a multiple of a faster
    level's (NL Def. 2: nested frequencies).

    `order` lists the levels fastest first. A level found inconsistent is not held against the
    slower ones, so one bad period gives one error. `faster_periods` are the consistent faster
    periods, whose least common multiple any fix must be a multiple of.
    """
    consistent: list[str] = []
    for slow in order:
        faster = [f for f in consistent if tokens[f] < tokens[slow]]
        bad = next((f for f in faster if tokens[slow] % tokens[f]), None)
        if bad is None:
            consistent.append(slow)
        else:
            yield slow, bad, [tokens[f] for f in faster]


def never_updates(kind: str, lifetime: str, period: int, seq_len: int) -> bool:
    """A level reset every sequence whose period is not shorter than one never takes effect.

    Its first update would come after the sequence's last token (period == seq_len) or never
    (period > seq_len); either way the state is reset before any prediction reads it.
    """
    return kind in ("in_context", "memory") and lifetime == "sequence" and period >= seq_len


def never_fires(period_tokens: int, steps: int, seq_len: int) -> bool:
    """A level whose period is longer than a whole run (`steps` sequences per lane) never
    updates in it. Only a warning: a resumed or extended run may reach the period."""
    return steps > 0 and period_tokens > steps * seq_len


def shorter_period(seq_len: int) -> int:
    """The period to suggest for a sequence-lifetime level: the largest proper divisor of
    `seq_len` (seq_len/2 when it is even), so the level updates inside the sequence at regular
    places. Trial division stops at the square root, so a huge seq_len stays fast."""
    factor = next((f for f in range(2, math.isqrt(seq_len) + 1) if seq_len % f == 0), seq_len)
    return seq_len // factor
