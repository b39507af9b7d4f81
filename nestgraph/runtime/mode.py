"""How the engine asks the layers to run one read: a typed record carried beside the layers'
cache, not as string keys among the modules' ``id`` keys.

The cache a model's forward pass takes is a dict of each module's carried state (a memory's
weights, attention's keys and values, a convolution's tail), keyed by ``id(module)``. The
engine reads with a `Cache`, that dict with a `ReadMode` attached; a layer asks `mode_of` and
gets the defaults for a plain dict (a layer called on its own, in a test or a benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadMode:
    # Second-order levels differentiate through the read: the fused attention kernels have no
    # double backward, so attention takes its plain formula.
    double_backward: bool = False
    off: frozenset[int] = frozenset()  # ids of sub-modules whose levels are switched off
    attention_window: int = 0  # attention sees at most this many past keys (0: all)


DEFAULT = ReadMode()


class Cache(dict):
    """The layers' carried state, with the read's mode (not an entry: never carried on)."""

    def __init__(self, states: dict | None = None, mode: ReadMode = DEFAULT) -> None:
        super().__init__(states or {})
        self.mode = mode


def mode_of(cache: dict | None) -> ReadMode:
    return getattr(cache, "mode", DEFAULT)
