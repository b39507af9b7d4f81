"""Reading a batch of sequences while the in-context levels learn from it.

The sequence is read chunk by chunk. The chunk is the greatest common divisor of the
in-context levels' periods, so every level's update boundary falls on a chunk boundary, and the
tokens inside a chunk run in parallel (one forward over the whole chunk). After each chunk:

1. each in-context level adds the gradient of the chunk's next-token loss with respect to its
   current fast weights to its accumulator (NL Eq. 71: the sum over the tokens since its last
   update, all taken at the state it held during them);
2. each level whose period divides the position reached applies its rule to the accumulated
   gradient and clears it. Levels fire fastest first, so a slower level firing on the same
   boundary sees the faster levels' already-updated weights in the next chunk.

Sequence-lifetime levels start every batch from their initial state, a parameter owned by a
slower level, one copy per sequence of the batch. Stream-lifetime levels carry one shared
state from batch to batch (see `StreamState`): their weight is ``W0 + Δ``, where ``W0`` is the
module's parameter (trained by the outer level like any other) and ``Δ`` what the stream has
learned in context.

A `Carry` continues a read where the previous one stopped (a long context read in windows):
sequence-lifetime levels then keep their state across the windows instead of being reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.func import functional_call

from nestgraph.runtime.levels import (
    GDRule,
    LevelDef,
    fires,
    gd_step,
    owned_parameters,
    parameters_under,
)


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


# Keys of the cache that the engine sets for one read; everything else is a module's state.
_CONTROL = ("double_backward", "off", "attention_window")


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


def in_context_levels(levels: tuple[LevelDef, ...]) -> list[LevelDef]:
    return [lv for lv in levels if lv.kind == "in_context"]


def chunk_size(levels: tuple[LevelDef, ...], seq_len: int) -> int:
    """Greatest common divisor of the in-context periods; the whole sequence when there are none."""
    periods = [lv.period for lv in in_context_levels(levels)]
    return math.gcd(*periods) if periods else seq_len


def init_stream(model: torch.nn.Module, levels: tuple[LevelDef, ...]) -> StreamState:
    """Stream-lifetime weights start at their module's parameter: Δ = 0."""
    stream = StreamState()
    for name in stream_weight_names(model, levels):
        p = model.get_parameter(name)
        stream.weights[name] = torch.zeros_like(p, requires_grad=False)  # Δ = 0
        stream.accum[name] = torch.zeros_like(p, requires_grad=False)
    return stream


def stream_weight_names(model: torch.nn.Module, levels, only=None) -> list[str]:
    """The parameters owned by stream-lifetime levels (those named in ``only``, if given)."""
    return [n for lv in in_context_levels(levels) if lv.lifetime == "stream"
            and (only is None or lv.name in only) for n in owned_parameters(model, lv)]


class _Fast:
    """The fast weights of one batch, with their accumulators and momentum."""

    def __init__(self, model, levels, batch, stream, learn_stream, differentiable,
                 carry: Carry | None = None):
        self.levels = in_context_levels(levels)
        self.stream, self.learn_stream = stream, learn_stream
        self.differentiable = differentiable
        # Whether the inner gradients must themselves be differentiable (second order).
        self.second_order = differentiable and any(
            lv.meta == "second_order" and lv.lifetime == "sequence" for lv in self.levels)
        self.weights: dict[str, torch.Tensor] = {}
        self.accum: dict[str, torch.Tensor] = {}
        self.velocity: dict[str, torch.Tensor | None] = {}
        self.owner: dict[str, LevelDef] = {}
        # Stream weights are base + delta: base is the module's parameter W0 (the outer level
        # trains it through this sum), delta the detached in-context change.
        self.base: dict[str, torch.Tensor] = {}
        self.delta: dict[str, torch.Tensor] = {}
        for lv in self.levels:
            for name, p in owned_parameters(model, lv).items():
                self.owner[name] = lv
                if lv.lifetime == "sequence":
                    # One copy per sequence; expand keeps the path back to the initial state.
                    self.weights[name] = p.unsqueeze(0).expand(batch, *p.shape)
                    self.accum[name] = torch.zeros(batch, *p.shape, dtype=p.dtype,
                                                   device=p.device)
                    self.velocity[name] = None
                else:
                    self.base[name] = p if differentiable else p.detach()
                    self.delta[name] = stream.weights[name].to(p.device, p.dtype).detach()
                    self.weights[name] = self._stream_weight(name)
                    self.accum[name] = stream.accum[name].to(p.device, p.dtype, copy=True)
                    v = stream.velocity.get(name)
                    self.velocity[name] = None if v is None else v.to(p.device, p.dtype)
        # Nested CMS: a slower level's in-context copy of a faster block's initial state, and
        # the signal it learns it from (the faster block's gradients since its last reset).
        self.resets = {lv.name: list(parameters_under(model, lv.resets)) for lv in self.levels
                       if lv.resets}
        self.init = {n: self.weights[n] for names in self.resets.values() for n in names}
        self.init_accum = {n: torch.zeros_like(self.accum[n]) for n in self.init}
        if carry is not None and carry.fast:
            self._load(carry.fast)

    def _stream_weight(self, name: str) -> torch.Tensor:
        w = self.base[name] + self.delta[name]
        # Without a path to W0 the inner gradient still needs a leaf to differentiate.
        return w if w.requires_grad else w.requires_grad_(True)

    def _load(self, saved: dict) -> None:
        """Continue from a carried state (sequence-lifetime weights only)."""
        for table in ("weights", "accum", "velocity", "init", "init_accum"):
            mine = getattr(self, table)
            for n, t in saved[table].items():
                mine[n] = None if t is None else t.detach().requires_grad_(table == "weights")

    def carried(self) -> dict:
        """The sequence-lifetime state, detached, for a `Carry`."""
        def keep(table):
            return {n: None if t is None else t.detach() for n, t in table.items()
                    if self.owner[n].lifetime == "sequence"}
        return {t: keep(getattr(self, t)) for t in
                ("weights", "accum", "velocity", "init", "init_accum")}

    def names(self) -> list[str]:
        return list(self.weights)

    def chunk_inputs(self, cache: dict) -> dict[str, torch.Tensor]:
        """Fresh aliases of the fast weights for one chunk.

        Eq. 71 takes each level's gradient with everything else held as it is (a partial
        derivative). Differentiating with respect to a per-chunk alias, rather than the weight
        itself, keeps out the paths through earlier in-context updates that the weight also
        influenced; the outer backward still sees every path through the alias.

        Each alias also adds an exact zero that depends on everything carried into the chunk
        (`_horizon`). Its value and its gradients are unchanged, but it places the alias after
        every earlier node in autograd's topological order, and autograd's backward skips nodes
        that come before all of its inputs: each chunk's inner gradient then walks only the
        chunk's own graph instead of the whole sequence's, which kept the cost per token
        growing with the sequence length.
        """
        if not self.levels:
            return {}
        horizon = _horizon([*self.weights.values(), *cache.values()])
        if horizon is None:
            return {n: w.view_as(w) for n, w in self.weights.items()}
        return {n: w + horizon for n, w in self.weights.items()}

    def accumulate(self, loss_sum: torch.Tensor, inputs: dict[str, torch.Tensor],
                   batch: int, names: list[str]) -> None:
        """Add d(chunk loss)/d(fast weights) to the accumulators of ``names`` (Eq. 71)."""
        if not names:
            return
        grads = torch.autograd.grad(loss_sum, [inputs[n] for n in names], retain_graph=True,
                                    create_graph=self.second_order, allow_unused=True)
        for n, g in zip(names, grads, strict=True):
            if g is None:
                continue
            lv = self.owner[n]
            if lv.lifetime == "stream":
                # Shared by all lanes: the signal is the lanes' mean, and it never carries graph.
                g = g.detach() / batch
            elif lv.meta == "first_order" or not self.differentiable:
                g = g.detach()
            self.accum[n] = self.accum[n] + g
            if n in self.init_accum:
                self.init_accum[n] = self.init_accum[n] + g

    def update(self, lv: LevelDef) -> None:
        """Apply the level's rule to its accumulated gradient, then clear the accumulator."""
        assert isinstance(lv.rule, GDRule)
        for n in [n for n in self.names() if self.owner[n] is lv]:
            if lv.lifetime == "stream":
                self._update_stream(lv, n)
                continue
            new, self.velocity[n] = gd_step(lv.rule, self.weights[n], self.accum[n],
                                            self.velocity[n], batched=True)
            if not self.differentiable:
                new = new.detach().requires_grad_(True)
            self.weights[n] = new
            self.accum[n] = torch.zeros_like(self.accum[n])
        for n in self.resets.get(lv.name, ()):
            self._reset(lv, n)

    def _update_stream(self, lv: LevelDef, n: str) -> None:
        """Step Δ (never W0): weight decay pulls Δ back to 0, i.e. the weight back to the
        trained W0, the state "reset" returns to."""
        new, self.velocity[n] = gd_step(lv.rule, self.delta[n], self.accum[n],
                                        self.velocity[n], batched=False)
        self.delta[n] = new.detach()
        self.weights[n] = self._stream_weight(n)
        self.accum[n] = torch.zeros_like(self.accum[n])

    def _reset(self, lv: LevelDef, n: str) -> None:
        """Nested CMS: step the faster block's initial state by this level's rule on the block's
        summed gradients since its last reset (a first-order meta-gradient), then restart the
        block from it."""
        init, _ = gd_step(lv.rule, self.init[n], self.init_accum[n], None, batched=True)
        if not self.differentiable:
            init = init.detach().requires_grad_(True)
        self.init[n] = self.weights[n] = init
        self.init_accum[n] = torch.zeros_like(self.init_accum[n])
        self.accum[n] = torch.zeros_like(self.accum[n])
        self.velocity[n] = None

    def store_stream(self) -> None:
        if not self.learn_stream:
            return
        for n in self.delta:
            self.stream.weights[n] = self.delta[n].detach().clone()
            self.stream.accum[n] = self.accum[n].detach().clone()
            if self.velocity[n] is not None:
                self.stream.velocity[n] = self.velocity[n].detach().clone()


def _horizon(carried) -> torch.Tensor | None:
    """A scalar zero that depends on every tensor in `carried` (nested in tuples and dicts)
    that has a history, or None when none has."""
    tensors, stack = [], list(carried)
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.grad_fn is not None:
                tensors.append(item)
        elif isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    if not tensors:
        return None
    # A sum of one element from each (indexed, never copied): as deep in the graph as the
    # tensor, and cheap.
    first = [t[(0,) * t.dim()].to(tensors[0].dtype) for t in tensors]
    return torch.stack(first).sum() * 0


def read_sequence(model: torch.nn.Module, levels: tuple[LevelDef, ...], x: torch.Tensor,
                  y: torch.Tensor, stream: StreamState, *, learn_stream: bool = True,
                  differentiable: bool = True, keep_logits: bool = False,
                  in_context: bool = True, off: frozenset[str] = frozenset(),
                  carry: Carry | None = None, attention_window: int = 0,
                  timeline: list | None = None, trace: list | None = None) -> SequenceResult:
    """Read ``x`` (B, T), predicting ``y`` (targets < 0 are not counted), learning in context.

    ``learn_stream=False`` reads without changing the stream (evaluation, sampling).
    ``differentiable=False`` keeps in-context learning but builds no graph through it, for
    reading without training (evaluation, sampling): in-context levels learn exactly as in
    training, so there is no train/test mismatch.
    ``off``: names of levels (in-context or memory) whose updates are switched off: they keep
    the state they start with. ``in_context=False`` is every such level off (an ablation, e.g.
    to measure what test-time learning is worth).
    ``carry``: continue from the state a previous read left (`Carry`); the result's ``carry``
    is the state this read leaves. Without one, sequence-lifetime levels start afresh and the
    updates they would make at the very end (never read by any prediction) are skipped.
    ``attention_window``: softmax attention sees at most this many past keys (0: all).
    ``timeline``, when given, receives ``(level, position)`` for every in-context update;
    ``trace`` receives ``(position, fast weights)`` after every chunk (for tests).
    """
    batch, seq_len = x.shape
    if not in_context:
        off = frozenset(lv.name for lv in levels if lv.kind in ("in_context", "memory"))
    chunk = chunk_size(levels, seq_len)
    fast = _Fast(model, levels, batch, stream, learn_stream, differentiable, carry)
    # The fused attention kernels have no double backward, which second-order levels need.
    cache: dict = {**(carry.cache if carry is not None else {}),
                   "double_backward": fast.second_order, "off": _off_modules(model, levels, off),
                   "attention_window": attention_window}
    offset = carry.position if carry is not None else 0
    total, counted, all_logits = None, 0, []
    for start in range(0, seq_len, chunk):
        end = min(start + chunk, seq_len)
        inputs = fast.chunk_inputs(cache)
        logits = functional_call(model, inputs, (x[:, start:end], cache), strict=False)
        target = y[:, start:end]
        # bf16 logits are scored in fp32; fp32 and fp64 as they are.
        scored = logits.float() if logits.element_size() < 4 else logits
        loss_sum = F.cross_entropy(scored.flatten(0, 1), target.flatten(),
                                   ignore_index=-1, reduction="sum")
        total = loss_sum if total is None else total + loss_sum
        counted += int((target >= 0).sum())
        if keep_logits:
            all_logits.append(logits)
        if fast.levels and end - start == chunk and counted:
            # Without a carry, a sequence-lifetime level's update at the sequence's end is
            # reset before any prediction reads it: neither its gradient nor its step is needed.
            wasted = carry is None and end == seq_len
            acting = [lv for lv in fast.levels if lv.name not in off
                      and not (wasted and lv.lifetime == "sequence")]
            fast.accumulate(loss_sum, inputs, batch, _needed(fast, acting))
            _fire_levels(fast, acting, stream, offset, end, timeline)
        if trace is not None:
            trace.append((end, {n: w.detach().clone() for n, w in fast.weights.items()}))
    fast.store_stream()
    if learn_stream:
        stream.position += seq_len
    loss = total / max(counted, 1)
    new_carry = None
    if carry is not None:
        new_carry = Carry(offset + seq_len, fast.carried(),
                          {k: _detached(v) for k, v in cache.items() if k not in _CONTROL})
    return SequenceResult(loss, torch.cat(all_logits, dim=1) if keep_logits else None, counted,
                          new_carry)


def _needed(fast: _Fast, acting: list[LevelDef]) -> list[str]:
    """The fast weights whose gradient some acting level will use (its own, or, for a nested
    CMS level, the faster block's whose initial state it learns)."""
    owners = {lv.name for lv in acting}
    reset_by = {n for lv in acting for n in fast.resets.get(lv.name, ())}
    return [n for n in fast.names() if fast.owner[n].name in owners or n in reset_by]


def _off_modules(model: torch.nn.Module, levels, off: frozenset[str]) -> frozenset[int]:
    """The ids of the sub-modules that switched-off memory levels own; each memory module
    checks its own parts against them."""
    return frozenset(id(model.get_submodule(path)) for lv in levels
                     if lv.kind == "memory" and lv.name in off for path in lv.modules)


def _detached(item):
    if isinstance(item, torch.Tensor):
        return item.detach()
    if isinstance(item, tuple | list):
        return type(item)(_detached(i) for i in item)
    if isinstance(item, dict):
        return {k: _detached(v) for k, v in item.items()}
    return item


def _fire_levels(fast: _Fast, acting: list[LevelDef], stream: StreamState, offset: int,
                 end: int, timeline: list | None) -> None:
    for lv in acting:  # already ordered fastest first by the compiler
        position = offset + end if lv.lifetime == "sequence" else stream.position + end
        if fires(lv, position):
            fast.update(lv)
            if timeline is not None:
                timeline.append((lv.name, position))
