"""Exact-match scoring of answers from next-byte predictions."""

from __future__ import annotations

import pytest
import torch

from nestgraph.evaluation.items import Item, batch_tokens, exact_matches


def _perfect(item: Item) -> torch.Tensor:
    # predictions[t] is the prediction of byte t + 1
    return torch.tensor([list(item.text[1:])])


def test_a_perfect_prediction_gets_every_answer():
    item = Item(b"#ab|ab.", ((4, 6),))
    assert exact_matches([item], _perfect(item)) == [[True]]


def test_one_wrong_byte_of_an_answer_loses_the_whole_answer():
    item = Item(b"k=12;k=12;", ((2, 4), (7, 9)))
    wrong = _perfect(item).clone()
    wrong[0, 7] = ord("9")  # the prediction of text[8], the second answer's last byte
    assert exact_matches([item], wrong) == [[True, False]]


def test_a_batch_needs_equal_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        batch_tokens([Item(b"abc", ()), Item(b"ab", ())])
    assert batch_tokens([Item(b"ab", ())]).tolist() == [[97, 98]]
