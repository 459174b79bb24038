"""What becomes of the predictions: the pseudo-labels' CSV manifest, and how a confidence
threshold trades the accuracy of the kept labels against how many are kept.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlnotes.runtime import storage


def write_manifest(
    out: str | os.PathLike[str],
    paths: Sequence[str],
    labels: np.ndarray,
    confidence: np.ndarray,
    class_ids: Sequence[str],
    *,
    threshold: float = 0.0,
) -> int:
    """Write ``path,wnid,confidence`` rows for predictions at or above ``threshold``, atomically.

    Args:
        out: CSV file to write (its folder is created).
        paths: Image files.
        labels: Predicted dataset label per image.
        confidence: Confidence per image.
        class_ids: The dataset's class ids.
        threshold: Minimum confidence in [0, 1] to keep a row.

    Returns:
        Number of rows written.

    Raises:
        ValueError: For a threshold outside [0, 1] or mismatched lengths.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if not len(paths) == len(labels) == len(confidence):
        raise ValueError(
            f"got {len(paths)} paths, {len(labels)} labels, {len(confidence)} confidences"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = 0
    with storage.atomic_path(out) as partial, partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "wnid", "confidence"])
        for path, label, value in zip(paths, labels, confidence, strict=True):
            if value >= threshold:
                writer.writerow([path, class_ids[int(label)], f"{value:.6f}"])
                kept += 1
    return kept


def threshold_curve(
    correct: np.ndarray, confidence: np.ndarray, thresholds: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of the kept predictions and coverage (fraction kept) for each threshold.

    Args:
        correct: Boolean per image: was the prediction right.
        confidence: Confidence per image.
        thresholds: Thresholds to evaluate.

    Returns:
        ``(accuracy, coverage)`` arrays; accuracy is NaN where nothing is kept.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=np.float64)
    accuracy, coverage = [], []
    for threshold in thresholds:
        kept = confidence >= threshold
        coverage.append(kept.mean())
        accuracy.append(correct[kept].mean() if kept.any() else np.nan)
    return np.array(accuracy), np.array(coverage)
