"""What a read leaves behind: the stream state that outlives a sequence, the `Carry` that continues
a read in the next window, and a read's result."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StreamState:
    """What outlives a sequence: stream-lifetime weights, their accumulators and the clock.

    ``weights`` holds each stream weight's in-context change ``Δ`` (its value is the module's
    parameter ``W0`` plus ``Δ``), so "reset to the initial value" is ``Δ = 0`` and the trained
    ``W0`` is not copied here. Shared by the sequences of a batch (and, under data parallelism,
    averaged across ranks by `nestgraph.runtime.train.distributed.average_stream`), saved with every
    checkpoint.
    """

    position: int = 0  # tokens read per sequence lane since the stream began
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    accum: dict[str, torch.Tensor] = field(default_factory=dict)
    velocity: dict[str, torch.Tensor] = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {"position": self.position, "weights": dict(self.weights),
                "accum": dict(self.accum), "velocity": dict(self.velocity)}

    def to(self, device: torch.device) -> None:
        """Move every tensor (after loading a checkpoint, which reads onto the CPU)."""
        for table in (self.weights, self.accum, self.velocity):
            for name, tensor in table.items():
                table[name] = tensor.to(device)

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
        self.weights = dict(state["weights"])
        self.accum = dict(state["accum"])
        self.velocity = dict(state["velocity"])

    def copy(self) -> StreamState:
        """An independent copy (to read with, or fork, without changing this one)."""
        return StreamState(self.position, *({n: t.clone() for n, t in table.items()}
                                            for table in (self.weights, self.accum,
                                                          self.velocity)))

    def reset(self, names: set[str]) -> None:
        """Back to the initial value (Δ = 0, nothing accumulated) for these weights."""
        for n in names:
            self.weights[n] = torch.zeros_like(self.weights[n])
            self.accum[n] = torch.zeros_like(self.accum[n])
            self.velocity.pop(n, None)


@dataclass
class Carry:
    """Everything a read leaves behind for the next window of the same context.

    The sequence-lifetime fast weights with their accumulators and velocities (and the nested
    CMS's learned initial states), the layers' cache (memories, attention's keys and values,
    convolution tails) and the position reached. Tensors are detached: a carried read builds
    no graph across windows. Never changed in place: a read hands back a new one.
    """

    position: int = 0
    fast: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)


@dataclass
class SequenceResult:
    loss: torch.Tensor  # mean next-token loss over the counted targets (a graph to backprop)
    logits: torch.Tensor | None  # (B, T, vocab) when asked for
    tokens: int  # targets counted
    carry: Carry | None = None  # the state left for the next window, when reading with one
