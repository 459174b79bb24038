"""Forward computations and hand-derived gradients of the theory chapters, in NumPy float64.

Conventions: vectors are 1-D arrays. A gradient ``de_dx`` has the shape of ``x``; in the text
it is the column vector (∂e/∂x)ᵀ. Every function here is checked against
:func:`numerical_gradient` and ``tf.GradientTape`` in the tests and in the chapters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _as_float_array(
    value: ArrayLike, name: str, *, ndim: int | tuple[int, ...] | None = None
) -> Array:
    array = np.asarray(value, dtype=np.float64)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and array.ndim not in allowed:
        dims = " or ".join(map(str, allowed))
        raise ValueError(f"{name} must have {dims} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    return array


def _shifted_logits(z: ArrayLike) -> Array:
    """``z − max(z)`` along the last axis: the largest exponent becomes ``exp(0) = 1``."""
    logits = _as_float_array(z, "z")
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
    p = softmax(_as_float_array(z, "z", ndim=1))
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
    z = _as_float_array(z, "z", ndim=(1, 2))
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


def _check_residual_shapes(x: Array, H: Array, v: Array) -> None:
    (K,) = x.shape
    if H.shape != (K, K) or v.shape != (K,):
        raise ValueError(
            "residual block needs x (K,), H (K, K), v (K,); "
            f"got x {x.shape}, H {H.shape}, v {v.shape}"
        )


def residual_block(x: ArrayLike, H: ArrayLike, v: ArrayLike) -> Array:
    """Forward pass of the residual block ``y = x + ReLU(H x + v)``.

    Args:
        x: Input, shape ``(K,)``.
        H: Weights, shape ``(K, K)``.
        v: Bias, shape ``(K,)``.

    Returns:
        ``y``, shape ``(K,)``.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    x = _as_float_array(x, "x", ndim=1)
    H = _as_float_array(H, "H", ndim=2)
    v = _as_float_array(v, "v", ndim=1)
    _check_residual_shapes(x, H, v)
    return x + np.maximum(H @ x + v, 0.0)


def residual_block_grads(
    x: ArrayLike, H: ArrayLike, v: ArrayLike, de_dy: ArrayLike
) -> tuple[Array, Array, Array]:
    """Backward pass of ``y = x + ReLU(H x + v)`` given the upstream gradient ``∂e/∂y``.

    With ``u = H x + v`` and ``D = diag(1[u > 0])`` (the ReLU Jacobian; we take 0 at ``u = 0``)
    and ``δ = D ∂e/∂yᵀ``:

    * ``∂e/∂xᵀ = (I + D H)ᵀ ∂e/∂yᵀ = ∂e/∂yᵀ + Hᵀ δ`` — the identity term is the skip path;
    * ``∂e/∂v = δ``;
    * ``∂e/∂H = δ xᵀ`` — an outer product with the *input* ``x``.

    The forward pass must therefore keep ``x`` and the mask ``1[u > 0]`` for the backward pass.

    Args:
        x: Input, shape ``(K,)``.
        H: Weights, shape ``(K, K)``.
        v: Bias, shape ``(K,)``.
        de_dy: Upstream gradient, shape ``(K,)``.

    Returns:
        ``(de_dx, de_dH, de_dv)`` with the shapes of ``x``, ``H`` and ``v``.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    x = _as_float_array(x, "x", ndim=1)
    H = _as_float_array(H, "H", ndim=2)
    v = _as_float_array(v, "v", ndim=1)
    de_dy = _as_float_array(de_dy, "de_dy", ndim=1)
    _check_residual_shapes(x, H, v)
    if de_dy.shape != x.shape:
        raise ValueError(f"de_dy must have the shape of y {x.shape}, got {de_dy.shape}")
    mask = (H @ x + v > 0).astype(np.float64)
    delta = mask * de_dy
    return de_dy + H.T @ delta, np.outer(delta, x), delta


def numerical_gradient(f: Callable[[Array], float], x: ArrayLike, eps: float = 1e-6) -> Array:
    """Gradient of a scalar function by central differences, for an input of any shape.

    ``∂f/∂x_i ≈ (f(x + ε e_i) − f(x − ε e_i)) / 2ε``, with error O(ε²) from truncation plus
    about (machine epsilon · |f|) / ε from round-off. In float64, ε ≈ 1e-6 balances the two.

    Args:
        f: Function of an array with the shape of ``x``, returning a scalar.
        x: Point at which to differentiate; it is not modified.
        eps: Step size, positive.

    Returns:
        Array with the shape of ``x``.

    Raises:
        ValueError: If ``eps`` is not positive or ``f`` does not return a scalar.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    point = np.array(x, dtype=np.float64, copy=True)
    gradient = np.zeros_like(point)
    flat_point, flat_gradient = point.reshape(-1), gradient.reshape(-1)
    for i in range(flat_point.size):
        original = flat_point[i]
        flat_point[i] = original + eps
        plus = np.asarray(f(point))
        flat_point[i] = original - eps
        minus = np.asarray(f(point))
        flat_point[i] = original
        if plus.shape != () or minus.shape != ():
            raise ValueError(f"f must return a scalar, got an array of shape {plus.shape}")
        flat_gradient[i] = (float(plus) - float(minus)) / (2 * eps)
    return gradient


def relative_error(a: ArrayLike, b: ArrayLike) -> float:
    """Relative error of two arrays, ``‖a − b‖ / (‖a‖ + ‖b‖)`` in the Euclidean norm.

    A norm-wise measure: entries that are tiny in both arrays (where round-off dominates) cannot
    blow it up, unlike an element-wise ratio.

    Args:
        a: First array.
        b: Second array, broadcastable to ``a``.

    Returns:
        A float in [0, 1]; 0 when both are zero. In float64, analytic and central-difference
        gradients of smooth functions typically agree to 1e-8 or better.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.linalg.norm(a) + np.linalg.norm(b))
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - b)) / scale


def check_gradient(
    label: str, analytic: ArrayLike, reference: ArrayLike, tolerance: float = 1e-7
) -> float:
    """Compare a hand-derived gradient with a reference, print the result and fail loudly.

    Chapters use this for their numerical-gradient and autodiff checks, so the rendered page
    shows each relative error next to the tolerance it met.

    Args:
        label: What is being checked, e.g. ``"∂e/∂x vs numerical"``.
        analytic: The hand-derived gradient.
        reference: The numerical or autodiff gradient (same shape).
        tolerance: Largest acceptable :func:`relative_error`.

    Returns:
        The relative error.

    Raises:
        ValueError: If the shapes differ.
        AssertionError: If the relative error exceeds the tolerance.
    """
    analytic, reference = np.asarray(analytic), np.asarray(reference)
    if analytic.shape != reference.shape:
        raise ValueError(f"{label}: shapes differ, {analytic.shape} vs {reference.shape}")
    error = relative_error(analytic, reference)
    verdict = "ok" if error <= tolerance else "FAILED"
    print(f"{label:<42} relative error {error:.1e}  (tolerance {tolerance:.0e})  {verdict}")
    if error > tolerance:
        raise AssertionError(f"{label}: relative error {error:.3e} exceeds {tolerance:.0e}")
    return error


def stack_gradient_norms(
    x: ArrayLike,
    weights: ArrayLike,
    biases: ArrayLike,
    *,
    residual: bool = True,
    de_dy: ArrayLike | None = None,
) -> Array:
    """Backpropagate through a stack of blocks and return ``‖∂e/∂x_l‖`` at every depth.

    Each block computes ``x_{l+1} = x_l + ReLU(H_l x_l + v_l)`` (``residual=True``) or
    ``x_{l+1} = ReLU(H_l x_l + v_l)`` (a plain network). The error is ``e = gᵀ x_L`` for the
    given upstream gradient ``g`` (default: all ones).

    Args:
        x: Input, shape ``(K,)``.
        weights: ``(L, K, K)`` stack of matrices ``H_l``.
        biases: ``(L, K)`` stack of biases ``v_l``.
        residual: Use the skip connection.
        de_dy: Gradient at the output, shape ``(K,)``.

    Returns:
        Array of ``L + 1`` norms: index 0 is the input of the stack, index L its output.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    x = _as_float_array(x, "x", ndim=1)
    weights = _as_float_array(weights, "weights", ndim=3)
    biases = _as_float_array(biases, "biases", ndim=2)
    depth, size = weights.shape[0], x.shape[0]
    if weights.shape != (depth, size, size) or biases.shape != (depth, size):
        raise ValueError(
            f"need weights (L, {size}, {size}) and biases (L, {size}); "
            f"got {weights.shape} and {biases.shape}"
        )
    inputs = [x]
    for H, v in zip(weights, biases, strict=True):
        activation = np.maximum(H @ inputs[-1] + v, 0.0)
        inputs.append(inputs[-1] + activation if residual else activation)
    gradient = np.ones(size) if de_dy is None else _as_float_array(de_dy, "de_dy", ndim=1)
    if gradient.shape != (size,):
        raise ValueError(f"de_dy must have shape ({size},), got {gradient.shape}")
    norms = [float(np.linalg.norm(gradient))]
    for layer in range(depth - 1, -1, -1):
        H, v, block_input = weights[layer], biases[layer], inputs[layer]
        if residual:
            gradient = residual_block_grads(block_input, H, v, gradient)[0]
        else:
            gradient = H.T @ ((H @ block_input + v > 0) * gradient)
        norms.append(float(np.linalg.norm(gradient)))
    return np.array(norms[::-1])


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


def _check_batch_norm(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, eps: float
) -> tuple[Array, Array, Array]:
    x = _as_float_array(x, "x")
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(
            f"x must be a batch (N, ..., C) with N ≥ 2 examples to normalise, got shape {x.shape}"
        )
    channels = x.shape[-1]
    gamma = _as_float_array(gamma, "gamma", ndim=1)
    beta = _as_float_array(beta, "beta", ndim=1)
    if gamma.shape != (channels,) or beta.shape != (channels,):
        raise ValueError(
            f"gamma and beta must have shape ({channels},), got {gamma.shape} and {beta.shape}"
        )
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    return x, gamma, beta


def batch_norm(x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, eps: float = 1e-3) -> Array:
    """Batch normalisation in training mode: normalise each channel with the batch's statistics.

    Over every axis but the last (the batch, and height and width for images):
    ``μ = mean(x)``, ``v = mean((x − μ)²)`` (the biased variance, as Keras uses),
    ``x̂ = (x − μ) / √(v + ε)`` and ``y = γ x̂ + β``.

    Args:
        x: A batch ``(N, C)`` or ``(N, H, W, C)``.
        gamma: Scale per channel, ``(C,)``.
        beta: Shift per channel, ``(C,)``.
        eps: Added to the variance (Keras' default 1e-3).

    Returns:
        ``y``, with the shape of ``x``.

    Raises:
        ValueError: For a batch of fewer than two examples, mismatched shapes or ``eps`` ≤ 0.
    """
    x, gamma, beta = _check_batch_norm(x, gamma, beta, eps)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    variance = ((x - mean) ** 2).mean(axis=axes)
    y: Array = gamma * (x - mean) / np.sqrt(variance + eps) + beta
    return y


def batch_norm_grads(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, de_dy: ArrayLike, eps: float = 1e-3
) -> tuple[Array, Array, Array]:
    """Backward pass of :func:`batch_norm` (training mode), given the upstream gradient.

    With ``M`` values per channel, ``σ = √(v + ε)`` and sums over those M values:

    * ``∂e/∂β = Σ g``, ``∂e/∂γ = Σ g x̂``;
    * ``∂e/∂x = γ / (M σ) · (M g − Σ g − x̂ Σ g x̂)``.

    The last one is not ``γ g / σ``: every value of the batch moved the mean and the variance, so
    every value's gradient has a share in every other's.

    Args:
        x: The forward input, ``(N, C)`` or ``(N, H, W, C)``.
        gamma: Scale per channel.
        beta: Shift per channel (the gradients do not depend on it; checked for its shape).
        de_dy: Upstream gradient, the shape of ``x``.
        eps: The forward pass's ε.

    Returns:
        ``(de_dx, de_dgamma, de_dbeta)`` with the shapes of ``x``, ``gamma`` and ``beta``.

    Raises:
        ValueError: For mismatched shapes (see :func:`batch_norm`).
    """
    x, gamma, beta = _check_batch_norm(x, gamma, beta, eps)
    g = _as_float_array(de_dy, "de_dy")
    if g.shape != x.shape:
        raise ValueError(f"de_dy must have the shape of x {x.shape}, got {g.shape}")
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    mean = x.mean(axis=axes)
    sigma = np.sqrt(((x - mean) ** 2).mean(axis=axes) + eps)
    x_hat = (x - mean) / sigma
    sum_g, sum_g_x_hat = g.sum(axis=axes), (g * x_hat).sum(axis=axes)
    de_dx = gamma / (count * sigma) * (count * g - sum_g - x_hat * sum_g_x_hat)
    return de_dx, sum_g_x_hat, sum_g


def minibatch_gradient_error(per_example: ArrayLike, batch_size: int) -> float:
    """Expected squared error ``E‖g_B − g‖²`` of a minibatch gradient, drawn without replacement.

    ``g`` is the full-batch gradient (the mean of the N per-example gradients ``G_i``) and ``g_B``
    the mean over a uniformly random minibatch of B distinct examples. ``g_B`` is unbiased, and

    ``E‖g_B − g‖² = (N − B) / (N − 1) · (1/B) · (1/N) Σ_i ‖G_i − g‖²``

    — the per-example variance divided by B, times the finite-population correction that makes
    the error vanish at B = N.

    Args:
        per_example: Per-example gradients, shape ``(N, ...)`` with N ≥ 2.
        batch_size: B, with ``1 ≤ B ≤ N``.

    Returns:
        The expected squared Euclidean (Frobenius) error.

    Raises:
        ValueError: If there are fewer than two examples or B is out of range.
    """
    gradients = _as_float_array(per_example, "per_example")
    count = gradients.shape[0] if gradients.ndim else 0
    if count < 2:
        raise ValueError(f"need per-example gradients of at least 2 examples, got {count}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be an integer, got {batch_size!r}")
    if not 1 <= batch_size <= count:
        raise ValueError(f"batch_size must be in [1, {count}], got {batch_size}")
    flat = gradients.reshape(count, -1)
    variance = float(np.mean(np.sum((flat - flat.mean(axis=0)) ** 2, axis=1)))
    return (count - batch_size) / (count - 1) * variance / batch_size
