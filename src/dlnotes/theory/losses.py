"""Linear classifiers and their losses, batch-vectorised, with analytic gradients (NumPy float64).

Shapes: inputs ``X`` are ``(N, D)``, weights ``W`` are ``(D, C)``, biases ``b`` are ``(C,)`` and
labels ``y`` are ints ``(N,)``. Scores are ``X W + b``, shape ``(N, C)``; each column of ``W`` is a
class template matched against the input by a dot product.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dlnotes.theory import softmax

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack for **kwargs needs Python 3.12

Array = NDArray[np.float64]
REGULARIZERS = ("l2", "l1", "elastic_net")


class SVMOptions(TypedDict, total=False):
    """The options of :func:`svm_loss` that :func:`linear_classifier_loss` passes on."""

    delta: float
    squared: bool


def _check_scores_labels(scores: ArrayLike, y: ArrayLike) -> tuple[Array, NDArray[np.int64]]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(y)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores must have shape (N, C) with N > 0, got {scores.shape}")
    if labels.shape != (scores.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y must be {scores.shape[0]} integer labels, got {labels!r}")
    if np.any(labels < 0) or np.any(labels >= scores.shape[1]):
        raise ValueError(f"labels must be in [0, {scores.shape[1]}), got {labels!r}")
    return scores, labels.astype(np.int64)


def svm_loss(
    scores: ArrayLike, y: ArrayLike, *, delta: float = 1.0, squared: bool = False
) -> tuple[float, Array]:
    """Multiclass SVM (hinge) loss, averaged over the batch, and its gradient.

    ``L_i = Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ)``; the squared variant uses ``max(0, ·)²``, which
    penalises violated margins quadratically.

    Args:
        scores: Class scores, shape ``(N, C)``.
        y: Correct classes, shape ``(N,)``.
        delta: The margin Δ (positive).
        squared: Use the squared hinge.

    Returns:
        ``(loss, dscores)`` with ``dscores`` of shape ``(N, C)``.

    Raises:
        ValueError: For bad shapes, labels out of range or a non-positive margin.
    """
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta!r}")
    scores, labels = _check_scores_labels(scores, y)
    n = scores.shape[0]
    rows = np.arange(n)
    margins = scores - scores[rows, labels][:, None] + delta
    margins[rows, labels] = 0.0
    positive = np.maximum(margins, 0.0)
    if squared:
        loss = np.sum(positive**2) / n
        weight = 2.0 * positive
    else:
        loss = np.sum(positive) / n
        weight = (margins > 0).astype(np.float64)
    dscores = weight.copy()
    dscores[rows, labels] = -np.sum(weight, axis=1)
    return float(loss), dscores / n


def softmax_cross_entropy(scores: ArrayLike, y: ArrayLike) -> tuple[float, Array]:
    """Softmax cross-entropy averaged over the batch, and its gradient ``(p − onehot) / N``.

    Args:
        scores: Logits, shape ``(N, C)``.
        y: Correct classes, shape ``(N,)``.

    Returns:
        ``(loss, dscores)``.

    Raises:
        ValueError: For bad shapes or labels out of range.
    """
    scores, labels = _check_scores_labels(scores, y)
    n = scores.shape[0]
    loss = float(np.mean(softmax.cross_entropy(scores, labels)))
    return loss, softmax.cross_entropy_grad(scores, labels) / n


def regularization(
    W: ArrayLike, *, kind: str = "l2", strength: float = 1e-3, l1_ratio: float = 0.5
) -> tuple[float, Array]:
    """Weight penalty and its gradient.

    * ``l2``: ``λ Σ W²`` (gradient ``2λW``), prefers many small weights;
    * ``l1``: ``λ Σ |W|`` (subgradient ``λ sign(W)``), drives weights to exactly zero;
    * ``elastic_net``: ``λ (r Σ|W| + (1 − r) Σ W²)`` with ``r = l1_ratio``.

    Args:
        W: Weights (any shape).
        kind: ``"l2"``, ``"l1"`` or ``"elastic_net"``.
        strength: λ, non-negative.
        l1_ratio: r in [0, 1], for the elastic net.

    Returns:
        ``(penalty, gradient)`` with the gradient shaped like ``W``.

    Raises:
        ValueError: For an unknown kind, a negative strength or a ratio outside [0, 1].
    """
    if kind not in REGULARIZERS:
        raise ValueError(f"kind must be one of {REGULARIZERS}, got {kind!r}")
    if strength < 0:
        raise ValueError(f"strength must be non-negative, got {strength!r}")
    if not 0 <= l1_ratio <= 1:
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
    W = np.asarray(W, dtype=np.float64)
    ratio = {"l2": 0.0, "l1": 1.0, "elastic_net": l1_ratio}[kind]
    penalty = strength * (ratio * np.sum(np.abs(W)) + (1 - ratio) * np.sum(W**2))
    gradient = strength * (ratio * np.sign(W) + (1 - ratio) * 2 * W)
    return float(penalty), gradient


def linear_classifier_loss(
    W: ArrayLike,
    b: ArrayLike,
    X: ArrayLike,
    y: ArrayLike,
    *,
    loss: str = "softmax",
    reg: str = "l2",
    strength: float = 0.0,
    **loss_options: Unpack[SVMOptions],
) -> tuple[float, Array, Array]:
    """Total loss of a linear classifier and its gradients with respect to ``W`` and ``b``.

    Args:
        W: Weights, shape ``(D, C)``.
        b: Biases, shape ``(C,)``.
        X: Inputs, shape ``(N, D)``.
        y: Labels, shape ``(N,)``.
        loss: ``"softmax"`` or ``"svm"``.
        reg: Regulariser kind (see :func:`regularization`); the bias is not regularised.
        strength: Regularisation strength λ.
        **loss_options: Passed to the loss, e.g. ``delta`` or ``squared`` for the SVM.

    Returns:
        ``(loss, dW, db)``.

    Raises:
        ValueError: For an unknown loss or shapes that do not fit.
    """
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or W.ndim != 2 or W.shape[0] != X.shape[1] or b.shape != (W.shape[1],):
        raise ValueError(
            f"need X (N, D), W (D, C), b (C,); got X {X.shape}, W {W.shape}, b {b.shape}"
        )
    scores = X @ W + b
    if loss == "softmax":
        if loss_options:
            raise ValueError(f"the softmax loss takes no options, got {sorted(loss_options)}")
        data_loss, dscores = softmax_cross_entropy(scores, y)
    elif loss == "svm":
        data_loss, dscores = svm_loss(scores, y, **loss_options)
    else:
        raise ValueError(f"loss must be 'softmax' or 'svm', got {loss!r}")
    penalty, dpenalty = regularization(W, kind=reg, strength=strength)
    return data_loss + penalty, X.T @ dscores + dpenalty, np.sum(dscores, axis=0)


def kl_divergence(p: ArrayLike, q: ArrayLike) -> float:
    """Kullback–Leibler divergence ``KL(p‖q) = Σ p log(p/q)`` of two distributions.

    Cross-entropy decomposes as ``H(p, q) = H(p) + KL(p‖q)``; for a one-hot ``p``, ``H(p) = 0``,
    so minimising cross-entropy minimises the KL divergence from the label distribution.

    Args:
        p: Probabilities, shape ``(K,)``, summing to 1.
        q: Probabilities, shape ``(K,)``, positive wherever ``p`` is.

    Returns:
        The divergence in nats (≥ 0).

    Raises:
        ValueError: If the shapes differ, an entry is negative, a vector does not sum to 1, or
            ``q`` is zero where ``p`` is not.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p and q must be vectors of one shape, got {p.shape} and {q.shape}")
    for name, dist in (("p", p), ("q", q)):
        if np.any(dist < 0) or not np.isclose(dist.sum(), 1.0):
            raise ValueError(f"{name} must be a probability vector, got {dist!r}")
    support = p > 0
    if np.any(q[support] == 0):
        raise ValueError("q is zero where p is positive: the divergence is infinite")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))
