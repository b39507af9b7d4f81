"""Reading a context longer than one training sequence, in windows of ``seq_len``.

This is the reader that evaluation tasks, sampling and the lm-eval adapter use. It scores every
position of ``tokens`` and returns the per-position next-token losses and greedy predictions.

Contract (callers rely on it):

* ``tokens`` is ``(B, T)`` of byte ids, any ``T >= 2``; position ``t``'s loss is the loss of
  predicting ``tokens[:, t + 1]``, so ``losses`` and ``predictions`` are ``(B, T - 1)``.
* ``carry=True``: the windows are read one after the other and everything a level holds (fast
  weights, memories, attention's cache, the stream) is carried from one window to the next, so
  a long context is read once, never re-read. ``carry=False``: each window starts afresh, as a
  training sequence does (the baseline that shows what carrying is worth).
* ``off``: names of levels whose updates are switched off while reading (they stay at the
  state they start the context with). ``reset``: names of stream-lifetime levels whose state is
  reset to its initial value before reading.
* ``learn_stream=True`` lets stream-lifetime levels keep learning while reading (test-time
  learning); the caller's ``stream`` is then changed in place. Without it the stream levels
  are switched off while reading (they keep the state they start with) and the caller's
  ``stream`` is never changed (``reset`` then applies to a copy).

Choices (see docs/training.md, "State at inference"): carried windows limit softmax attention to
the last ``attention_window`` keys (default ``seq_len``), a sliding window of the training
length, since RoPE is relative and those are the distances training saw; carried state is
detached (no graph across windows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nestgraph.runtime.engine import read_sequence, stream_weight_names
from nestgraph.runtime.levels import LevelDef, in_context_levels
from nestgraph.runtime.stream import Carry, StreamState


@dataclass
class LongResult:
    losses: torch.Tensor  # (B, T - 1) next-token loss in nats at each position
    predictions: torch.Tensor  # (B, T - 1) greedy next-token prediction at each position


def read_long(model: torch.nn.Module, schedule: tuple[LevelDef, ...], tokens: torch.Tensor, *,
              seq_len: int, stream: StreamState, carry: bool = True,
              learn_stream: bool = False, off: frozenset[str] = frozenset(),
              reset: frozenset[str] = frozenset(),
              attention_window: int | None = None) -> LongResult:
    """Score every position of ``tokens`` (see the module docstring for the contract)."""
    if tokens.shape[1] < 2:
        raise ValueError("read_long needs at least 2 tokens (one input, one target)")
    stream, off = prepare_stream(model, schedule, stream, learn_stream, off, reset)
    x, y = tokens[:, :-1], tokens[:, 1:]
    state = Carry() if carry else None
    losses, predictions = [], []
    for start in range(0, x.shape[1], seq_len):
        xs, ys = x[:, start:start + seq_len], y[:, start:start + seq_len]
        out = read_window(model, schedule, xs, ys, stream, state, learn_stream=learn_stream,
                          off=off, attention_window=attention_window or seq_len)
        state = out.carry
        logits = out.logits.detach().float()
        losses.append(F.cross_entropy(logits.transpose(1, 2), ys, reduction="none"))
        predictions.append(logits.argmax(-1))
    return LongResult(torch.cat(losses, dim=1), torch.cat(predictions, dim=1))


def prepare_stream(model, schedule, stream: StreamState, learn_stream: bool,
                   off: frozenset[str], reset: frozenset[str]):
    """The stream to read with, and the levels switched off: without ``learn_stream`` the
    stream levels are off and a reset applies to a copy, so the caller's stream is kept."""
    if reset and not learn_stream:
        stream = stream.copy()
    stream.reset(set(stream_weight_names(model, schedule, only=reset)))
    if not learn_stream:
        off = off | {lv.name for lv in in_context_levels(schedule) if lv.lifetime == "stream"}
    return stream, frozenset(off)


def read_window(model, schedule, x, y, stream: StreamState, carry: Carry | None, *,
                learn_stream: bool, off: frozenset[str], attention_window: int):
    """One window, scored without building a graph through the learning (logits kept)."""
    learning = bool(in_context_levels(schedule))
    with torch.enable_grad() if learning else torch.no_grad():
        return read_sequence(model, schedule, x, y, stream, learn_stream=learn_stream,
                             differentiable=False, keep_logits=True, off=off, carry=carry,
                             attention_window=attention_window)
