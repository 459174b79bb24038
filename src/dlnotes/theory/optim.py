"""Second-order view of a step: Newton steps and the optimal step size on a quadratic model.

Around ``h₀`` the error is modelled as ``e(h) ≈ e(h₀) + gᵀ(h − h₀) + ½ (h − h₀)ᵀ A (h − h₀)``
with gradient ``g`` and symmetric Hessian ``A``.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _check_g_and_A(g: ArrayLike, A: ArrayLike) -> tuple[Array, Array]:
    g = np.asarray(g, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"g must be a non-empty vector, got shape {g.shape}")
    if A.shape != (g.size, g.size):
        raise ValueError(f"A must have shape ({g.size}, {g.size}) to match g, got {A.shape}")
    return g, A


def newton_step(g: ArrayLike, A: ArrayLike) -> Array:
    """The step that minimises the quadratic model: ``h − h₀ = −A⁻¹ g``.

    Solved as the linear system ``A s = −g`` (never by forming ``A⁻¹``: solving is cheaper and
    more accurate).

    Args:
        g: Gradient at ``h₀``, shape ``(n,)``.
        A: Hessian, shape ``(n, n)``, symmetric positive definite for a minimum.

    Returns:
        The step ``s``, shape ``(n,)``.

    Raises:
        ValueError: For mismatched shapes or a singular ``A``.
    """
    g, A = _check_g_and_A(g, A)
    try:
        # float64 in, float64 out: NumPy's stubs only promise a floating-point result.
        return cast(Array, np.linalg.solve(A, -g))
    except np.linalg.LinAlgError as error:
        raise ValueError(f"A is singular, the Newton step is undefined: {error}") from error


def optimal_step_size(g: ArrayLike, A: ArrayLike) -> float:
    """Exact line search along ``−g`` on the quadratic model: ``α* = gᵀg / gᵀAg``.

    Args:
        g: Gradient, shape ``(n,)``.
        A: Hessian, shape ``(n, n)``.

    Returns:
        The step size that minimises ``e(h₀ − α g)``.

    Raises:
        ValueError: For mismatched shapes, or when the curvature ``gᵀAg`` along ``−g`` is not
            positive (the model has no minimum along that line).
    """
    g, A = _check_g_and_A(g, A)
    curvature = float(g @ A @ g)
    if not curvature > 0:
        raise ValueError(
            f"curvature gᵀAg along the gradient must be positive, got {curvature!r}: "
            "the quadratic model has no minimum in that direction"
        )
    return float(g @ g) / curvature


def quadratic_descent(
    A: ArrayLike,
    b: ArrayLike,
    h0: ArrayLike,
    *,
    step: float | str = "optimal",
    iterations: int = 100,
    tolerance: float = 0.0,
) -> Array:
    """Run gradient descent (or Newton's method) on ``e(h) = ½ hᵀ A h − bᵀ h``.

    Args:
        A: Symmetric positive definite matrix, shape ``(n, n)``.
        b: Vector, shape ``(n,)``; the minimum is at ``A⁻¹ b``.
        h0: Starting point, shape ``(n,)``.
        step: A fixed step size (float), ``"optimal"`` for exact line search
            (:func:`optimal_step_size` at every iteration) or ``"newton"``.
        iterations: Maximum number of steps (non-negative).
        tolerance: Stop once the gradient norm is at most this value.

    Returns:
        The visited points, shape ``(steps + 1, n)``, starting with ``h0``.

    Raises:
        ValueError: For an unknown ``step``, a non-positive fixed step, negative ``iterations``,
            or mismatched shapes.
    """
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    h = np.array(h0, dtype=np.float64, copy=True)
    _check_g_and_A(b, A)
    if h.shape != b.shape:
        raise ValueError(f"h0 must have shape {b.shape}, got {h.shape}")
    if iterations < 0:
        raise ValueError(f"iterations must be non-negative, got {iterations}")
    if isinstance(step, str) and step not in {"optimal", "newton"}:
        raise ValueError(f"step must be a positive number, 'optimal' or 'newton', got {step!r}")
    if not isinstance(step, str) and not step > 0:
        raise ValueError(f"a fixed step size must be positive, got {step!r}")
    path = [h.copy()]
    for _ in range(iterations):
        g = A @ h - b
        if np.linalg.norm(g) <= tolerance:
            break
        if step == "newton":
            h = h + newton_step(g, A)
        elif step == "optimal":
            h = h - optimal_step_size(g, A) * g
        else:
            h = h - float(step) * g
        path.append(h.copy())
    return np.array(path)


def condition_number(A: ArrayLike) -> float:
    """Ratio of the largest to the smallest eigenvalue of a symmetric positive definite matrix.

    Args:
        A: Symmetric matrix, shape ``(n, n)``.

    Returns:
        ``κ = λ_max / λ_min``.

    Raises:
        ValueError: If ``A`` is not square or not positive definite.
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    eigenvalues = np.linalg.eigvalsh(A)
    if eigenvalues[0] <= 0:
        raise ValueError(f"A must be positive definite, smallest eigenvalue {eigenvalues[0]!r}")
    return float(eigenvalues[-1] / eigenvalues[0])


def steepest_descent_rate(A: ArrayLike) -> float:
    """Worst-case factor by which exact-line-search descent shrinks the error: ``(κ − 1)/(κ + 1)``.

    The bound holds for the error measured in the A-norm, ``‖h − h*‖_A``, per iteration (the
    Kantorovich bound); the objective gap shrinks by its square.

    Args:
        A: Symmetric positive definite matrix.

    Returns:
        The factor, in ``[0, 1)``.
    """
    kappa = condition_number(A)
    return (kappa - 1) / (kappa + 1)
