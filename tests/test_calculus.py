from __future__ import annotations

import numpy as np
import pytest

from dlnotes.theory import batchnorm, gradcheck, residuals, softmax

RNG = np.random.default_rng(0)


def test_softmax_sums_to_one_on_the_last_axis() -> None:
    z = RNG.normal(size=(4, 5))
    p = softmax.softmax(z)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True))


def test_softmax_is_stable_for_huge_logits() -> None:
    p = softmax.softmax([1000.0, 1000.0, -1000.0])
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0])
    assert np.all(np.isfinite(softmax.log_softmax([1000.0, -1000.0])))


@pytest.mark.parametrize("bad", [3.0, []])
def test_softmax_rejects_scalars_and_empty(bad) -> None:
    with pytest.raises(ValueError, match="z"):
        softmax.softmax(bad)
    with pytest.raises(ValueError, match="z"):
        softmax.log_softmax(bad)


def test_softmax_jacobian_matches_numerical_and_closed_form() -> None:
    z = RNG.normal(size=5)
    jacobian = softmax.softmax_jacobian(z)
    numerical = np.stack(
        [gradcheck.numerical_gradient(lambda t, i=i: softmax.softmax(t)[i], z) for i in range(5)]
    )
    assert gradcheck.relative_error(jacobian, numerical) < 1e-7
    np.testing.assert_allclose(jacobian, jacobian.T)
    np.testing.assert_allclose(jacobian.sum(axis=1), 0.0, atol=1e-15)


def test_softmax_jacobian_needs_a_vector() -> None:
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        softmax.softmax_jacobian(np.zeros((2, 2)))


def test_cross_entropy_value_and_gradient() -> None:
    z = RNG.normal(size=6)
    assert softmax.cross_entropy(z, 2) == pytest.approx(-np.log(softmax.softmax(z)[2]))
    numerical = gradcheck.numerical_gradient(lambda t: softmax.cross_entropy(t, 2), z)
    assert gradcheck.relative_error(softmax.cross_entropy_grad(z, 2), numerical) < 1e-7


@pytest.mark.parametrize("scale", [100.0, 500.0, 5000.0])
def test_cross_entropy_is_finite_for_extreme_logits(scale: float) -> None:
    z = np.array([scale, -scale, 0.0])
    assert softmax.cross_entropy(z, 0) == pytest.approx(0.0, abs=1e-12)
    assert softmax.cross_entropy(z, 1) == pytest.approx(2 * scale)
    gradient = softmax.cross_entropy_grad(z, 1)
    np.testing.assert_allclose(gradient, [1.0, -1.0, 0.0], atol=1e-12)


def test_cross_entropy_batches() -> None:
    z = RNG.normal(size=(3, 4))
    labels = np.array([0, 3, 1])
    losses = softmax.cross_entropy(z, labels)
    assert losses.shape == (3,)
    for i in range(3):
        assert losses[i] == pytest.approx(softmax.cross_entropy(z[i], labels[i]))
    np.testing.assert_allclose(
        softmax.cross_entropy_grad(z, labels)[1], softmax.cross_entropy_grad(z[1], 3)
    )


@pytest.mark.parametrize(
    ("z", "k", "message"),
    [
        (np.zeros(3), 3, r"in \[0, 3\)"),
        (np.zeros(3), -1, r"in \[0, 3\)"),
        (np.zeros(3), 1.5, "integer"),
        (np.zeros(3), np.array([0, 1]), "single index"),
        (np.zeros((2, 3)), np.array([0]), r"shape \(2,\)"),
        (np.zeros((2, 2, 2)), 0, "1 or 2 dimension"),
    ],
)
def test_cross_entropy_rejects_bad_labels(z, k, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        softmax.cross_entropy(z, k)
    with pytest.raises(ValueError, match=message):
        softmax.cross_entropy_grad(z, k)


def test_residual_block_forward() -> None:
    x, H, v = np.array([1.0, -2.0]), np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, 0.5])
    np.testing.assert_allclose(residuals.residual_block(x, H, v), [2.5, -2.0])


def test_residual_block_grads_match_numerical_gradients() -> None:
    K = 4
    x, H, v, w = RNG.normal(size=K), RNG.normal(size=(K, K)), RNG.normal(size=K), RNG.normal(size=K)
    de_dx, de_dH, de_dv = residuals.residual_block_grads(x, H, v, w)
    assert (de_dx.shape, de_dH.shape, de_dv.shape) == (x.shape, H.shape, v.shape)

    def error(x_, H_, v_):
        return float(w @ residuals.residual_block(x_, H_, v_))

    checks = [
        (de_dx, gradcheck.numerical_gradient(lambda t: error(t, H, v), x)),
        (de_dH, gradcheck.numerical_gradient(lambda t: error(x, t, v), H)),
        (de_dv, gradcheck.numerical_gradient(lambda t: error(x, H, t), v)),
    ]
    for analytic, numerical in checks:
        assert gradcheck.relative_error(analytic, numerical) < 1e-6


def test_residual_gradient_keeps_the_identity_path() -> None:
    # With every ReLU off (D = 0), the gradient still flows through the skip connection.
    x, H, v = np.ones(3), np.eye(3), -10 * np.ones(3)
    w = np.array([1.0, 2.0, 3.0])
    de_dx, de_dH, de_dv = residuals.residual_block_grads(x, H, v, w)
    np.testing.assert_allclose(de_dx, w)
    np.testing.assert_allclose(de_dH, 0.0)
    np.testing.assert_allclose(de_dv, 0.0)


@pytest.mark.parametrize(
    "shapes",
    [((3,), (3, 2), (3,), (3,)), ((3,), (3, 3), (2,), (3,)), ((3,), (3, 3), (3,), (2,))],
)
def test_residual_block_rejects_mismatched_shapes(shapes) -> None:
    x, H, v, w = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=r"residual block needs|must have the shape of y"):
        residuals.residual_block_grads(x, H, v, w)
    if w.shape == x.shape:
        with pytest.raises(ValueError, match="residual block needs"):
            residuals.residual_block(x, H, v)


def test_numerical_gradient_any_shape_and_input_unchanged() -> None:
    x = RNG.normal(size=(2, 3, 2))
    before = x.copy()
    gradient = gradcheck.numerical_gradient(lambda t: float(np.sum(t**3)), x)
    np.testing.assert_allclose(gradient, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_rejects_bad_eps_and_vector_functions() -> None:
    with pytest.raises(ValueError, match="eps must be positive, got 0"):
        gradcheck.numerical_gradient(lambda t: float(t.sum()), np.ones(2), eps=0)
    with pytest.raises(ValueError, match="scalar"):
        gradcheck.numerical_gradient(lambda t: t, np.ones(2))


def test_relative_error() -> None:
    assert gradcheck.relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert gradcheck.relative_error([1.0], [3.0]) == pytest.approx(0.5)
    assert gradcheck.relative_error([0.0], [0.0]) == 0.0


def test_check_gradient_prints_and_fails_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    error = gradcheck.check_gradient("same", [1.0, 2.0], [1.0, 2.0 + 1e-12])
    assert error < 1e-12
    assert "same" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="exceeds"):
        gradcheck.check_gradient("different", [1.0], [1.1])
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.check_gradient("shapes", [1.0], [1.0, 2.0])


def test_stack_gradient_norms_match_autodiff_of_the_stack() -> None:
    depth, size = 4, 3
    weights = RNG.normal(size=(depth, size, size))
    biases = RNG.normal(size=(depth, size))
    x = RNG.normal(size=size)
    g = RNG.normal(size=size)

    def run(x0, residual):
        h = x0
        for H, v in zip(weights, biases, strict=True):
            a = np.maximum(H @ h + v, 0)
            h = h + a if residual else a
        return float(g @ h)

    for residual in (True, False):
        norms = residuals.stack_gradient_norms(x, weights, biases, residual=residual, de_dy=g)
        assert norms.shape == (depth + 1,)
        assert norms[-1] == pytest.approx(np.linalg.norm(g))
        numerical = gradcheck.numerical_gradient(lambda t, r=residual: run(t, r), x)
        assert norms[0] == pytest.approx(np.linalg.norm(numerical), rel=1e-6)


def test_skip_connections_keep_gradients_alive_in_deep_stacks() -> None:
    depth, size = 40, 16
    rng = np.random.default_rng(3)
    weights = rng.normal(scale=np.sqrt(1 / size), size=(depth, size, size))
    biases = np.zeros((depth, size))
    x = rng.normal(size=size)
    plain = residuals.stack_gradient_norms(x, weights, biases, residual=False)
    residual = residuals.stack_gradient_norms(x, weights, biases, residual=True)
    assert plain[0] < 1e-3 * plain[-1]
    assert residual[0] >= residual[-1]


def test_stack_gradient_norms_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="need weights"):
        residuals.stack_gradient_norms(np.zeros(3), np.zeros((2, 3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"de_dy must have shape \(3,\)"):
        residuals.stack_gradient_norms(
            np.zeros(3), np.zeros((2, 3, 3)), np.zeros((2, 3)), de_dy=np.zeros(2)
        )


def test_binary_cross_entropy_matches_the_definition_and_is_stable() -> None:
    z = RNG.normal(size=6)
    y = (RNG.random(6) > 0.5).astype(float)
    sigma = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(
        softmax.binary_cross_entropy(z, y), -y * np.log(sigma) - (1 - y) * np.log(1 - sigma)
    )
    assert softmax.binary_cross_entropy(800.0, 0.0) == pytest.approx(800.0)
    assert softmax.binary_cross_entropy(-800.0, 0.0) == pytest.approx(0.0, abs=1e-300)
    numerical = gradcheck.numerical_gradient(
        lambda t: np.sum(softmax.binary_cross_entropy(t, y)), z
    )
    assert gradcheck.relative_error(softmax.binary_cross_entropy_grad(z, y), numerical) < 1e-8


def test_binary_cross_entropy_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="same shape"):
        softmax.binary_cross_entropy(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        softmax.binary_cross_entropy_grad(np.zeros(2), np.array([0.0, 2.0]))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 5)])
def test_batch_norm_and_its_gradients(shape: tuple[int, ...]) -> None:
    x = RNG.normal(loc=2.0, scale=3.0, size=shape)
    channels = shape[-1]
    gamma, beta, g = RNG.normal(size=channels), RNG.normal(size=channels), RNG.normal(size=shape)
    y = batchnorm.batch_norm(x, gamma, beta)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose((y - beta).mean(axis=axes), 0.0, atol=1e-12)
    de_dx, de_dgamma, de_dbeta = batchnorm.batch_norm_grads(x, gamma, beta, g)
    for analytic, variable, position in ((de_dx, x, 0), (de_dgamma, gamma, 1), (de_dbeta, beta, 2)):

        def error(t, position=position):
            arguments = [x, gamma, beta]
            arguments[position] = t
            return np.sum(g * batchnorm.batch_norm(*arguments))

        numerical = gradcheck.numerical_gradient(error, variable)
        assert gradcheck.relative_error(analytic, numerical) < 1e-7
    np.testing.assert_allclose(de_dx.sum(axis=axes), 0.0, atol=1e-10)


def test_batch_norm_matches_keras_in_training_mode() -> None:
    keras = pytest.importorskip("keras")
    x = RNG.normal(size=(5, 4, 4, 3))
    layer = keras.layers.BatchNormalization(dtype="float64")
    np.testing.assert_allclose(
        layer(x, training=True).numpy(),
        batchnorm.batch_norm(x, np.ones(3), np.zeros(3)),
        atol=1e-12,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((np.zeros((1, 3)), np.ones(3), np.zeros(3)), "N ≥ 2"),
        ((np.zeros((4, 3)), np.ones(2), np.zeros(3)), r"shape \(3,\)"),
        ((np.zeros(4), np.ones(1), np.zeros(1)), r"got shape \(4,\)"),
    ],
)
def test_batch_norm_rejects_bad_shapes(arguments, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        batchnorm.batch_norm(*arguments)
    with pytest.raises(ValueError, match="eps must be positive, got 0"):
        batchnorm.batch_norm(np.zeros((4, 3)), np.ones(3), np.zeros(3), eps=0)
    with pytest.raises(ValueError, match="de_dy must have the shape"):
        batchnorm.batch_norm_grads(np.zeros((4, 3)), np.ones(3), np.zeros(3), np.zeros((4, 2)))


def test_minibatch_gradient_error_is_exact_over_all_minibatches() -> None:
    import itertools

    per_example = RNG.normal(size=(6, 2, 3))
    full = per_example.mean(axis=0)
    for batch_size in (1, 2, 3, 6):
        errors = [
            np.sum((per_example[list(subset)].mean(axis=0) - full) ** 2)
            for subset in itertools.combinations(range(6), batch_size)
        ]
        assert gradcheck.minibatch_gradient_error(per_example, batch_size) == pytest.approx(
            np.mean(errors)
        )


@pytest.mark.parametrize(
    ("per_example", "batch_size", "message"),
    [
        (np.zeros((1, 3)), 1, "at least 2 examples, got 1"),
        (np.zeros((4, 3)), 0, r"in \[1, 4\], got 0"),
        (np.zeros((4, 3)), 5, r"in \[1, 4\], got 5"),
        (np.zeros((4, 3)), 2.0, "must be an integer, got 2.0"),
    ],
)
def test_minibatch_gradient_error_rejects_bad_input(per_example, batch_size, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gradcheck.minibatch_gradient_error(per_example, batch_size)
