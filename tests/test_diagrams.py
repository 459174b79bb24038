from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest

from dlnotes import models
from dlnotes.book import diagrams
from dlnotes.theory import gradcheck, graph


def _neuron(values: dict[str, float]) -> diagrams.Circuit:
    circuit = diagrams.Circuit()
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
    circuit = _neuron(dict(zip(names, point, strict=True)))
    assert circuit.values["f"] == pytest.approx(1 / (1 + np.exp(-1.0)))
    gradients = circuit.backward()

    def f(values: np.ndarray) -> float:
        return _neuron(dict(zip(names, values, strict=True))).values["f"]

    numerical = gradcheck.numerical_gradient(f, point)
    ours = np.array([gradients[name] for name in names])
    assert gradcheck.relative_error(ours, numerical) < 1e-9


def test_gradients_add_up_where_a_value_is_used_twice() -> None:
    circuit = diagrams.Circuit()
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
    square = diagrams.Circuit()
    square.input("x", 1.5)
    square.apply("f", graph.Multiply(), "x", "x")
    assert square.backward()["x"] == pytest.approx(3.0)


def test_backward_from_an_intermediate_value() -> None:
    circuit = _neuron({"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0})
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
        build(diagrams.Circuit())


def test_a_node_object_serves_one_operation() -> None:
    circuit = diagrams.Circuit()
    circuit.input("x", 1.0)
    node = graph.Sigmoid()
    circuit.apply("a", node, "x")
    with pytest.raises(ValueError, match="already used"):
        circuit.apply("b", node, "a")
    with pytest.raises(ValueError, match="unknown output 'zzz'"):
        circuit.backward("zzz")


def test_draw_circuit_labels_every_wire() -> None:
    circuit = _neuron({"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0})
    with pytest.raises(ValueError, match=r"run circuit\.backward"):
        diagrams.draw_circuit(circuit)
    circuit.backward()
    fig = diagrams.draw_circuit(circuit, title="neuron")
    texts = [text.get_text() for text in fig.axes[0].texts]
    # 9 wires into gates + the output wire, each with a value and a gradient label.
    assert "0.731" in texts and "-0.197" in texts and "0.393" in texts
    assert sum(text.get_color() == diagrams.GRADIENT_COLOUR for text in fig.axes[0].texts) == 10
    plt.close(fig)


def test_layer_descriptions() -> None:
    assert diagrams.layer_description(keras.layers.Conv2D(16, 3, strides=2)) == (
        "Conv 3×3, 16, stride 2"
    )
    assert diagrams.layer_description(keras.layers.Conv2D(8, 1)) == "Conv 1×1, 8"
    assert diagrams.layer_description(keras.layers.BatchNormalization()) == "BatchNorm"
    assert diagrams.layer_description(keras.layers.ReLU()) == "ReLU"


def test_draw_layer_graph_of_a_projection_block() -> None:
    inputs = keras.Input((8, 8, 16))
    block = keras.Model(inputs, models.projection_block(inputs, 32, 8, strides=2, name="p"))
    fig = diagrams.draw_layer_graph(block)
    texts = [text.get_text() for text in fig.axes[0].texts]
    assert texts.count("Conv 1×1, 32, stride 2") == 1  # the shortcut
    assert "Conv 3×3, 8, stride 2" in texts and "4×4×32" in texts and "Add" in texts
    plt.close(fig)


def test_draw_network_shows_every_block() -> None:
    model = models.build_resnet(10, levels=(1, 1), width=16, input_shape=(16, 16, 3))
    blocks = models.block_table(model)
    fig = diagrams.draw_network(blocks, title="net")
    texts = [text.get_text() for text in fig.axes[0].texts]
    for block in blocks:
        assert block.name in texts
    assert any(text.startswith("4×4×64") for text in texts)
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one block"):
        diagrams.draw_network([])


def test_batch_norm_circuit_backpropagates_the_closed_form_gradient() -> None:
    from dlnotes.theory import batchnorm

    circuit = diagrams.batch_norm_circuit([0.5, -2.0], [1.3, 0.4], eps=1e-2)
    gradients = circuit.backward()
    closed = batchnorm.batch_norm_grads(
        np.array([[0.5], [-2.0]]), np.ones(1), np.zeros(1), np.array([[1.3], [0.4]]), eps=1e-2
    )[0]
    np.testing.assert_allclose([gradients["x₁"], gradients["x₂"]], closed.ravel(), rtol=1e-10)
    assert circuit.rows["x₁"] == 0 and circuit.rows["x₂"] == 4  # drawn as two symmetric chains
    assert circuit.columns()["ε"] == circuit.columns()["v + ε"] - 1  # a constant beside its gate
    fig = diagrams.draw_circuit(circuit)
    assert fig.axes
    with pytest.raises(ValueError, match="got 3 and 2"):
        diagrams.batch_norm_circuit([1.0, 2.0, 3.0], [1.0, 1.0])
