"""Continual-learning metrics against examples worked out by hand."""

from __future__ import annotations

import pytest

from nestgraph.evaluation import metrics

# Loss of domain j (column) after phase i (row); before any phase: BEFORE.
R = [[1.0, 3.0, 4.0],
     [2.0, 1.5, 3.5],
     [2.5, 2.0, 1.0]]
BEFORE = [5.0, 4.0, 4.5]


def test_average_final_is_the_mean_of_the_last_row():
    assert metrics.average_final(R) == pytest.approx((2.5 + 2.0 + 1.0) / 3)


def test_backward_transfer_is_negative_when_earlier_losses_rise():
    # domain 0: 1.0 after its phase, 2.5 at the end; domain 1: 1.5, then 2.0
    assert metrics.backward_transfer(R) == pytest.approx(((1.0 - 2.5) + (1.5 - 2.0)) / 2)


def test_forward_transfer_compares_with_the_starting_model():
    # domain 1 before phase 2: 3.0 (start 4.0); domain 2 before phase 3: 3.5 (start 4.5)
    assert metrics.forward_transfer(R, BEFORE) == pytest.approx(((4.0 - 3.0) + (4.5 - 3.5)) / 2)


def test_forgetting_measures_from_the_best_earlier_loss():
    # domain 0: best 1.0, final 2.5; domain 1: best min(3.0, 1.5) = 1.5, final 2.0
    assert metrics.forgetting(R) == pytest.approx((1.5 + 0.5) / 2)


def test_a_loss_that_keeps_falling_is_negative_forgetting_and_positive_bwt():
    falling = [[2.0, 3.0], [1.0, 1.0]]
    assert metrics.forgetting(falling) == pytest.approx(-1.0)
    assert metrics.backward_transfer(falling) == pytest.approx(1.0)


def test_one_domain_has_no_transfer():
    assert metrics.summary([[1.0]], [2.0]) == {"average_final": 1.0, "bwt": 0.0, "fwt": 0.0,
                                               "forgetting": 0.0}


def test_a_matrix_that_is_not_square_is_refused():
    with pytest.raises(ValueError, match="square"):
        metrics.backward_transfer([[1.0, 2.0]])
    with pytest.raises(ValueError, match="starting loss"):
        metrics.forward_transfer(R, [1.0])
