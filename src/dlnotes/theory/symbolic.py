"""SymPy derivations of the theory chapters.

Each ``*_difference`` function derives a result symbolically — by letting SymPy differentiate the
definition — and subtracts the closed form the chapter derives by hand. The chapters display the
pieces; the tests assert that every difference simplifies to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


def _vector(name: str, size: int) -> sp.Matrix:
    if size < 1:
        raise ValueError(f"vector size must be at least 1, got {size}")
    return sp.Matrix(sp.symbols(f"{name}_1:{size + 1}", real=True))


def symmetric_matrix(name: str, size: int) -> sp.Matrix:
    """A symbolic symmetric matrix whose entries ``name_ij`` and ``name_ji`` are one symbol.

    Args:
        name: Symbol prefix.
        size: Number of rows and columns (at least 1).

    Returns:
        The ``size × size`` matrix.

    Raises:
        ValueError: If ``size`` < 1.
    """
    if size < 1:
        raise ValueError(f"matrix size must be at least 1, got {size}")
    return sp.Matrix(
        size, size, lambda i, j: sp.Symbol(f"{name}_{min(i, j) + 1}{max(i, j) + 1}", real=True)
    )


def softmax_vector(z: sp.Matrix) -> sp.Matrix:
    """Symbolic softmax ``p_i = exp(z_i) / Σ_j exp(z_j)`` of a column vector.

    Args:
        z: SymPy column vector.

    Returns:
        Column vector of the same length.
    """
    total = sum(sp.exp(zi) for zi in z)
    return sp.Matrix([sp.exp(zi) / total for zi in z])


@dataclass(frozen=True)
class Derivation:
    """A symbolic derivation: what SymPy differentiated, the hand-derived closed form, and their
    simplified difference (a zero matrix when the hand derivation is right).

    Attributes:
        derived: What SymPy obtained by differentiating the definition.
        closed_form: The formula derived by hand in the chapter.
        difference: ``simplify(derived − closed_form)``.
    """

    derived: sp.Matrix
    closed_form: sp.Matrix
    difference: sp.Matrix

    @property
    def holds(self) -> bool:
        """Whether the difference simplified to exactly zero."""
        return all(sp.simplify(entry) == 0 for entry in self.difference)


def compare(derived: sp.Matrix, closed_form: sp.Matrix) -> Derivation:
    """Compare a derived expression with a closed form (also a wrong one, to see it fail).

    Args:
        derived: What SymPy differentiated.
        closed_form: A candidate formula of the same shape.

    Returns:
        The derivation with the simplified difference.

    Raises:
        ValueError: If the shapes differ.
    """
    if derived.shape != closed_form.shape:
        raise ValueError(f"shapes differ: derived {derived.shape}, closed form {closed_form.shape}")
    return Derivation(derived, closed_form, sp.simplify(derived - closed_form))


def softmax_jacobian_difference(size: int = 3) -> Derivation:
    """Derive the softmax Jacobian symbolically and compare it with ``diag(p) − p pᵀ``.

    Args:
        size: Number of classes K (at least 1).

    Returns:
        The derivation; ``derived[i, j] = ∂p_i/∂z_j``.

    Raises:
        ValueError: If ``size`` < 1.
    """
    z = _vector("z", size)
    p = softmax_vector(z)
    jacobian = p.jacobian(z)
    return compare(jacobian, sp.diag(*p) - p * p.T)


def _softmax_and_label(size: int, label: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Symbolic logits z, their softmax p and the one-hot label, after checking the label."""
    if not 0 <= label < size:
        raise ValueError(f"label must be in [0, {size}), got {label}")
    z = _vector("z", size)
    onehot = sp.Matrix([1 if i == label else 0 for i in range(size)])
    return z, softmax_vector(z), onehot


def cross_entropy_gradient_difference(size: int = 3, label: int = 0) -> Derivation:
    """Differentiate ``e = −log softmax(z)_k`` and compare with ``p − onehot(k)``.

    Args:
        size: Number of classes K.
        label: The correct class k, ``0 ≤ k < K``.

    Returns:
        The derivation, as column vectors ``(∂e/∂z)ᵀ``.

    Raises:
        ValueError: If ``label`` is out of range.
    """
    z, p, onehot = _softmax_and_label(size, label)
    error = -sp.log(p[label])
    gradient = sp.Matrix([sp.diff(error, zi) for zi in z])
    return compare(gradient, p - onehot)


def cross_entropy_chain_rule_difference(size: int = 3, label: int = 0) -> Derivation:
    """Check the chain rule: ``Jᵀ (∂e/∂p)ᵀ`` with ``∂e/∂p = −onehot(k)/p_k`` is ``p − onehot(k)``.

    Args:
        size: Number of classes K.
        label: The correct class k.

    Returns:
        The derivation.

    Raises:
        ValueError: If ``label`` is out of range.
    """
    z, p, onehot = _softmax_and_label(size, label)
    de_dp = sp.Matrix([-1 / p[label] if i == label else 0 for i in range(size)])
    chained = p.jacobian(z).T * de_dp
    return compare(chained, p - onehot)


@dataclass(frozen=True)
class ResidualDerivations:
    """The three gradients of ``y = x + f(Hx + v)``, each as a :class:`Derivation`."""

    de_dx: Derivation
    de_dH: Derivation
    de_dv: Derivation


def residual_block_differences(size: int = 2) -> ResidualDerivations:
    """Differentiate ``e = wᵀ y`` with ``y = x + f(H x + v)`` and compare with the hand results.

    ``f`` is an arbitrary differentiable element-wise function (ReLU is the case ``f' = 1[u>0]``)
    and ``w`` stands for the upstream gradient ``(∂e/∂y)ᵀ``: any error is linear in ``y`` to first
    order. The closed forms, with ``D = diag(f'(u))`` and ``u = H x + v``, are

    * ``(∂e/∂x)ᵀ = (I + D H)ᵀ w``,
    * ``(∂e/∂v)ᵀ = D w``,
    * ``∂e/∂H = (D w) xᵀ``.

    Args:
        size: The dimension K (at least 1).

    Returns:
        The three derivations.

    Raises:
        ValueError: If ``size`` < 1.
    """
    x, v, w = _vector("x", size), _vector("v", size), _vector("w", size)
    H = sp.Matrix(size, size, lambda i, j: sp.Symbol(f"H_{i + 1}{j + 1}", real=True))
    f = sp.Function("f")
    u = H * x + v
    y = x + u.applyfunc(f)
    error = (w.T * y)[0, 0]
    s = sp.Symbol("s")
    D = sp.diag(*[sp.Subs(sp.Derivative(f(s), s), s, ui) for ui in u])
    de_dx = sp.Matrix([sp.diff(error, xi) for xi in x])
    de_dv = sp.Matrix([sp.diff(error, vi) for vi in v])
    de_dH = H.applyfunc(lambda h: sp.diff(error, h))
    identity = sp.eye(size)
    return ResidualDerivations(
        de_dx=compare(de_dx, (identity + D * H).T * w),
        de_dH=compare(de_dH, (D * w) * x.T),
        de_dv=compare(de_dv, D * w),
    )


def newton_step_difference(size: int = 2) -> Derivation:
    """Minimise the quadratic model symbolically and compare the minimiser with ``−A⁻¹ g``.

    Sets the gradient of ``gᵀs + ½ sᵀ A s`` (``s = h − h₀``, symmetric ``A``) to zero and solves.

    Args:
        size: Dimension n (at least 1).

    Returns:
        The derivation, as column vectors.

    Raises:
        ValueError: If ``size`` < 1.
    """
    g, s = _vector("g", size), _vector("s", size)
    A = symmetric_matrix("A", size)
    model = (g.T * s)[0, 0] + sp.Rational(1, 2) * (s.T * A * s)[0, 0]
    stationarity = [sp.diff(model, si) for si in s]
    solution = sp.solve(stationarity, list(s), dict=True)[0]
    minimiser = sp.Matrix([solution[si] for si in s])
    return compare(minimiser, -A.inv() * g)


def optimal_step_size_difference(size: int = 2) -> Derivation:
    """Minimise ``e(h₀ − α g)`` of the quadratic model over α and compare with ``gᵀg / gᵀAg``.

    Args:
        size: Dimension n (at least 1).

    Returns:
        The derivation, as 1×1 matrices.

    Raises:
        ValueError: If ``size`` < 1.
    """
    g = _vector("g", size)
    A = symmetric_matrix("A", size)
    alpha = sp.Symbol("alpha", real=True)
    step = -alpha * g
    model = (g.T * step)[0, 0] + sp.Rational(1, 2) * (step.T * A * step)[0, 0]
    (alpha_star,) = sp.solve(sp.diff(model, alpha), alpha)
    closed_form = (g.T * g)[0, 0] / (g.T * A * g)[0, 0]
    return compare(sp.Matrix([alpha_star]), sp.Matrix([closed_form]))


def sigmoid_derivative_difference() -> Derivation:
    """Differentiate ``σ(x) = 1/(1 + e^{−x})`` and compare with ``σ(x)(1 − σ(x))``."""
    x = sp.Symbol("x", real=True)
    sigma = 1 / (1 + sp.exp(-x))
    return compare(sp.Matrix([sp.diff(sigma, x)]), sp.Matrix([sigma * (1 - sigma)]))


@dataclass(frozen=True)
class MatmulDerivations:
    """The two gradients of ``e = Σ G ⊙ (X W)``: with respect to X and to W."""

    de_dX: Derivation
    de_dW: Derivation


def matmul_gradient_differences(
    rows: int = 2, inner: int = 3, columns: int = 2
) -> MatmulDerivations:
    """Differentiate ``e = Σ_ij G_ij (X W)_ij`` and compare with ``G Wᵀ`` and ``Xᵀ G``.

    ``G`` stands for the upstream gradient ``∂e/∂Y`` of ``Y = X W``: any error is linear in ``Y``
    to first order.

    Args:
        rows: Rows N of X.
        inner: Columns of X, rows of W (D).
        columns: Columns M of W.

    Returns:
        The two derivations.

    Raises:
        ValueError: If a size is smaller than 1.
    """
    if min(rows, inner, columns) < 1:
        raise ValueError(f"sizes must be at least 1, got {(rows, inner, columns)}")

    def matrix(name: str, r: int, c: int) -> sp.Matrix:
        return sp.Matrix(r, c, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True))

    X, W, G = matrix("X", rows, inner), matrix("W", inner, columns), matrix("G", rows, columns)
    error = sum(G.multiply_elementwise(X * W))
    return MatmulDerivations(
        de_dX=compare(X.applyfunc(lambda x: sp.diff(error, x)), G * W.T),
        de_dW=compare(W.applyfunc(lambda w: sp.diff(error, w)), X.T * G),
    )


def binary_cross_entropy_gradient_difference() -> Derivation:
    """Differentiate ``−y log σ(z) − (1 − y) log(1 − σ(z))`` and compare with ``σ(z) − y``.

    Returns:
        The derivation, as 1×1 matrices; ``y`` is a symbol, so it holds for soft labels too.
    """
    z, y = sp.symbols("z y", real=True)
    sigma = 1 / (1 + sp.exp(-z))
    error = -y * sp.log(sigma) - (1 - y) * sp.log(1 - sigma)
    return compare(sp.Matrix([sp.diff(error, z)]), sp.Matrix([sigma - y]))


@dataclass(frozen=True)
class BatchNormDerivations:
    """The three gradients of batch normalisation over one channel, each a :class:`Derivation`."""

    de_dx: Derivation
    de_dgamma: Derivation
    de_dbeta: Derivation


def batch_norm_differences(size: int = 3) -> BatchNormDerivations:
    """Differentiate batch normalisation of ``size`` values of one channel symbolically.

    ``y_i = γ (x_i − μ) / σ + β`` with ``μ = Σx/M``, ``σ = √(Σ(x − μ)²/M + ε)`` and the error
    ``e = Σ w_i y_i`` (``w`` stands for the upstream gradient). The closed forms are

    * ``∂e/∂x = γ / (M σ) · (M w − Σw − x̂ Σ w x̂)``,
    * ``∂e/∂γ = Σ w x̂``, ``∂e/∂β = Σ w``.

    Args:
        size: Number of values M normalised together (at least 2).

    Returns:
        The three derivations, as column vectors (1×1 for γ and β).

    Raises:
        ValueError: If ``size`` < 2.
    """
    if size < 2:
        raise ValueError(f"batch normalisation needs at least 2 values, got {size}")
    x, w = _vector("x", size), _vector("w", size)
    gamma, beta = sp.symbols("gamma beta", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    mean = sum(x) / size
    sigma = sp.sqrt(sum((xi - mean) ** 2 for xi in x) / size + eps)
    x_hat = (x - sp.ones(size, 1) * mean) / sigma
    y = gamma * x_hat + sp.ones(size, 1) * beta
    error = (w.T * y)[0, 0]
    sum_w, sum_w_x_hat = sum(w), (w.T * x_hat)[0, 0]
    closed_dx = gamma / (size * sigma) * (size * w - sp.ones(size, 1) * sum_w - x_hat * sum_w_x_hat)
    return BatchNormDerivations(
        de_dx=compare(sp.Matrix([sp.diff(error, xi) for xi in x]), closed_dx),
        de_dgamma=compare(sp.Matrix([sp.diff(error, gamma)]), sp.Matrix([sum_w_x_hat])),
        de_dbeta=compare(sp.Matrix([sp.diff(error, beta)]), sp.Matrix([sum_w])),
    )
