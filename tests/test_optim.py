from __future__ import annotations

import numpy as np
import pytest

from dlnotes.theory import optim

A = np.array([[3.0, 1.0], [1.0, 2.0]])
G = np.array([1.0, -2.0])


def test_newton_step_solves_the_quadratic_model() -> None:
    step = optim.newton_step(G, A)
    np.testing.assert_allclose(A @ step, -G)
    np.testing.assert_allclose(step, -np.linalg.inv(A) @ G)


def test_newton_step_rejects_singular_and_mismatched() -> None:
    with pytest.raises(ValueError, match="singular"):
        optim.newton_step(G, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        optim.newton_step(G, np.eye(3))
    with pytest.raises(ValueError, match="non-empty vector"):
        optim.newton_step(np.zeros((2, 2)), A)


def test_optimal_step_size_minimises_along_the_gradient() -> None:
    alpha = optim.optimal_step_size(G, A)
    assert alpha == pytest.approx(G @ G / (G @ A @ G))

    def model(a: float) -> float:
        s = -a * G
        return float(G @ s + 0.5 * s @ A @ s)

    assert model(alpha) < model(alpha * 1.01) and model(alpha) < model(alpha * 0.99)


@pytest.mark.parametrize("matrix", [-np.eye(2), np.zeros((2, 2)), np.diag([1.0, -10.0])])
def test_optimal_step_size_rejects_non_positive_curvature(matrix) -> None:
    with pytest.raises(ValueError, match="curvature gᵀAg along the gradient must be positive"):
        optim.optimal_step_size(G, matrix)


def test_quadratic_descent_methods_reach_the_minimum() -> None:
    b = np.array([1.0, 1.0])
    minimum = np.linalg.solve(A, b)
    newton = optim.quadratic_descent(
        A, b, np.zeros(2), step="newton", iterations=5, tolerance=1e-12
    )
    assert len(newton) == 2  # one Newton step solves a quadratic exactly
    np.testing.assert_allclose(newton[-1], minimum)
    optimal = optim.quadratic_descent(
        A, b, np.zeros(2), step="optimal", iterations=200, tolerance=1e-12
    )
    np.testing.assert_allclose(optimal[-1], minimum, atol=1e-10)
    fixed = optim.quadratic_descent(A, b, np.zeros(2), step=0.1, iterations=500)
    assert len(fixed) == 501
    np.testing.assert_allclose(fixed[-1], minimum, atol=1e-8)


def test_quadratic_descent_converges_within_the_kantorovich_bound() -> None:
    matrix = np.diag([1.0, 10.0])
    b = np.zeros(2)
    path = optim.quadratic_descent(matrix, b, np.array([10.0, 1.0]), step="optimal", iterations=20)
    a_norm = np.sqrt(np.einsum("ij,jk,ik->i", path, matrix, path))
    ratios = a_norm[1:] / a_norm[:-1]
    assert np.all(ratios <= optim.steepest_descent_rate(matrix) + 1e-12)
    # Starting at (κ, 1) along the eigenvectors is the worst case: the bound is attained.
    np.testing.assert_allclose(ratios, optim.steepest_descent_rate(matrix))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step": "fast"}, "'optimal' or 'newton'"),
        ({"step": -0.1}, "must be positive, got -0.1"),
        ({"iterations": -1}, "non-negative, got -1"),
        ({"h0": np.zeros(3)}, r"h0 must have shape \(2,\)"),
    ],
)
def test_quadratic_descent_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"h0": np.zeros(2), **kwargs}
    h0 = arguments.pop("h0")
    with pytest.raises(ValueError, match=message):
        optim.quadratic_descent(A, np.ones(2), h0, **arguments)


def test_condition_number_and_rate() -> None:
    assert optim.condition_number(np.diag([2.0, 8.0])) == pytest.approx(4.0)
    assert optim.steepest_descent_rate(np.diag([2.0, 8.0])) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="positive definite"):
        optim.condition_number(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="square"):
        optim.condition_number(np.zeros((2, 3)))


def test_momentum_without_momentum_is_gradient_descent() -> None:
    A, b, start = np.diag([4.0, 1.0]), np.array([1.0, -1.0]), np.array([2.0, 3.0])
    np.testing.assert_allclose(
        optim.momentum_descent(A, b, start, step=0.1, momentum=0.0, iterations=20),
        optim.quadratic_descent(A, b, start, step=0.1, iterations=20),
    )


def test_heavy_ball_with_its_best_settings_converges_at_its_rate() -> None:
    A = np.diag([100.0, 1.0])
    step, momentum, rate = optim.heavy_ball_parameters(A)
    assert step == pytest.approx(4 / 11**2) and rate == pytest.approx(9 / 11)
    assert momentum == pytest.approx(rate**2)
    path = optim.momentum_descent(
        A, np.zeros(2), [0.01, 1.0], step=step, momentum=momentum, iterations=400
    )
    norms = np.linalg.norm(path, axis=1)
    measured = (norms[400] / norms[200]) ** (1 / 200)
    assert measured == pytest.approx(rate, rel=0.02)  # ρᵏ up to a factor linear in k


def test_adam_takes_sign_steps_first_and_reaches_the_minimum_area() -> None:
    A, b = np.diag([100.0, 0.01]), np.zeros(2)
    path = optim.adam_descent(A, b, [1.0, -1.0], step=0.1, iterations=1)
    # The first step is α·sign(g) whatever the curvature: m/√v = g/|g| after one update.
    # (ε is compared with √v = √(1 − β₂)·|g|, so for |g| = 0.01 it costs 3e-4 of the step.)
    np.testing.assert_allclose(path[1] - path[0], [-0.1, 0.1], rtol=1e-3)
    far = optim.adam_descent(A, b, [1.0, -1.0], step=0.01, iterations=3000)
    assert np.abs(far[-1]).max() < 0.05


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: optim.momentum_descent(np.eye(2), np.zeros(2), [1, 1], step=0, momentum=0.5),
            "step must be positive, got 0",
        ),
        (
            lambda: optim.momentum_descent(np.eye(2), np.zeros(2), [1, 1], step=1, momentum=1.0),
            r"momentum must be in \[0, 1\), got 1.0",
        ),
        (
            lambda: optim.adam_descent(np.eye(2), np.zeros(2), [1, 1], step=0.1, beta_2=1.0),
            r"beta_2 must be in \[0, 1\), got 1.0",
        ),
        (
            lambda: optim.adam_descent(np.eye(2), np.zeros(2), [1], step=0.1),
            r"h0 must have shape \(2,\), got \(1,\)",
        ),
        (lambda: optim.heavy_ball_parameters(np.diag([1.0, -1.0])), "positive definite"),
    ],
)
def test_first_order_methods_reject_bad_arguments(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
