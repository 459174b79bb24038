from __future__ import annotations

import pytest
import sympy as sp

from dlnotes.theory import symbolic


@pytest.mark.parametrize("size", [1, 2, 4])
def test_softmax_jacobian_closed_form(size: int) -> None:
    derivation = symbolic.softmax_jacobian_difference(size)
    assert derivation.holds
    assert derivation.difference == sp.zeros(size, size)


@pytest.mark.parametrize(("size", "label"), [(2, 0), (3, 2), (4, 1)])
def test_cross_entropy_gradient_both_routes(size: int, label: int) -> None:
    assert symbolic.cross_entropy_gradient_difference(size, label).holds
    assert symbolic.cross_entropy_chain_rule_difference(size, label).holds


@pytest.mark.parametrize("size", [1, 2, 3])
def test_residual_block_gradients(size: int) -> None:
    result = symbolic.residual_block_differences(size)
    assert result.de_dx.holds and result.de_dH.holds and result.de_dv.holds


def test_wrong_residual_formulas_do_not_hold() -> None:
    result = symbolic.residual_block_differences(2)
    closed = result.de_dx.closed_form
    # The source notes' mistakes: the identity path dropped, ∂e/∂H written with H instead of x.
    w = sp.Matrix(sp.symbols("w_1:3", real=True))
    assert not symbolic.compare(result.de_dx.derived, closed - w).holds
    H = sp.Matrix(2, 2, lambda i, j: sp.Symbol(f"H_{i + 1}{j + 1}", real=True))
    D_w = result.de_dv.closed_form
    assert not symbolic.compare(result.de_dH.derived, sp.diag(*D_w) * H).holds


@pytest.mark.parametrize("size", [1, 2, 3])
def test_newton_and_optimal_step(size: int) -> None:
    assert symbolic.newton_step_difference(size).holds
    assert symbolic.optimal_step_size_difference(size).holds


def test_wrong_newton_order_fails_for_matrices() -> None:
    derivation = symbolic.newton_step_difference(2)
    g = sp.Matrix(sp.symbols("g_1:3", real=True))
    A = symbolic.symmetric_matrix("A", 2)
    # −gᵀA⁻¹ is a row vector: as written in the notes it is not even the right shape.
    with pytest.raises(ValueError, match="shapes differ"):
        symbolic.compare(derivation.derived, -g.T * A.inv())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: symbolic.softmax_jacobian_difference(0), "vector size must be at least 1, got 0"),
        (
            lambda: symbolic.cross_entropy_gradient_difference(3, 3),
            r"label must be in \[0, 3\), got 3",
        ),
        (
            lambda: symbolic.cross_entropy_chain_rule_difference(3, -1),
            r"label must be in \[0, 3\), got -1",
        ),
        (lambda: symbolic.symmetric_matrix("A", 0), "matrix size must be at least 1, got 0"),
    ],
)
def test_bad_sizes_are_rejected(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_gate_rules() -> None:
    assert symbolic.sigmoid_derivative_difference().holds
    result = symbolic.matmul_gradient_differences(2, 3, 4)
    assert result.de_dX.holds and result.de_dW.holds
    assert result.de_dX.derived.shape == (2, 3) and result.de_dW.derived.shape == (3, 4)
    with pytest.raises(ValueError, match=r"sizes must be at least 1, got \(0, 3, 2\)"):
        symbolic.matmul_gradient_differences(0, 3, 2)


@pytest.mark.parametrize("size", [2, 4])
def test_batch_norm_gradients(size: int) -> None:
    result = symbolic.batch_norm_differences(size)
    assert result.de_dx.holds and result.de_dgamma.holds and result.de_dbeta.holds
    assert result.de_dx.derived.shape == (size, 1)


def test_batch_norm_without_the_statistics_paths_does_not_hold() -> None:
    result = symbolic.batch_norm_differences(2)
    gamma, epsilon = sp.Symbol("gamma", real=True), sp.Symbol("epsilon", positive=True)
    x, w = sp.Matrix(sp.symbols("x_1:3", real=True)), sp.Matrix(sp.symbols("w_1:3", real=True))
    mean = (x[0] + x[1]) / 2
    sigma = sp.sqrt(((x[0] - mean) ** 2 + (x[1] - mean) ** 2) / 2 + epsilon)
    assert not symbolic.compare(result.de_dx.derived, gamma * w / sigma).holds
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        symbolic.batch_norm_differences(1)


def test_binary_cross_entropy_gradient() -> None:
    assert symbolic.binary_cross_entropy_gradient_difference().holds
