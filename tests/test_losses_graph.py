from __future__ import annotations

import numpy as np
import pytest

from dlnotes.theory import gradcheck, graph, losses, softmax

RNG = np.random.default_rng(1)
X = RNG.normal(size=(6, 4))
Y = np.array([0, 1, 2, 0, 1, 2])
W = RNG.normal(size=(4, 3)) * 0.5
B = RNG.normal(size=3) * 0.1


def _naive_svm(scores, y, delta, squared):
    total = 0.0
    for i in range(len(y)):
        for j in range(scores.shape[1]):
            if j != y[i]:
                m = max(0.0, scores[i, j] - scores[i, y[i]] + delta)
                total += m**2 if squared else m
    return total / len(y)


@pytest.mark.parametrize("squared", [False, True])
def test_svm_loss_matches_a_loop_and_its_gradient(squared: bool) -> None:
    scores = X @ W + B
    loss, dscores = losses.svm_loss(scores, Y, delta=1.0, squared=squared)
    assert loss == pytest.approx(_naive_svm(scores, Y, 1.0, squared))
    numerical = gradcheck.numerical_gradient(
        lambda s: losses.svm_loss(s, Y, squared=squared)[0], scores
    )
    assert gradcheck.relative_error(dscores, numerical) < 1e-6


def test_softmax_cross_entropy_matches_calculus() -> None:
    scores = X @ W
    loss, dscores = losses.softmax_cross_entropy(scores, Y)
    assert loss == pytest.approx(
        np.mean([softmax.cross_entropy(s, k) for s, k in zip(scores, Y, strict=True)])
    )
    numerical = gradcheck.numerical_gradient(
        lambda s: losses.softmax_cross_entropy(s, Y)[0], scores
    )
    assert gradcheck.relative_error(dscores, numerical) < 1e-7


@pytest.mark.parametrize("kind", ["l2", "l1", "elastic_net"])
def test_regularization_gradients(kind: str) -> None:
    penalty, gradient = losses.regularization(W, kind=kind, strength=0.1, l1_ratio=0.3)
    assert penalty > 0
    numerical = gradcheck.numerical_gradient(
        lambda w: losses.regularization(w, kind=kind, strength=0.1, l1_ratio=0.3)[0], W
    )
    assert gradcheck.relative_error(gradient, numerical) < 1e-6


@pytest.mark.parametrize(("loss", "options"), [("softmax", {}), ("svm", {"delta": 2.0})])
def test_linear_classifier_gradients(loss: str, options: dict) -> None:
    _, dW, db = losses.linear_classifier_loss(W, B, X, Y, loss=loss, strength=0.01, **options)

    def f_w(w):
        return losses.linear_classifier_loss(w, B, X, Y, loss=loss, strength=0.01, **options)[0]

    def f_b(b):
        return losses.linear_classifier_loss(W, b, X, Y, loss=loss, strength=0.01, **options)[0]

    assert gradcheck.relative_error(dW, gradcheck.numerical_gradient(f_w, W)) < 1e-6
    # For the SVM, db can be exactly zero: compare with an absolute tolerance as well.
    np.testing.assert_allclose(db, gradcheck.numerical_gradient(f_b, B), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: losses.svm_loss(np.zeros((2, 3)), np.array([0, 3])), r"in \[0, 3\)"),
        (
            lambda: losses.svm_loss(np.zeros((2, 3)), np.array([0, 1]), delta=0),
            "delta must be positive",
        ),
        (lambda: losses.softmax_cross_entropy(np.zeros(3), np.array([0])), r"shape \(N, C\)"),
        (lambda: losses.regularization(W, kind="l3"), "kind must be one of"),
        (lambda: losses.regularization(W, strength=-1), "non-negative"),
        (lambda: losses.regularization(W, kind="elastic_net", l1_ratio=2), r"\[0, 1\]"),
        (lambda: losses.linear_classifier_loss(W, B, X, Y, loss="mse"), "'softmax' or 'svm'"),
        (lambda: losses.linear_classifier_loss(W, B, X, Y, delta=2.0), "takes no options"),
        (lambda: losses.linear_classifier_loss(W, B[:2], X, Y), "need X"),
        (lambda: losses.kl_divergence([0.5, 0.5], [1.0, 0.0]), "infinite"),
        (lambda: losses.kl_divergence([0.5, 0.6], [0.5, 0.5]), "probability vector"),
        (lambda: losses.kl_divergence([1.0], [0.5, 0.5]), "one shape"),
    ],
)
def test_losses_reject_bad_input(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_cross_entropy_is_entropy_plus_kl() -> None:
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.6, 0.3])
    cross = -np.sum(p * np.log(q))
    entropy = -np.sum(p * np.log(p))
    assert cross == pytest.approx(entropy + losses.kl_divergence(p, q))
    assert losses.kl_divergence(p, p) == 0.0


def test_gates_add_distributes_max_routes_multiply_swaps() -> None:
    add, mul, mx = graph.Add(), graph.Multiply(), graph.Max()
    add.forward(np.array([1.0, 2.0]), np.array(3.0))
    da, db = add.backward(np.array([1.0, 1.0]))
    np.testing.assert_allclose(da, [1.0, 1.0])
    assert db == pytest.approx(2.0)  # broadcast input: the gradient is summed
    mul.forward(np.array([2.0]), np.array([-3.0]))
    np.testing.assert_allclose(mul.backward(np.array([1.0])), [[-3.0], [2.0]])
    mx.forward(np.array([4.0, 1.0]), np.array([2.0, 5.0]))
    np.testing.assert_allclose(mx.backward(np.array([1.0, 1.0])), [[1.0, 0.0], [0.0, 1.0]])


def test_sigmoid_and_matmul_nodes_match_numerical_gradients() -> None:
    x = RNG.normal(size=(3, 2))
    upstream = RNG.normal(size=(3, 2))
    node = graph.Sigmoid()
    node.forward(x)
    (dx,) = node.backward(upstream)
    numerical = gradcheck.numerical_gradient(
        lambda t: float(np.sum(graph.Sigmoid().forward(t) * upstream)), x
    )
    assert gradcheck.relative_error(dx, numerical) < 1e-7
    assert np.all(np.isfinite(graph.Sigmoid().forward(np.array([-1000.0, 1000.0]))))
    mm = graph.MatMul()
    w = RNG.normal(size=(2, 4))
    up = RNG.normal(size=(3, 4))
    mm.forward(x, w)
    dx, dw = mm.backward(up)
    np.testing.assert_allclose(dx, up @ w.T)
    np.testing.assert_allclose(dw, x.T @ up)
    with pytest.raises(ValueError, match=r"\(3, 2\) @ \(3, 4\)"):
        graph.MatMul().forward(x, up)


def test_backward_before_forward_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before forward"):
        graph.Add().backward(np.ones(2))


def test_unbroadcast() -> None:
    gradient = np.ones((4, 3))
    np.testing.assert_allclose(graph.unbroadcast(gradient, (3,)), [4.0, 4.0, 4.0])
    np.testing.assert_allclose(graph.unbroadcast(gradient, (4, 1)), np.full((4, 1), 3.0))
    with pytest.raises(ValueError, match="does not broadcast"):
        graph.unbroadcast(gradient, (2,))


def test_two_layer_network_gradients_match_numerical() -> None:
    params = {
        "W1": RNG.normal(size=(4, 5)),
        "b1": RNG.normal(size=5),
        "W2": RNG.normal(size=(5, 3)),
        "b2": RNG.normal(size=3),
    }
    net = graph.TwoLayerNetwork(**params)
    net.loss(X, Y)
    gradients = net.gradients()
    for name, value in params.items():

        def f(t, name=name):
            return graph.TwoLayerNetwork(**{**params, name: t}).loss(X, Y)

        assert (
            gradcheck.relative_error(gradients[name], gradcheck.numerical_gradient(f, value)) < 1e-6
        )


@pytest.mark.parametrize("node_class", [graph.Subtract, graph.Divide])
def test_subtract_and_divide_backward_match_numerical_gradients(node_class) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 2)), rng.uniform(1.0, 2.0, size=(2,))  # b broadcasts over rows
    upstream = rng.normal(size=(3, 2))
    node = node_class()
    node.forward(a, b)
    da, db = node.backward(upstream)

    def error(x, y):
        return float(np.sum(node_class().forward(x, y) * upstream))

    np.testing.assert_allclose(
        da, gradcheck.numerical_gradient(lambda t: error(t, b), a), rtol=1e-6
    )
    np.testing.assert_allclose(
        db, gradcheck.numerical_gradient(lambda t: error(a, t), b), rtol=1e-6
    )


def test_sqrt_backward_and_domain() -> None:
    node = graph.Sqrt()
    x = np.array([0.25, 4.0])
    np.testing.assert_allclose(node.forward(x), [0.5, 2.0])
    np.testing.assert_allclose(node.backward(np.ones(2))[0], [1.0, 0.25])
    with pytest.raises(ValueError, match="positive inputs"):
        graph.Sqrt().forward(np.array([0.0]))
    with pytest.raises(ValueError, match="denominator has a zero"):
        graph.Divide().forward(1.0, np.array([0.0]))


def test_mean_and_square_backward() -> None:
    mean = graph.Mean()
    np.testing.assert_allclose(mean.forward(np.array([1.0, 2.0]), np.array([3.0, 6.0])), [2.0, 4.0])
    shares = mean.backward(np.array([3.0, -3.0]))
    assert len(shares) == 2
    np.testing.assert_allclose(shares[0], [1.5, -1.5])
    square = graph.Square()
    square.forward(np.array([-2.0, 3.0]))
    np.testing.assert_allclose(square.backward(np.ones(2))[0], [-4.0, 6.0])
    with pytest.raises(ValueError, match="at least one input"):
        graph.Mean().forward()
