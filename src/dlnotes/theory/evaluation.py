"""Evaluating classifiers beyond one accuracy number, in NumPy.

* :func:`confusion_matrix`, :func:`per_class_accuracy` and :func:`most_confused_pairs` — which
  classes are confused with which;
* :func:`confident_mistakes` — the wrong predictions the model was surest of, the first ones to
  look at;
* :func:`reliability` — calibration: when the model says 80 %, is it right 80 % of the time?
  (a reliability diagram's bins and the expected calibration error);
* :func:`paired_comparison` — do two classifiers differ on the same test images by more than
  chance would give? (McNemar's test on the images where exactly one of them is right.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


def _labels_vector(labels: ArrayLike, name: str, num_classes: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-D array of integer class indices, got {array.dtype} {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got range [{array.min()}, {array.max()}]"
        )
    return array.astype(np.int64)


def confusion_matrix(labels: ArrayLike, predictions: ArrayLike, num_classes: int) -> np.ndarray:
    """Count how often each true class is predicted as each class.

    Args:
        labels: True class of each example, integers in ``[0, num_classes)``.
        predictions: Predicted class of each example, same length.
        num_classes: Number of classes (≥ 1).

    Returns:
        ``(num_classes, num_classes)`` int64 counts: row = true class, column = predicted class.
        Its diagonal holds the correct predictions; row ``k`` sums to the number of examples of
        class ``k``.

    Raises:
        ValueError: For a class count below 1, or labels and predictions that are not integer
            vectors of the same length within range.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    truth = _labels_vector(labels, "labels", num_classes)
    guess = _labels_vector(predictions, "predictions", num_classes)
    if truth.shape != guess.shape:
        raise ValueError(f"need one prediction per label, got {guess.size} and {truth.size}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (truth, guess), 1)
    return matrix


def per_class_accuracy(matrix: ArrayLike) -> np.ndarray:
    """Accuracy on the examples of each class (the recall): the diagonal over the row sums.

    Args:
        matrix: A square confusion matrix (row = true class).

    Returns:
        One value per class in [0, 1], NaN for a class without examples.

    Raises:
        ValueError: If ``matrix`` is not square.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"matrix must be square, got shape {counts.shape}")
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy: np.ndarray = np.where(totals > 0, np.diag(counts) / totals, np.nan)
    return accuracy


def most_confused_pairs(matrix: ArrayLike, count: int) -> list[tuple[int, int, int]]:
    """The largest off-diagonal entries of a confusion matrix: which class is taken for which.

    Args:
        matrix: A square confusion matrix (row = true class).
        count: At most this many pairs (≥ 0).

    Returns:
        ``(true class, predicted class, examples)`` triples, most frequent first, zero counts left
        out; ties in class order.

    Raises:
        ValueError: For a matrix that is not square or a negative count.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"matrix must be square, got shape {counts.shape}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    off = counts * (1 - np.eye(counts.shape[0], dtype=counts.dtype))
    flat = np.argsort(-off, axis=None, kind="stable")[:count]
    rows, columns = np.unravel_index(flat, off.shape)
    return [
        (int(r), int(c), int(off[r, c])) for r, c in zip(rows, columns, strict=True) if off[r, c]
    ]


def confident_mistakes(labels: ArrayLike, probabilities: ArrayLike, count: int) -> np.ndarray:
    """The wrong predictions with the highest confidence, most confident first.

    A confident mistake is the most informative example to look at: a wrong label in the data, a
    class that really looks like another, or a shortcut the model learned.

    Args:
        labels: True class of each example.
        probabilities: ``(N, C)`` predicted probabilities (or any scores whose arg-max is the
            prediction and whose maximum is the confidence).
        count: At most this many indices to return (≥ 0).

    Returns:
        Indices of misclassified examples, sorted by decreasing confidence (fewer than ``count``
        when there are fewer mistakes).

    Raises:
        ValueError: For a negative count or shapes that do not match.
    """
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"probabilities must be (N, C), got shape {scores.shape}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    truth = _labels_vector(labels, "labels", scores.shape[1])
    if truth.size != scores.shape[0]:
        raise ValueError(
            f"need one label per row, got {truth.size} labels and {scores.shape[0]} rows"
        )
    predicted = scores.argmax(axis=1)
    wrong = np.flatnonzero(predicted != truth)
    order = np.argsort(-scores[wrong, predicted[wrong]], kind="stable")
    mistakes: np.ndarray = wrong[order][:count]
    return mistakes


@dataclass(frozen=True)
class Reliability:
    """Calibration of confidences, binned: the data of a reliability diagram.

    Attributes:
        edges: ``bins + 1`` bin edges in [0, 1].
        counts: Examples per bin.
        confidence: Mean confidence of the examples in each bin (NaN for an empty bin).
        accuracy: Fraction of them that are right (NaN for an empty bin).
        ece: Expected calibration error: ``Σ_b (n_b / N) |accuracy_b − confidence_b|``.
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float


def reliability(confidences: ArrayLike, correct: ArrayLike, bins: int = 10) -> Reliability:
    """Bin predictions by confidence and compare each bin's confidence with its accuracy.

    A calibrated model is right on 80 % of the predictions it makes with confidence 0.8: its
    bins lie on the diagonal. The expected calibration error (ECE) summarises the distance
    (Guo et al., 2017). Bins are equal-width on [0, 1]; a confidence of exactly 1 goes into the
    last bin.

    Args:
        confidences: Confidence of each prediction, in [0, 1].
        correct: Whether each prediction is right.
        bins: Number of bins (≥ 1).

    Returns:
        The binned statistics.

    Raises:
        ValueError: For confidences outside [0, 1], mismatched lengths or fewer than one bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    conf = np.asarray(confidences, dtype=np.float64)
    right = _correct_vector(correct, "correct")
    if conf.ndim != 1 or conf.shape != right.shape:
        raise ValueError(f"need one confidence per flag, got shapes {conf.shape} and {right.shape}")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError(f"confidences must lie in [0, 1], got [{conf.min()}, {conf.max()}]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=conf, minlength=bins) / counts
        accuracy = np.bincount(which, weights=right.astype(np.float64), minlength=bins) / counts
    filled = counts > 0
    ece = (
        float(
            np.sum(counts[filled] * np.abs(accuracy[filled] - mean_confidence[filled])) / conf.size
        )
        if conf.size
        else 0.0
    )
    return Reliability(
        edges=edges, counts=counts, confidence=mean_confidence, accuracy=accuracy, ece=ece
    )


@dataclass(frozen=True)
class PairedComparison:
    """Two classifiers judged on the same images.

    Attributes:
        only_a: Images that classifier A gets right and B wrong.
        only_b: Images that B gets right and A wrong.
        z: ``(only_a − only_b) / √(only_a + only_b)`` (0 when they never disagree). Under the
            hypothesis that both are equally good, each disagreement is a fair coin flip, and
            ``z`` is approximately standard normal.
    """

    only_a: int
    only_b: int
    z: float

    @property
    def clear(self) -> bool:
        """Whether the difference exceeds what chance gives at the 95 % level (|z| > 1.96)."""
        return abs(self.z) > 1.96


def _correct_vector(correct: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(correct)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one flag per image (1-D), got shape {array.shape}")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold booleans or 0/1, got values {np.unique(array)[:5]}")
    return array.astype(bool)


def paired_comparison(correct_a: ArrayLike, correct_b: ArrayLike) -> PairedComparison:
    """Compare two classifiers on the same images (McNemar's test, normal approximation).

    Only the images where exactly one classifier is right carry information about which is
    better; the images both get right or both get wrong cancel. This is sharper than comparing
    two accuracies with their separate error bars, which ignores that the same images are used.

    Args:
        correct_a: One flag per image: whether A classified it correctly.
        correct_b: The same for B, in the same image order.

    Returns:
        The counts of disagreements and the test statistic.

    Raises:
        ValueError: For inputs that are not 1-D boolean flags of the same length.
    """
    a = _correct_vector(correct_a, "correct_a")
    b = _correct_vector(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"need one flag per image for both, got {a.size} and {b.size}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    total = only_a + only_b
    z = (only_a - only_b) / math.sqrt(total) if total else 0.0
    return PairedComparison(only_a=only_a, only_b=only_b, z=z)
