"""Tier 1: the preference arithmetic on hand-computed numbers."""

import pytest

from rlaif.numbers import weighted_mean
from rlaif.preference import label_for, order_probabilities, position_consistent


def test_orders_unflip_the_second_view():
    # judge says P(first)=0.8 for (a,b) and P(first)=0.3 for (b,a): a preferred 0.8 and 0.7
    assert order_probabilities(0.8, 0.3) == pytest.approx((0.8, 0.7))


def test_a_slot_biased_judge_averages_to_half():
    # always 0.9 for whatever is shown first: P(a)=0.9 first, 0.1 second -> mean 0.5
    orders = order_probabilities(0.9, 0.9)
    assert orders == pytest.approx((0.9, 0.1))
    assert sum(orders) / 2 == pytest.approx(0.5)
    assert not position_consistent(orders)
    assert label_for(0.5, 0.05) == "tie"


def test_invert_flips_the_pick():
    # "which is MORE harmful?" -> the judge's pick is the rejected response
    assert order_probabilities(0.8, 0.3, invert=True) == pytest.approx((0.2, 0.3))


def test_clamp_each_order():
    assert order_probabilities(0.99, 0.01, clamp=(0.4, 0.6)) == pytest.approx((0.6, 0.6))


def test_consistency_and_labels():
    assert position_consistent((0.7, 0.6)) and position_consistent((0.2, 0.4))
    assert not position_consistent((0.7, 0.4)) and not position_consistent((0.5, 0.9))
    assert label_for(0.56, 0.05) == "a" and label_for(0.44, 0.05) == "b" and label_for(0.55, 0.05) == "tie"
    assert label_for(0.5001, 0.0) == "a"


def test_weighted_mean():
    assert weighted_mean([0.9, 0.3], [3, 1]) == pytest.approx((2.7 + 0.3) / 4)
