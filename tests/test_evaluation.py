"""Evaluating classifiers beyond one accuracy (dlnotes.theory.evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlnotes.theory import evaluation


def test_paired_comparison_counts_only_the_disagreements() -> None:
    a = np.array([1, 1, 1, 0, 0, 1, 1, 1], dtype=bool)
    b = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    result = evaluation.paired_comparison(a, b)
    assert (result.only_a, result.only_b) == (4, 1)
    assert result.z == pytest.approx(3 / math.sqrt(5))
    assert not result.clear
    assert evaluation.paired_comparison(a, a) == evaluation.PairedComparison(0, 0, 0.0)
    many = evaluation.paired_comparison([1] * 30 + [0] * 5, [0] * 30 + [1] * 5)
    assert many.clear and many.z > 0


def test_paired_comparison_is_calibrated_for_equal_classifiers() -> None:
    # Two equally good, independent classifiers: |z| > 1.96 in about 5 % of repetitions.
    rng = np.random.default_rng(0)
    flagged = [
        evaluation.paired_comparison(rng.random(500) < 0.7, rng.random(500) < 0.7).clear
        for _ in range(2000)
    ]
    assert 0.03 < np.mean(flagged) < 0.07


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([[True]], [True], r"correct_a must be one flag per image \(1-D\), got shape \(1, 1\)"),
        ([True], [2], r"correct_b must hold booleans or 0/1, got values \[2\]"),
        ([True, False], [True], "got 2 and 1"),
    ],
)
def test_paired_comparison_rejects_bad_flags(a, b, message) -> None:
    with pytest.raises(ValueError, match=message):
        evaluation.paired_comparison(a, b)
