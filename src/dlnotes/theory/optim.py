"""Second-order view of a step: Newton steps and the optimal step size on a quadratic model,
and the first-order methods that training uses instead — momentum and Adam — on the same model.

Around ``h₀`` the error is modelled as ``e(h) ≈ e(h₀) + gᵀ(h − h₀) + ½ (h − h₀)ᵀ A (h − h₀)``
with gradient ``g`` and symmetric Hessian ``A``. :func:`momentum_descent` and
:func:`adam_descent` follow Keras' ``SGD(momentum=…)`` and ``Adam`` update rules exactly, so
their paths can be compared with Keras' own.
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


def _check_descent(A: ArrayLike, b: ArrayLike, h0: ArrayLike, iterations: int) -> tuple[Array, ...]:
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    h = np.array(h0, dtype=np.float64, copy=True)
    _check_g_and_A(b, A)
    if h.shape != b.shape:
        raise ValueError(f"h0 must have shape {b.shape}, got {h.shape}")
    if iterations < 0:
        raise ValueError(f"iterations must be non-negative, got {iterations}")
    return A, b, h


def momentum_descent(
    A: ArrayLike,
    b: ArrayLike,
    h0: ArrayLike,
    *,
    step: float,
    momentum: float,
    iterations: int = 100,
) -> Array:
    """Gradient descent with (heavy-ball) momentum on ``e(h) = ½ hᵀ A h − bᵀ h``.

    Keras' ``SGD(learning_rate=step, momentum=momentum)``: a velocity ``v`` accumulates the
    gradients, ``v ← μ v − α g``, and the point moves by it, ``h ← h + v`` (Polyak's heavy ball).
    Along a direction where the gradient keeps its sign the steps grow up to ``α/(1 − μ)``; across a
    valley, where it alternates, they cancel.

    Args:
        A: Symmetric positive definite matrix, shape ``(n, n)``.
        b: Vector, shape ``(n,)``.
        h0: Starting point, shape ``(n,)``.
        step: Learning rate α (> 0).
        momentum: μ in [0, 1).
        iterations: Number of steps (non-negative).

    Returns:
        The visited points, shape ``(iterations + 1, n)``.

    Raises:
        ValueError: For a non-positive step, a momentum outside [0, 1), negative iterations or
            mismatched shapes.
    """
    A, b, h = _check_descent(A, b, h0, iterations)
    if not step > 0:
        raise ValueError(f"step must be positive, got {step!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    velocity = np.zeros_like(h)
    path = [h.copy()]
    for _ in range(iterations):
        velocity = momentum * velocity - step * (A @ h - b)
        h = h + velocity
        path.append(h.copy())
    return np.array(path)


def heavy_ball_parameters(A: ArrayLike) -> tuple[float, float, float]:
    """The best constant step and momentum for the heavy ball on a quadratic, and its rate.

    With ``L`` and ``μ`` the largest and smallest eigenvalues and ``κ = L/μ`` (Polyak, 1964):
    ``α = 4 / (√L + √μ)²``, ``momentum = ((√κ − 1)/(√κ + 1))²``, and the error then shrinks by
    ``(√κ − 1)/(√κ + 1)`` per step, against ``(κ − 1)/(κ + 1)`` for the best plain gradient step.

    Args:
        A: Symmetric positive definite matrix.

    Returns:
        ``(step, momentum, rate)``.

    Raises:
        ValueError: If ``A`` is not symmetric positive definite.
    """
    root = np.sqrt(condition_number(A))
    eigenvalues = np.linalg.eigvalsh(np.asarray(A, dtype=np.float64))
    largest, smallest = float(eigenvalues[-1]), float(eigenvalues[0])
    rate = (root - 1) / (root + 1)
    return float(4 / (np.sqrt(largest) + np.sqrt(smallest)) ** 2), float(rate**2), float(rate)


def adam_descent(
    A: ArrayLike,
    b: ArrayLike,
    h0: ArrayLike,
    *,
    step: float,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    iterations: int = 100,
) -> Array:
    """Adam on ``e(h) = ½ hᵀ A h − bᵀ h``, with the update of Keras' ``Adam``.

    Running means of the gradient and of its square, ``m ← β₁m + (1 − β₁)g`` and
    ``v ← β₂v + (1 − β₂)g²``; the step is ``α_t m / (√v + ε)`` with the bias-corrected rate
    ``α_t = α √(1 − β₂ᵗ) / (1 − β₁ᵗ)``. Each coordinate is divided by the root of its own mean
    squared gradient, so the step size no longer depends on the gradient's scale: a diagonal
    preconditioner (Kingma and Ba, 2015).

    Args:
        A: Symmetric positive definite matrix, shape ``(n, n)``.
        b: Vector, shape ``(n,)``.
        h0: Starting point, shape ``(n,)``.
        step: Learning rate α (> 0).
        beta_1: Decay of the gradient's running mean, in [0, 1).
        beta_2: Decay of the squared gradient's running mean, in [0, 1).
        epsilon: Added to √v (Keras' default 1e-7).
        iterations: Number of steps (non-negative).

    Returns:
        The visited points, shape ``(iterations + 1, n)``.

    Raises:
        ValueError: For out-of-range arguments or mismatched shapes.
    """
    A, b, h = _check_descent(A, b, h0, iterations)
    if not step > 0:
        raise ValueError(f"step must be positive, got {step!r}")
    for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
        if not 0 <= beta < 1:
            raise ValueError(f"{name} must be in [0, 1), got {beta!r}")
    first, second = np.zeros_like(h), np.zeros_like(h)
    path = [h.copy()]
    for t in range(1, iterations + 1):
        g = A @ h - b
        first += (g - first) * (1 - beta_1)
        second += (g**2 - second) * (1 - beta_2)
        rate = step * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        h = h - rate * first / (np.sqrt(second) + epsilon)
        path.append(h.copy())
    return np.array(path)
