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
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from nestgraph.runtime.fast_weights import FastWeights
from nestgraph.runtime.levels import (
    LevelDef,
    fires,
    in_context_levels,
    owned_parameters,
)
from nestgraph.runtime.mode import Cache, ReadMode
from nestgraph.runtime.stream import Carry, SequenceResult, StreamState


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


def read_sequence(model: torch.nn.Module, levels: tuple[LevelDef, ...], x: torch.Tensor,
                  y: torch.Tensor, stream: StreamState, *, learn_stream: bool = True,
                  differentiable: bool = True, keep_logits: bool = False,
                  in_context: bool = True, off: frozenset[str] = frozenset(),
                  carry: Carry | None = None, attention_window: int = 0,
                  timeline: list | None = None, trace: list | None = None,
                  reduce_stream: Callable[[torch.Tensor], torch.Tensor] | None = None
                  ) -> SequenceResult:
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
    ``reduce_stream``, under data parallelism, turns a stream level's accumulated signal into
    its mean over the ranks just before the level fires, so that it fires once, with the
    global signal, and every rank steps its stream weights alike.
    """
    batch, seq_len = x.shape
    if not in_context:
        off = frozenset(lv.name for lv in levels if lv.kind in ("in_context", "memory"))
    chunk = chunk_size(levels, seq_len)
    fast = FastWeights(model, levels, batch, stream, learn_stream, differentiable, carry,
                       reduce_stream)
    # The fused attention kernels have no double backward, which second-order levels need.
    cache = Cache(carry.cache if carry is not None else None,
                  ReadMode(fast.double_backward, _off_modules(model, levels, off),
                           attention_window))
    offset = carry.position if carry is not None else 0
    # Counted targets up to every position, read to the host once per call rather than once
    # per chunk (on a GPU each read is a synchronisation).
    counted_to = (y >= 0).sum(0).cumsum(0).tolist()
    total, counted, all_logits = None, 0, []
    try:
        for start in range(0, seq_len, chunk):
            end = min(start + chunk, seq_len)
            fast.new_chunk()
            inputs = fast.chunk_inputs(cache)
            logits = functional_call(model, inputs, (x[:, start:end], cache), strict=False)
            target = y[:, start:end]
            # bf16 logits are scored in fp32; fp32 and fp64 as they are.
            scored = logits.float() if logits.element_size() < 4 else logits
            loss_sum = F.cross_entropy(scored.flatten(0, 1), target.flatten(),
                                       ignore_index=-1, reduction="sum")
            total = loss_sum if total is None else total + loss_sum
            counted = counted_to[end - 1]
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
    finally:
        fast.close()  # the hooks of truncated levels
    fast.store_stream()
    if learn_stream:
        stream.position += seq_len
    loss = total / max(counted, 1)
    new_carry = None
    if carry is not None:
        new_carry = Carry(offset + seq_len, fast.carried(),
                          {k: _detached(v) for k, v in cache.items()})
    return SequenceResult(loss, torch.cat(all_logits, dim=1) if keep_logits else None, counted,
                          new_carry)


def _needed(fast: FastWeights, acting: list[LevelDef]) -> list[str]:
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


def _fire_levels(fast: FastWeights, acting: list[LevelDef], stream: StreamState, offset: int,
                 end: int, timeline: list | None) -> None:
    for lv in acting:  # already ordered fastest first by the compiler
        position = offset + end if lv.lifetime == "sequence" else stream.position + end
        if fires(lv, position):
            fast.update(lv)
            if timeline is not None:
                timeline.append((lv.name, position))
