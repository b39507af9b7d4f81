"""Scoring with the long-context reader: exact-match accuracy of items, held-out loss."""

from __future__ import annotations

import math

import torch

from nestgraph.evaluation.items import Item, batch_tokens, exact_matches
from nestgraph.evaluation.loaded import Loaded
from nestgraph.runtime.reader import read_long


def read(loaded: Loaded, tokens: torch.Tensor, *, carry: bool,
         off: frozenset[str] = frozenset(), reset: frozenset[str] = frozenset(),
         stream=None):
    """`read_long` on the run's model and a copy of its stream (evaluation never changes it).

    Given `stream` (a copy the caller owns), stream levels learn from this read into it.
    """
    import copy

    learn = stream is not None
    return read_long(loaded.model, loaded.schedule, tokens, seq_len=loaded.seq_len,
                     stream=stream if learn else copy.deepcopy(loaded.stream), carry=carry,
                     off=off, reset=reset, learn_stream=learn)


def accuracy(loaded: Loaded, items: list[Item], *, batch: int = 8,
             carry: bool | None = None) -> dict:
    """Exact-match accuracy over every answer of `items` (all of one length).

    By default a context longer than the training sequence is read in windows with the state
    carried (``carry=True``); one that fits is read as a training sequence is. ``carry=False``
    reads every window afresh (the baseline that shows what carrying is worth).
    """
    if carry is None:
        carry = len(items[0].text) - 1 > loaded.seq_len
    right = total = 0
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        result = read(loaded, batch_tokens(chunk), carry=carry)
        for row in exact_matches(chunk, result.predictions):
            right += sum(row)
            total += len(row)
    return {"accuracy": right / max(total, 1), "correct": right, "answers": total,
            "carry": carry}


def windows_bpb(loaded: Loaded, windows: list[torch.Tensor], *, learn_stream: bool = False,
                **ablation) -> float:
    """Held-out loss in bits per byte over windows of token ids (each (B, seq_len + 1)): the
    summed loss in bits over the bytes the targets stand for (with bytes as tokens, the mean).

    ``learn_stream``: stream levels learn at test time, window after window, in one copy of
    the run's stream, updating at their period as in training (a window's later positions
    see what they learned at its earlier ones).
    """
    import copy

    stream = copy.deepcopy(loaded.stream) if learn_stream else None
    total = count = 0.0
    for tokens in windows:
        losses = read(loaded, tokens, carry=False, stream=stream, **ablation).losses
        total += float(losses.sum())
        count += float(target_bytes(loaded, tokens).sum())
    return total / max(count, 1) / math.log(2)


def position_bpb(loaded: Loaded, windows: list[torch.Tensor], **ablation) -> list[float]:
    """Bits per byte at each position of a window over the held-out windows (with bytes as
    tokens, the mean loss in bits there)."""
    rows = [read(loaded, tokens, carry=False, **ablation).losses for tokens in windows]
    if loaded.bytes_tokens:
        return (torch.cat(rows).mean(0) / math.log(2)).tolist()
    covered = torch.cat([target_bytes(loaded, tokens) for tokens in windows]).sum(0)
    return (torch.cat(rows).sum(0) / covered.clamp(min=1) / math.log(2)).tolist()


def target_bytes(loaded: Loaded, tokens: torch.Tensor) -> torch.Tensor:
    """The bytes each target of `tokens` stands for, (B, T - 1): ones for byte tokens."""
    targets = tokens[:, 1:].long()
    if loaded.bytes_tokens:
        return torch.ones_like(targets)
    return loaded.tokenizer.lengths[targets]


def heldout_windows(data: torch.Tensor, *, seq_len: int, batch: int,
                    batches: int) -> list[torch.Tensor]:
    """Evenly spread, non-overlapping windows of ``seq_len + 1`` bytes, as training's held-out
    evaluation takes them (`runtime.data.heldout_batches`)."""
    from nestgraph.runtime.train.data import heldout_batches

    out = []
    for x, y in heldout_batches(data, batch=batch, seq_len=seq_len, max_batches=batches):
        out.append(torch.cat([x, y[:, -1:]], dim=1).long())
    return out
