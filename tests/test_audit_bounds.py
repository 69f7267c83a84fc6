"""Audit bounds against hand-computed values."""

import math

import numpy as np
import pytest

from audit.bounds import (
    clopper_pearson,
    epsilon_at,
    epsilon_lower_bound,
    one_run_epsilon_lower_bound,
)


def test_clopper_pearson_known_values():
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.18709, abs=1e-5) and high == pytest.approx(0.81291, abs=1e-5)
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))  # closed form
    assert clopper_pearson(10, 10)[0] == pytest.approx(0.025 ** (1 / 10))
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_threshold_bound_matches_the_formula():
    # all 100 members flagged, 0 of 100 non-members: TPR_lo = 0.025^(1/100), FPR_hi = 1 - that
    tpr_lo = 0.025 ** (1 / 100)
    fpr_hi = 1 - tpr_lo
    expected = max(math.log(tpr_lo / fpr_hi), math.log((1 - fpr_hi) / (1 - tpr_lo)))
    assert epsilon_at(100, 100, 0, 100, delta=0.0) == pytest.approx(expected)
    assert epsilon_at(50, 100, 50, 100, delta=1e-5) < 0  # a coin flip proves nothing


def test_best_threshold_and_no_evidence():
    rng = np.random.default_rng(0)
    separable = epsilon_lower_bound(rng.normal(5, 1, 200), rng.normal(0, 1, 200), 1e-5)
    same = epsilon_lower_bound(rng.normal(0, 1, 200), rng.normal(0, 1, 200), 1e-5)
    assert separable > 2.0 and same == 0.0


def test_one_run_bound_by_hand():
    # 100 of 100 right: p^100 = 0.05 -> p = 0.05^(1/100), epsilon = ln(p / (1 - p))
    p = 0.05 ** (1 / 100)
    assert one_run_epsilon_lower_bound(100, 100) == pytest.approx(math.log(p / (1 - p)), rel=1e-6)
    assert one_run_epsilon_lower_bound(100, 50) == 0.0
    assert 0 < one_run_epsilon_lower_bound(100, 70) < one_run_epsilon_lower_bound(100, 90)
