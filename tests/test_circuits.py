"""The scalar circuits of the computational-graphs chapter: forward values and backpropagation."""

from __future__ import annotations

import numpy as np
import pytest

from dlnotes.theory import batchnorm, circuits, gradcheck, graph

NEURON = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}
"""The inputs of the sigmoid neuron of the computational-graphs chapter."""


def neuron(values: dict[str, float] = NEURON) -> circuits.Circuit:
    """The chapter's sigmoid neuron σ(w0·x0 + w1·x1 + w2) as a circuit (also drawn in
    test_diagrams.py)."""
    circuit = circuits.Circuit()
    for name in ("w0", "x0", "w1", "x1", "w2"):
        circuit.input(name, values[name])
    circuit.apply("a", graph.Multiply(), "w0", "x0")
    circuit.apply("b", graph.Multiply(), "w1", "x1")
    circuit.apply("s", graph.Add(), "a", "b")
    circuit.apply("u", graph.Add(), "s", "w2")
    circuit.apply("f", graph.Sigmoid(), "u")
    return circuit


def test_circuit_gradients_match_central_differences() -> None:
    names = ("w0", "x0", "w1", "x1", "w2")
    point = np.array([2.0, -1.0, -3.0, -2.0, -3.0])
    circuit = neuron(dict(zip(names, point, strict=True)))
    assert circuit.values["f"] == pytest.approx(1 / (1 + np.exp(-1.0)))
    gradients = circuit.backward()

    def f(values: np.ndarray) -> float:
        return neuron(dict(zip(names, values, strict=True))).values["f"]

    numerical = gradcheck.numerical_gradient(f, point)
    ours = np.array([gradients[name] for name in names])
    assert gradcheck.relative_error(ours, numerical) < 1e-9


def test_gradients_add_up_where_a_value_is_used_twice() -> None:
    circuit = circuits.Circuit()
    circuit.input("x", 3.0)
    circuit.input("y", -1.0)
    circuit.apply("p", graph.Multiply(), "x", "y")
    circuit.apply("m", graph.Max(), "x", "y")
    circuit.apply("f", graph.Add(), "p", "m")
    gradients = circuit.backward()
    assert gradients["x"] == pytest.approx(-1.0 + 1.0)
    assert gradients["y"] == pytest.approx(3.0)
    assert circuit.edge_gradients[("x", "p", 0)] == pytest.approx(-1.0)
    assert circuit.edge_gradients[("x", "m", 0)] == pytest.approx(1.0)
    square = circuits.Circuit()
    square.input("x", 1.5)
    square.apply("f", graph.Multiply(), "x", "x")
    assert square.backward()["x"] == pytest.approx(3.0)


def test_backward_from_an_intermediate_value() -> None:
    circuit = neuron({"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0})
    gradients = circuit.backward("s")
    assert gradients["w0"] == pytest.approx(-1.0) and "w2" not in gradients


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda c: (c.input("x", 1.0), c.input("x", 2.0)), "already has a value named 'x'"),
        (lambda c: c.input("", 1.0), "non-empty name"),
        (lambda c: c.apply("f", graph.Add(), "x", "nowhere"), r"unknown \['x', 'nowhere'\]"),
        (lambda c: c.backward(), "no operation"),
    ],
)
def test_circuit_rejects_bad_use(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(circuits.Circuit())


def test_a_node_object_serves_one_operation() -> None:
    circuit = circuits.Circuit()
    circuit.input("x", 1.0)
    node = graph.Sigmoid()
    circuit.apply("a", node, "x")
    with pytest.raises(ValueError, match="already used"):
        circuit.apply("b", node, "a")
    with pytest.raises(ValueError, match="unknown output 'zzz'"):
        circuit.backward("zzz")


def test_batch_norm_circuit_backpropagates_the_closed_form_gradient() -> None:
    circuit = circuits.batch_norm_circuit([0.5, -2.0], [1.3, 0.4], eps=1e-2)
    gradients = circuit.backward()
    closed = batchnorm.batch_norm_grads(
        np.array([[0.5], [-2.0]]), np.ones(1), np.zeros(1), np.array([[1.3], [0.4]]), eps=1e-2
    )[0]
    np.testing.assert_allclose([gradients["x₁"], gradients["x₂"]], closed.ravel(), rtol=1e-10)
    assert circuit.rows["x₁"] == 0 and circuit.rows["x₂"] == 4  # drawn as two symmetric chains
    with pytest.raises(ValueError, match="got 3 and 2"):
        circuits.batch_norm_circuit([1.0, 2.0, 3.0], [1.0, 1.0])


def test_labels_and_rows_are_drawing_hints_only() -> None:
    circuit = circuits.Circuit()
    circuit.input("x", 2.0, row=1)
    circuit.apply("f", graph.Square(), "x", label="sq", row=1)
    assert circuit.labels == {"f": "sq"} and circuit.rows == {"x": 1.0, "f": 1.0}
    assert circuit.operations["f"].inputs == ("x",)
    assert circuit.values["f"] == 4.0 and circuit.backward()["x"] == 4.0
