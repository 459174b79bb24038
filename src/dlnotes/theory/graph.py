"""A minimal computational-graph API: nodes with ``forward`` and ``backward`` (NumPy).

Every node caches what its backward pass needs during ``forward`` and, given the gradient of the
final scalar with respect to its output (the *upstream* gradient), returns the gradients with
respect to each of its inputs. The local rules are the "gates" of backpropagation:

* add **distributes** the upstream gradient to both inputs unchanged;
* max **routes** it to the larger input only;
* multiply **swaps** the inputs: ``∂(ab)/∂a = b``;
* mean shares it equally among its ``n`` inputs (``upstream / n`` each);
* subtract passes the gradient to ``a`` and its negative to ``b``; divide ``a / b`` gives
  ``1/b`` and ``−a/b²``; square ``a²`` gives ``2a``, square root ``√a`` gives ``1/(2√a)``;
* matmul ``Y = X W`` gives ``∂/∂X = G Wᵀ`` and ``∂/∂W = Xᵀ G``;
* element-wise functions multiply by their derivative (their Jacobian is diagonal).

Broadcasting in the forward pass becomes summation in the backward pass (:func:`unbroadcast`).
"""

from __future__ import annotations

from typing import Any, Generic, ParamSpec

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dlnotes.theory import softmax

Array = NDArray[np.float64]

Inputs = ParamSpec("Inputs")
"""The parameters of a node's :meth:`Node.forward`, e.g. ``[ArrayLike, ArrayLike]`` for a gate."""


def unbroadcast(gradient: ArrayLike, shape: tuple[int, ...]) -> Array:
    """Sum a gradient over the axes that broadcasting added or stretched, to match ``shape``.

    Args:
        gradient: Gradient with the broadcast shape.
        shape: Shape of the original input.

    Returns:
        The gradient reduced to ``shape``.

    Raises:
        ValueError: If ``shape`` does not broadcast to the gradient's shape.
    """
    reduced = np.asarray(gradient, dtype=np.float64)
    try:
        broadcast = np.broadcast_shapes(shape, reduced.shape)
    except ValueError:
        broadcast = None
    if broadcast != reduced.shape:
        raise ValueError(f"shape {shape} does not broadcast to {reduced.shape}")
    while reduced.ndim > len(shape):
        reduced = reduced.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and reduced.shape[axis] != 1:
            reduced = reduced.sum(axis=axis, keepdims=True)
    return reduced


class Node(Generic[Inputs]):
    """Base class of graph nodes: call :meth:`forward`, then :meth:`backward` once.

    A node names the parameters of its ``forward`` as its type argument, e.g.
    ``class Add(Node[[ArrayLike, ArrayLike]])``; ``Node[...]`` is a node of any arity.
    """

    name = "node"

    def __init__(self) -> None:
        self._cache: tuple[Any, ...] | None = None

    def _cached(self) -> tuple[Any, ...]:
        if self._cache is None:
            raise RuntimeError(f"{self.name}.backward called before forward")
        return self._cache

    def forward(self, *inputs: Inputs.args, **named: Inputs.kwargs) -> Array:  # pragma: no cover
        """Compute the output and cache what the backward pass needs."""
        raise NotImplementedError

    def backward(self, upstream: ArrayLike) -> tuple[Array, ...]:  # pragma: no cover
        """Return the gradient with respect to each input, given ``∂e/∂output``."""
        raise NotImplementedError


class Add(Node[[ArrayLike, ArrayLike]]):
    """``a + b`` with broadcasting; distributes the gradient."""

    name = "add"

    def forward(self, a: ArrayLike, b: ArrayLike) -> Array:
        a_array, b_array = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self._cache = (a_array.shape, b_array.shape)
        return a_array + b_array

    def backward(self, upstream: ArrayLike) -> tuple[Array, Array]:
        a_shape, b_shape = self._cached()
        return unbroadcast(upstream, a_shape), unbroadcast(upstream, b_shape)


class Multiply(Node[[ArrayLike, ArrayLike]]):
    """Element-wise ``a * b``; swaps the inputs in the backward pass."""

    name = "multiply"

    def forward(self, a: ArrayLike, b: ArrayLike) -> Array:
        a_array, b_array = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self._cache = (a_array, b_array)
        return a_array * b_array

    def backward(self, upstream: ArrayLike) -> tuple[Array, Array]:
        a, b = self._cached()
        upstream = np.asarray(upstream, dtype=np.float64)
        return unbroadcast(upstream * b, a.shape), unbroadcast(upstream * a, b.shape)


class Subtract(Node[[ArrayLike, ArrayLike]]):
    """``a − b`` with broadcasting; ``a`` receives the gradient, ``b`` its negative."""

    name = "subtract"

    def forward(self, a: ArrayLike, b: ArrayLike) -> Array:
        a_array, b_array = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self._cache = (a_array.shape, b_array.shape)
        return a_array - b_array

    def backward(self, upstream: ArrayLike) -> tuple[Array, Array]:
        a_shape, b_shape = self._cached()
        upstream = np.asarray(upstream, dtype=np.float64)
        return unbroadcast(upstream, a_shape), unbroadcast(-upstream, b_shape)


class Square(Node[[ArrayLike]]):
    """Element-wise ``a²``; local gradient ``2a``."""

    name = "square"

    def forward(self, a: ArrayLike) -> Array:
        a_array = np.asarray(a, dtype=np.float64)
        self._cache = (a_array,)
        return a_array**2

    def backward(self, upstream: ArrayLike) -> tuple[Array]:
        (a,) = self._cached()
        return (2.0 * a * np.asarray(upstream, dtype=np.float64),)


class Divide(Node[[ArrayLike, ArrayLike]]):
    """Element-wise ``a / b``; local gradients ``1/b`` and ``−a/b²``."""

    name = "divide"

    def forward(self, a: ArrayLike, b: ArrayLike) -> Array:
        a_array, b_array = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if np.any(b_array == 0):
            raise ValueError("divide: the denominator has a zero")
        self._cache = (a_array, b_array)
        return a_array / b_array

    def backward(self, upstream: ArrayLike) -> tuple[Array, Array]:
        a, b = self._cached()
        upstream = np.asarray(upstream, dtype=np.float64)
        return unbroadcast(upstream / b, a.shape), unbroadcast(-upstream * a / b**2, b.shape)


class Sqrt(Node[[ArrayLike]]):
    """Element-wise ``√a`` for ``a > 0``; local gradient ``1/(2√a)`` reuses the output."""

    name = "sqrt"

    def forward(self, a: ArrayLike) -> Array:
        a_array = np.asarray(a, dtype=np.float64)
        if np.any(a_array <= 0):
            raise ValueError("sqrt: needs positive inputs (the gradient is infinite at 0)")
        out = np.sqrt(a_array)
        self._cache = (out,)
        return out

    def backward(self, upstream: ArrayLike) -> tuple[Array]:
        (out,) = self._cached()
        return (np.asarray(upstream, dtype=np.float64) / (2.0 * out),)


class Mean(Node[...]):
    """The mean of any number of same-shaped inputs; each receives ``upstream / n``."""

    name = "mean"

    def forward(self, *values: ArrayLike) -> Array:
        if not values:
            raise ValueError("mean needs at least one input, got none")
        arrays = [np.asarray(value, dtype=np.float64) for value in values]
        self._cache = (len(arrays), arrays[0].shape)
        mean: Array = np.mean(arrays, axis=0)
        return mean

    def backward(self, upstream: ArrayLike) -> tuple[Array, ...]:
        count, shape = self._cached()
        share: Array = np.full(shape, np.asarray(upstream, dtype=np.float64) / count)
        return tuple(share.copy() for _ in range(count))


class Max(Node[[ArrayLike, ArrayLike]]):
    """Element-wise ``max(a, b)``; routes the gradient to the larger input (to ``a`` on ties)."""

    name = "max"

    def forward(self, a: ArrayLike, b: ArrayLike) -> Array:
        a_array, b_array = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self._cache = (a_array, b_array)
        return np.maximum(a_array, b_array)

    def backward(self, upstream: ArrayLike) -> tuple[Array, Array]:
        a, b = self._cached()
        upstream = np.asarray(upstream, dtype=np.float64)
        a_wins = a >= b
        return unbroadcast(upstream * a_wins, a.shape), unbroadcast(upstream * ~a_wins, b.shape)


class Sigmoid(Node[[ArrayLike]]):
    """``σ(x) = 1 / (1 + e^{−x})``; local gradient ``σ(x)(1 − σ(x))`` reuses the output."""

    name = "sigmoid"

    def forward(self, x: ArrayLike) -> Array:
        x_array = np.asarray(x, dtype=np.float64)
        out = np.exp(-np.logaddexp(0.0, -x_array))  # 1 / (1 + e^{-x}) without overflow
        self._cache = (out,)
        return out

    def backward(self, upstream: ArrayLike) -> tuple[Array]:
        (out,) = self._cached()
        return (np.asarray(upstream, dtype=np.float64) * out * (1.0 - out),)


class MatMul(Node[[ArrayLike, ArrayLike]]):
    """``X @ W`` for ``X`` of shape ``(N, D)`` and ``W`` of shape ``(D, M)``."""

    name = "matmul"

    def forward(self, X: ArrayLike, W: ArrayLike) -> Array:
        X_array, W_array = np.asarray(X, dtype=np.float64), np.asarray(W, dtype=np.float64)
        if X_array.ndim != 2 or W_array.ndim != 2 or X_array.shape[1] != W_array.shape[0]:
            raise ValueError(f"matmul needs (N, D) @ (D, M), got {X_array.shape} @ {W_array.shape}")
        self._cache = (X_array, W_array)
        return X_array @ W_array

    def backward(self, upstream: ArrayLike) -> tuple[Array, Array]:
        X, W = self._cached()
        upstream = np.asarray(upstream, dtype=np.float64)
        return upstream @ W.T, X.T @ upstream


class SoftmaxCrossEntropy(Node[[ArrayLike, ArrayLike]]):
    """Mean softmax cross-entropy of logits ``(N, C)`` with integer labels; a scalar output."""

    name = "softmax_cross_entropy"

    def forward(self, logits: ArrayLike, labels: ArrayLike) -> Array:
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels)
        self._cache = (logits, labels)
        return np.asarray(np.mean(softmax.cross_entropy(logits, labels)))

    def backward(self, upstream: ArrayLike = 1.0) -> tuple[Array]:
        logits, labels = self._cached()
        scale = float(np.asarray(upstream)) / logits.shape[0]
        return (softmax.cross_entropy_grad(logits, labels) * scale,)


class TwoLayerNetwork:
    """``logits = σ(X W1 + b1) W2 + b2`` with a mean softmax cross-entropy, built from nodes.

    Args:
        W1: First-layer weights ``(D, H)``.
        b1: First-layer biases ``(H,)``.
        W2: Second-layer weights ``(H, C)``.
        b2: Second-layer biases ``(C,)``.
    """

    def __init__(self, W1: ArrayLike, b1: ArrayLike, W2: ArrayLike, b2: ArrayLike) -> None:
        self.params = {
            name: np.asarray(value, dtype=np.float64)
            for name, value in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2))
        }
        self.nodes: dict[str, Node[...]] = {
            "hidden_matmul": MatMul(),
            "hidden_bias": Add(),
            "sigmoid": Sigmoid(),
            "output_matmul": MatMul(),
            "output_bias": Add(),
            "loss": SoftmaxCrossEntropy(),
        }

    def loss(self, X: ArrayLike, y: ArrayLike) -> float:
        """Forward pass: the mean cross-entropy on a batch."""
        p, n = self.params, self.nodes
        hidden = n["sigmoid"].forward(
            n["hidden_bias"].forward(n["hidden_matmul"].forward(X, p["W1"]), p["b1"])
        )
        logits = n["output_bias"].forward(n["output_matmul"].forward(hidden, p["W2"]), p["b2"])
        return float(n["loss"].forward(logits, y))

    def gradients(self) -> dict[str, Array]:
        """Backward pass through the nodes in reverse order; call after :meth:`loss`."""
        n = self.nodes
        (dlogits,) = n["loss"].backward(1.0)
        dout, db2 = n["output_bias"].backward(dlogits)
        dhidden, dW2 = n["output_matmul"].backward(dout)
        (dpre,) = n["sigmoid"].backward(dhidden)
        dmatmul, db1 = n["hidden_bias"].backward(dpre)
        _, dW1 = n["hidden_matmul"].backward(dmatmul)
        return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
