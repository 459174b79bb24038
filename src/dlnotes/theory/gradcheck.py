"""Checking gradients: central differences, relative errors, and minibatch gradient noise.

Every hand-derived gradient of the course is compared with :func:`numerical_gradient` by
:func:`check_gradient`, which fails loudly when a tolerance is missed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from dlnotes.theory._arrays import Array, as_float_array


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
    gradients = as_float_array(per_example, "per_example")
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
