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
  learning); the caller's ``stream`` is then changed in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nestgraph.runtime.engine import StreamState, in_context_levels, read_sequence
from nestgraph.runtime.levels import LevelDef


@dataclass
class LongResult:
    losses: torch.Tensor  # (B, T - 1) next-token loss in nats at each position
    predictions: torch.Tensor  # (B, T - 1) greedy next-token prediction at each position


def read_long(model: torch.nn.Module, schedule: tuple[LevelDef, ...], tokens: torch.Tensor, *,
              seq_len: int, stream: StreamState, carry: bool = True,
              learn_stream: bool = False, off: frozenset[str] = frozenset(),
              reset: frozenset[str] = frozenset()) -> LongResult:
    """Score every position of ``tokens`` (see the module docstring for the contract)."""
    if off or reset or carry:
        raise NotImplementedError("off, reset and carry are not implemented yet")
    x, y = tokens[:, :-1], tokens[:, 1:]
    learning = bool(in_context_levels(schedule))
    losses, predictions = [], []
    for start in range(0, x.shape[1], seq_len):
        xs, ys = x[:, start:start + seq_len], y[:, start:start + seq_len]
        with torch.enable_grad() if learning else torch.no_grad():
            out = read_sequence(model, schedule, xs, ys, stream, learn_stream=learn_stream,
                                differentiable=False, keep_logits=True)
        logits = out.logits.detach().float()
        losses.append(F.cross_entropy(logits.transpose(1, 2), ys, reduction="none"))
        predictions.append(logits.argmax(-1))
    return LongResult(torch.cat(losses, dim=1), torch.cat(predictions, dim=1))
