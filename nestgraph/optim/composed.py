"""An optimizer written as levels: parameters updated from several gradient memories, each
with its own period (NL §4, §7.2). This is what a spec's optimizer levels compile to.

Per step t of the parameters (gradient g), for each memory k:

* it reads the gradients of its own chunk: g when it fires every step, else their sum over
  the `every` steps since it last fired;
* it writes when t is a multiple of its period. A memory that fires every step writes before
  the parameters move and its read-out is used at once (momentum); a slower one writes after,
  and its read-out is used from the next step on (M3's slow momentum, Algorithm 1).

The update is W <- W - lr * sum_k weight_k * out_k, divided by sqrt(V) + eps when a
second-moment memory V is among them (Adam's and M3's preconditioner). Kinds of memory:

* ``momentum``: a linear memory of gradients (`memory.write`; objective ``dot`` value-less, or
  ``l2`` delta momentum), with feature map sign(g)|g|^power and output map (identity, sign,
  Newton-Schulz);
* ``deep_momentum``: DMGD's memory, a residual MLP whose weights hold the past gradients,
  trained online on its own objective (``dot`` or ``l2``, `dmgd.py`); linear, it is momentum;
* ``deep_gain``: an online-trained element-wise gain curve on the gradient (`deep_gain.py`);
* ``second_moment``: a memory of squared gradients, the preconditioner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

import nestgraph.optim.dmgd as dmgd
import nestgraph.optim.memory as mem
from nestgraph.optim.deep_gain import gain_direction, init_gain_curve

KINDS = ("momentum", "deep_momentum", "deep_gain", "second_moment")
GAIN_STATE = ("w1", "b1", "w2", "previous", "inner_loss")


@dataclass(frozen=True)
class MemoryDef:
    name: str
    kind: str  # one of KINDS
    every: int = 1  # in steps of the parameters it reads
    weight: float = 1.0
    beta: float = 0.9
    mode: str = "plain"  # plain | ema | accumulate
    objective: str = "dot"  # dot | l2 (delta momentum)
    delta_strength: float = 1.0
    power: float = 1.0
    output: str = "identity"  # identity | sign | newton_schulz | muon
    ns_steps: int = 5
    ns_kind: str = "quintic"
    nesterov: bool = False
    hidden: int = 16  # deep_momentum and deep_gain
    inner_lr: float = 0.1
    alpha: float = 0.9


class ComposedMemories(mem.ParameterwiseOptimizer):
    def __init__(self, params: Iterable, lr: float, memories: list[MemoryDef],
                 weight_decay: float = 0.0, eps: float = 1e-8):
        if not memories:
            raise ValueError("an optimizer written as levels needs at least one memory")
        unknown = [m.kind for m in memories if m.kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown memory kinds {unknown}")
        self.memories = list(memories)
        # orthogonalize=False in a parameter group turns Newton-Schulz read-outs into the
        # identity there (embeddings, as with Muon); vectors are never orthogonalised.
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, eps=eps,
                                      orthogonalize=True))

    def __getstate__(self):
        # torch's optimizer pickles defaults, state and groups only; the memories go along
        return {**super().__getstate__(), "memories": self.memories}

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's loader, then a check that each parameter's state is what these memories
        keep: a state saved by other memories (an older rule) fails here, not mid-step."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                have = set(self.state[p]) if p in self.state else set()
                want = set(self._fresh(p, 0))
                if have and have != want:
                    raise ValueError(f"the optimizer state holds {sorted(have - want)} where "
                                     f"these memories keep {sorted(want - have)}")

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state.update(self._fresh(p, len(self.state)))
        return state

    def _fresh(self, p: torch.Tensor, index: int) -> dict:
        state = {"step": torch.zeros((), dtype=torch.int64)}
        for k, m in enumerate(self.memories):
            state[f"{m.name}.writes"] = torch.zeros((), dtype=torch.int64)
            if m.every > 1:
                state[f"{m.name}.chunk"] = torch.zeros_like(p)
            # one seed per memory and parameter, as DMGD does it for its parameters
            seed = 1000 * k + index
            deep = {"deep_momentum": dmgd.init_deep_memory,
                    "deep_gain": init_gain_curve}.get(m.kind)
            if deep is not None:
                for key, value in deep(p, m.hidden, seed).items():
                    state[f"{m.name}.{key}"] = value
            else:
                state[f"{m.name}.m"] = torch.zeros_like(p)
            if m.kind != "second_moment":
                state[f"{m.name}.out"] = torch.zeros_like(p)
        return state

    # ------------------------------------------------------------------------- one memory

    def _write(self, m: MemoryDef, state: dict, value: torch.Tensor, group: dict) -> None:
        state[f"{m.name}.writes"] += 1
        if m.kind == "second_moment":
            mem.write(state[f"{m.name}.m"], value * value, m.beta, m.mode)
            return
        if m.kind == "deep_momentum":
            phi = {k: state[f"{m.name}.{k}"] for k in dmgd.WEIGHTS}
            state[f"{m.name}.out"].copy_(dmgd.write(phi, value, m.alpha, m.inner_lr,
                                                    m.objective, m.delta_strength))
            return
        if m.kind == "deep_gain":
            self._write_gain(m, state, value)
            return
        buffer = state[f"{m.name}.m"]
        if m.objective == "l2":
            mem.delta_erase(buffer, value, m.delta_strength)
        written = mem.features(value, m.power)
        mem.write(buffer, written, m.beta, m.mode)
        read = written + m.beta * buffer if m.nesterov else buffer
        kind = m.output if group["orthogonalize"] or m.output in ("identity", "sign") \
            else "identity"
        state[f"{m.name}.out"].copy_(mem.output(read, kind, m.ns_steps, m.ns_kind))

    def _write_gain(self, m: MemoryDef, state: dict, value: torch.Tensor) -> None:
        phi = {k: state[f"{m.name}.{k}"] for k in GAIN_STATE}
        learn = int(state[f"{m.name}.writes"]) > 1
        state[f"{m.name}.out"].copy_(gain_direction(phi, value, m.inner_lr, m.alpha, learn))

    # -------------------------------------------------------------------------------- step

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> None:
        state = self._state(p)
        state["step"] += 1
        t = int(state["step"])
        slow = []
        for m in self.memories:
            if m.every == 1:
                self._write(m, state, g, group)
                continue
            state[f"{m.name}.chunk"].add_(g)
            if t % m.every == 0:
                slow.append(m)
        direction = None
        for m in self.memories:
            if m.kind == "second_moment":
                continue
            part = state[f"{m.name}.out"] * m.weight
            direction = part if direction is None else direction + part
        direction = g if direction is None else direction
        for m in self.memories:
            if m.kind == "second_moment" and int(state[f"{m.name}.writes"]) > 0:
                # (a slower second moment divides nothing until it has first been written)
                v = state[f"{m.name}.m"]
                if m.mode == "ema":  # Adam's bias correction, which an EMA needs at the start
                    v = v / (1 - m.beta ** int(state[f"{m.name}.writes"]))
                direction = direction / (v.sqrt() + group["eps"])
        mem.step_parameter(p, direction, group)
        for m in slow:  # slower memories write after the step: read from the next step on
            self._write(m, state, state[f"{m.name}.chunk"], group)
            state[f"{m.name}.chunk"].zero_()
