"""The period rules, shared by the compiler (at compile time) and `train` (when a run changes
`train.seq_len`). Plain integers only, so neither caller needs the other's world."""

from __future__ import annotations

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
    """A level reset every sequence whose period is longer than one never takes effect."""
    return kind in ("in_context", "memory") and lifetime == "sequence" and period > seq_len
