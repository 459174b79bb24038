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


def test_confusion_matrix_and_per_class_accuracy() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0, 1])
    matrix = evaluation.confusion_matrix(labels, predicted, 4)
    np.testing.assert_array_equal(matrix, [[1, 1, 0, 0], [1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert matrix.sum() == len(labels) and np.trace(matrix) == np.sum(labels == predicted)
    accuracy = evaluation.per_class_accuracy(matrix)
    np.testing.assert_allclose(accuracy[:3], [0.5, 2 / 3, 0.0])
    assert np.isnan(accuracy[3])  # no example of class 3
    assert evaluation.most_confused_pairs(matrix, 5) == [(0, 1, 1), (1, 0, 1), (2, 1, 1)]
    assert evaluation.most_confused_pairs(matrix, 1) == [(0, 1, 1)]
    assert evaluation.most_confused_pairs(np.eye(3, dtype=int), 3) == []  # no confusion


def test_confident_mistakes_are_wrong_and_sorted() -> None:
    labels = np.array([0, 1, 2, 0])
    probabilities = np.array([[0.1, 0.9, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.4, 0.35, 0.25]])
    np.testing.assert_array_equal(evaluation.confident_mistakes(labels, probabilities, 5), [0, 2])
    np.testing.assert_array_equal(evaluation.confident_mistakes(labels, probabilities, 1), [0])
    assert evaluation.confident_mistakes(labels, probabilities, 0).size == 0


def test_reliability_bins_and_expected_calibration_error() -> None:
    confidences = np.array([0.05, 0.15, 0.95, 1.0, 0.92, 0.55])
    correct = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    result = evaluation.reliability(confidences, correct, bins=10)
    assert result.counts.tolist() == [1, 1, 0, 0, 0, 1, 0, 0, 0, 3]  # 1.0 is in the last bin
    assert result.accuracy[9] == pytest.approx(2 / 3)
    assert result.confidence[9] == pytest.approx((0.95 + 1.0 + 0.92) / 3)
    assert np.isnan(result.accuracy[2])
    expected = (0.05 + 0.15 + 0.45 + 3 * abs(2 / 3 - 2.87 / 3)) / 6
    assert result.ece == pytest.approx(expected)
    # The bins' accuracies, weighted by their counts, give the overall accuracy back.
    filled = result.counts > 0
    assert np.sum(result.counts[filled] * result.accuracy[filled]) / 6 == pytest.approx(0.5)
    # A calibrated predictor: right with the probability it states.
    rng = np.random.default_rng(0)
    stated = rng.uniform(size=200_000)
    assert evaluation.reliability(stated, rng.uniform(size=stated.size) < stated).ece < 0.01


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: evaluation.confusion_matrix([0, 3], [0, 1], 3), r"labels must lie in \[0, 3\)"),
        (lambda: evaluation.confusion_matrix([0.5], [0], 3), "integer class indices"),
        (lambda: evaluation.confusion_matrix([0, 1], [0], 3), "got 1 and 2"),
        (lambda: evaluation.per_class_accuracy(np.ones((2, 3))), r"square, got shape \(2, 3\)"),
        (lambda: evaluation.confident_mistakes([0], [[1.0]], -1), "non-negative, got -1"),
        (lambda: evaluation.most_confused_pairs(np.eye(2), -2), "non-negative, got -2"),
        (lambda: evaluation.reliability([1.5], [True]), r"in \[0, 1\], got \[1.5, 1.5\]"),
        (lambda: evaluation.reliability([0.5], [True], bins=0), "at least 1, got 0"),
    ],
)
def test_bad_inputs_are_named(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
