"""Evaluating classifiers beyond one accuracy number, in NumPy.

* :func:`paired_comparison` — do two classifiers differ on the same test images by more than
  chance would give? (McNemar's test on the images where exactly one of them is right.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


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
