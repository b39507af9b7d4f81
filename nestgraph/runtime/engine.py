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
state from batch to batch (see `StreamState`).
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

    Shared by the sequences of a batch (and, under data parallelism, averaged across ranks by
    `nestgraph.runtime.distributed.average_stream`), saved with every checkpoint.
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


@dataclass
class SequenceResult:
    loss: torch.Tensor  # mean next-token loss over the counted targets (a graph to backprop)
    logits: torch.Tensor | None  # (B, T, vocab) when asked for
    tokens: int  # targets counted


def in_context_levels(levels: tuple[LevelDef, ...]) -> list[LevelDef]:
    return [lv for lv in levels if lv.kind == "in_context"]


def chunk_size(levels: tuple[LevelDef, ...], seq_len: int) -> int:
    """Greatest common divisor of the in-context periods; the whole sequence when there are none."""
    periods = [lv.period for lv in in_context_levels(levels)]
    return math.gcd(*periods) if periods else seq_len


def init_stream(model: torch.nn.Module, levels: tuple[LevelDef, ...]) -> StreamState:
    """Stream-lifetime weights start from the module's initial values."""
    stream = StreamState()
    for lv in in_context_levels(levels):
        if lv.lifetime == "stream":
            for name, p in owned_parameters(model, lv).items():
                stream.weights[name] = p.detach().clone()
                stream.accum[name] = torch.zeros_like(p)
    return stream


class _Fast:
    """The fast weights of one batch, with their accumulators and momentum."""

    def __init__(self, model, levels, batch, stream, learn_stream, differentiable):
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
                    w = stream.weights[name].to(p.device, p.dtype)
                    self.weights[name] = w.detach().requires_grad_(True)
                    self.accum[name] = stream.accum[name].to(p.device, p.dtype, copy=True)
                    v = stream.velocity.get(name)
                    self.velocity[name] = None if v is None else v.to(p.device, p.dtype)
        # Nested CMS: a slower level's in-context copy of a faster block's initial state, and
        # the signal it learns it from (the faster block's gradients since its last reset).
        self.resets = {lv.name: list(parameters_under(model, lv.resets)) for lv in self.levels
                       if lv.resets}
        self.init = {n: self.weights[n] for names in self.resets.values() for n in names}
        self.init_accum = {n: torch.zeros_like(self.accum[n]) for n in self.init}

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
                   batch: int) -> None:
        """Add d(chunk loss)/d(fast weights) to each accumulator (Eq. 71's inner sum)."""
        names = self.names()
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
            batched = lv.lifetime == "sequence"
            new, self.velocity[n] = gd_step(lv.rule, self.weights[n], self.accum[n],
                                            self.velocity[n], batched)
            if lv.lifetime == "stream" or not self.differentiable:
                new = new.detach().requires_grad_(True)
            self.weights[n] = new
            self.accum[n] = torch.zeros_like(self.accum[n])
        for n in self.resets.get(lv.name, ()):
            self._reset(lv, n)

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
        for n, lv in self.owner.items():
            if lv.lifetime == "stream":
                self.stream.weights[n] = self.weights[n].detach().clone()
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
                  in_context: bool = True, timeline: list | None = None,
                  trace: list | None = None) -> SequenceResult:
    """Read ``x`` (B, T), predicting ``y`` (targets < 0 are not counted), learning in context.

    ``learn_stream=False`` reads without changing the stream (evaluation, sampling).
    ``differentiable=False`` keeps in-context learning but builds no graph through it, for
    reading without training (evaluation, sampling): in-context levels learn exactly as in
    training, so there is no train/test mismatch.
    ``in_context=False`` switches in-context learning off: no level updates while the sequence
    is read and every memory stays at its initial state (an ablation, e.g. to measure what
    test-time learning is worth).
    ``timeline``, when given, receives ``(level, position)`` for every in-context update;
    ``trace`` receives ``(position, fast weights)`` after every chunk (for tests).
    """
    batch, seq_len = x.shape
    chunk = chunk_size(levels, seq_len)
    fast = _Fast(model, levels, batch, stream, learn_stream, differentiable)
    # The fused attention kernels have no double backward, which second-order levels need.
    cache: dict = {"double_backward": fast.second_order, "frozen": not in_context}
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
        if in_context and fast.levels and end - start == chunk and counted:
            fast.accumulate(loss_sum, inputs, batch)
            _fire_levels(fast, stream, start, end, timeline)
        if trace is not None:
            trace.append((end, {n: w.detach().clone() for n, w in fast.weights.items()}))
    fast.store_stream()
    if learn_stream:
        stream.position += seq_len
    loss = total / max(counted, 1)
    return SequenceResult(loss, torch.cat(all_logits, dim=1) if keep_logits else None, counted)


def _fire_levels(fast: _Fast, stream: StreamState, start: int, end: int,
                 timeline: list | None) -> None:
    for lv in fast.levels:  # already ordered fastest first by the compiler
        position = end if lv.lifetime == "sequence" else stream.position + end
        if fires(lv, position):
            fast.update(lv)
            if timeline is not None:
                timeline.append((lv.name, position))
