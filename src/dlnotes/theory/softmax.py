"""Softmax, its Jacobian, and the cross-entropy losses with their hand-derived gradients.

Conventions: vectors are 1-D arrays. A gradient ``de_dx`` has the shape of ``x``; in the text it is
the column vector (∂e/∂x)ᵀ. Every function is checked against a numerical gradient
(:mod:`dlnotes.theory.gradcheck`) and ``tf.GradientTape`` in the tests and the chapters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dlnotes.theory._arrays import Array, as_float_array


def _shifted_logits(z: ArrayLike) -> Array:
    """``z − max(z)`` along the last axis: the largest exponent becomes ``exp(0) = 1``."""
    logits = as_float_array(z, "z")
    if logits.ndim == 0:
        raise ValueError(f"z must have at least one axis, got a scalar {logits!r}")
    shifted: Array = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted


def softmax(z: ArrayLike) -> Array:
    """Softmax along the last axis, computed stably by subtracting the maximum first.

    ``softmax(z) = exp(z - max z) / sum(exp(z - max z))``, which equals the textbook formula but
    never overflows: the largest exponent is ``exp(0) = 1``.

    Args:
        z: Logits of shape ``(..., K)`` with at least one dimension.

    Returns:
        Probabilities of the same shape, summing to 1 along the last axis.

    Raises:
        ValueError: If ``z`` is a scalar or empty.
    """
    exponentials = np.exp(_shifted_logits(z))
    probabilities: Array = exponentials / np.sum(exponentials, axis=-1, keepdims=True)
    return probabilities


def log_softmax(z: ArrayLike) -> Array:
    """Logarithm of :func:`softmax` via log-sum-exp: ``z - max z - log(sum(exp(z - max z)))``.

    Args:
        z: Logits of shape ``(..., K)``.

    Returns:
        Log-probabilities of the same shape; finite for any finite logits.

    Raises:
        ValueError: If ``z`` is a scalar or empty.
    """
    shifted = _shifted_logits(z)
    log_probabilities: Array = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return log_probabilities


def softmax_jacobian(z: ArrayLike) -> Array:
    """Jacobian of the softmax of one logit vector: ``J[i, j] = ∂p_i/∂z_j = diag(p) − p pᵀ``.

    Args:
        z: Logits of shape ``(K,)``.

    Returns:
        The ``(K, K)`` Jacobian (symmetric, rows summing to zero).

    Raises:
        ValueError: If ``z`` is not 1-D.
    """
    p = softmax(as_float_array(z, "z", ndim=1))
    return np.diag(p) - np.outer(p, p)


def _check_labels(z: Array, k: ArrayLike) -> NDArray[np.int64]:
    labels = np.asarray(k)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"class index k must be an integer, got {k!r}")
    if z.ndim == 1 and labels.ndim != 0:
        raise ValueError(f"for logits of shape {z.shape}, k must be a single index, got {k!r}")
    if z.ndim == 2 and labels.shape != (z.shape[0],):
        raise ValueError(
            f"for logits of shape {z.shape}, k must have shape ({z.shape[0]},), got {labels.shape}"
        )
    if np.any(labels < 0) or np.any(labels >= z.shape[-1]):
        raise ValueError(f"class index k must be in [0, {z.shape[-1]}), got {k!r}")
    return labels.astype(np.int64)


def _logits_and_label_positions(z: ArrayLike, k: ArrayLike) -> tuple[Array, Any]:
    """Checked logits and the index of each example's correct-class entry in them."""
    z = as_float_array(z, "z", ndim=(1, 2))
    labels = _check_labels(z, k)
    return z, (labels if z.ndim == 1 else (np.arange(z.shape[0]), labels))


def cross_entropy(z: ArrayLike, k: ArrayLike) -> Array | float:
    """Cross-entropy of the softmax of ``z`` with the one-hot label ``k``: ``−log softmax(z)[k]``.

    Computed as ``logsumexp(z) − z[k]``, so it stays finite and accurate for logits in the
    hundreds or thousands, where the naive ``−log(softmax(z)[k])`` gives ``inf`` or ``nan``.

    Args:
        z: Logits of shape ``(K,)`` or a batch ``(N, K)``.
        k: The correct class: an int for ``(K,)``, an int array of shape ``(N,)`` for a batch.

    Returns:
        A float for one example, an array of shape ``(N,)`` for a batch.

    Raises:
        ValueError: For logits that are not 1-D or 2-D, or labels of the wrong shape or range.
    """
    z, positions = _logits_and_label_positions(z, k)
    losses = -log_softmax(z)[positions]
    return float(losses) if z.ndim == 1 else losses


def cross_entropy_grad(z: ArrayLike, k: ArrayLike) -> Array:
    """Gradient of :func:`cross_entropy` with respect to the logits: ``softmax(z) − onehot(k)``.

    Args:
        z: Logits of shape ``(K,)`` or ``(N, K)``.
        k: The correct class (see :func:`cross_entropy`).

    Returns:
        An array with the shape of ``z`` (per example for a batch, not averaged).

    Raises:
        ValueError: For logits that are not 1-D or 2-D, or labels of the wrong shape or range.
    """
    z, positions = _logits_and_label_positions(z, k)
    gradient = softmax(z)
    gradient[positions] -= 1.0
    return gradient


def binary_cross_entropy(z: ArrayLike, y: ArrayLike) -> Array | float:
    """Binary cross-entropy of ``σ(z)`` with labels ``y ∈ {0, 1}``, computed from the logit.

    ``−y log σ(z) − (1 − y) log(1 − σ(z)) = max(z, 0) − z y + log(1 + e^{−|z|})``: the right-hand
    form never exponentiates a large positive number and never takes the log of an underflowed
    probability — what ``BinaryCrossentropy(from_logits=True)`` computes.

    Args:
        z: Logits, any shape.
        y: Labels (or target probabilities in [0, 1]) of the same shape.

    Returns:
        A float for a scalar logit, else an array of the shape of ``z``.

    Raises:
        ValueError: If the shapes differ or a label is outside [0, 1].
    """
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if z.shape != y.shape:
        raise ValueError(f"logits {z.shape} and labels {y.shape} must have the same shape")
    if np.any((y < 0) | (y > 1)):
        raise ValueError(f"labels must lie in [0, 1], got {y!r}")
    losses = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return float(losses) if losses.ndim == 0 else losses


def binary_cross_entropy_grad(z: ArrayLike, y: ArrayLike) -> Array:
    """Gradient of :func:`binary_cross_entropy` with respect to the logit: ``σ(z) − y``.

    The two-class case of ``p − onehot``: a sigmoid is a softmax over the logits ``(0, z)``.

    Args:
        z: Logits, any shape.
        y: Labels of the same shape, in [0, 1].

    Returns:
        An array with the shape of ``z``.

    Raises:
        ValueError: If the shapes differ or a label is outside [0, 1].
    """
    binary_cross_entropy(z, y)  # validates the arguments
    logits, labels = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits)) - labels
