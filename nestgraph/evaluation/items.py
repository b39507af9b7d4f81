"""What a generated example is, and how it is scored from the reader's greedy predictions."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Item:
    """A text and the byte spans of its answers (``text[start:end]``), each scored as a whole."""

    text: bytes
    answers: tuple[tuple[int, int], ...]

    def answer_bytes(self) -> list[bytes]:
        return [self.text[s:e] for s, e in self.answers]


def batch_tokens(items: list[Item]) -> torch.Tensor:
    """(B, T) byte ids; every item of a batch has the same length."""
    lengths = {len(it.text) for it in items}
    if len(lengths) != 1:
        raise ValueError(f"items of one batch differ in length: {sorted(lengths)}")
    return torch.tensor([list(it.text) for it in items], dtype=torch.long)


def exact_matches(items: list[Item], predictions: torch.Tensor) -> list[list[bool]]:
    """Per item, per answer: were all its bytes predicted (teacher-forced greedy)?

    ``predictions[:, t]`` is the prediction of byte ``t + 1`` (`read_long`'s contract), so the
    answer ``text[s:e]`` is right when ``predictions[:, s - 1:e - 1]`` equals it.
    """
    out = []
    for row, item in enumerate(items):
        got = predictions[row].tolist()
        out.append([bytes(got[s - 1:e - 1]) == item.text[s:e] for s, e in item.answers])
    return out
