"""The ImageNet-1k classes: their WordNet ids, and predictions restricted to a dataset's classes.

Tiny ImageNet's 200 classes are ImageNet-1k classes, named by the same WordNet ids, so an ImageNet
classifier's logits for exactly those classes can be picked out (:func:`class_logit_indices`) and
the arg-max taken among them (:func:`restrict_predictions`).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any

import numpy as np

BACKGROUND_OFFSET = 1


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (shipped with the package)."""
    text = (
        importlib.resources.files("dlnotes").joinpath("resources/imagenet1k_wnids.txt").read_text()
    )
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def class_logit_indices(
    class_ids: Sequence[str], *, background_offset: int = BACKGROUND_OFFSET
) -> np.ndarray:
    """Indices of a dataset's classes among the outputs of an ImageNet classifier.

    Args:
        class_ids: The dataset's WordNet ids (e.g. from ``wnids.txt``).
        background_offset: 1 for models with a background logit at index 0 (TF Hub's
            MobileNetV2), 0 for 1000-way models (``keras.applications``).

    Returns:
        int64 array: output index of each class.

    Raises:
        ValueError: Naming the classes that are not ImageNet-1k classes.
    """
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    missing = [wnid for wnid in class_ids if wnid not in index]
    if missing:
        raise ValueError(f"classes not in ImageNet-1k, the model cannot predict them: {missing}")
    return np.array([index[wnid] + background_offset for wnid in class_ids], dtype=np.int64)


def restrict_predictions(logits: Any, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predict among the dataset's classes only: softmax over their logits, then argmax.

    The winning ImageNet class is often not one of the dataset's classes (with a subset of Tiny
    ImageNet, any class outside the subset). Keeping only the dataset's logits and renormalising
    answers the right question: which of *these* classes is it?

    Args:
        logits: ``(N, outputs)`` logits of an ImageNet classifier.
        indices: Output index of each dataset class (:func:`class_logit_indices`).

    Returns:
        ``(labels, confidence)``: dataset label indices ``(N,)`` and the renormalised
        probability of the chosen class ``(N,)``.

    Raises:
        ValueError: If an index is outside the logits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, outputs), got {logits.shape}")
    if indices.size == 0 or indices.min() < 0 or indices.max() >= logits.shape[1]:
        raise ValueError(
            f"class indices must lie in [0, {logits.shape[1]}), got {indices.tolist()}"
        )
    restricted = logits[:, indices]
    restricted = restricted - restricted.max(axis=1, keepdims=True)
    probabilities = np.exp(restricted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = probabilities.argmax(axis=1)
    return labels, probabilities[np.arange(len(labels)), labels]
