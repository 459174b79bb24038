from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import keras
import matplotlib.pyplot as plt
import pytest
from test_circuits import neuron

from dlnotes import models
from dlnotes.book import diagrams
from dlnotes.theory import circuits, graph


def test_draw_circuit_labels_every_wire() -> None:
    circuit = neuron()
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


def test_a_batch_norm_circuit_is_drawn_with_each_constant_beside_its_gate() -> None:
    circuit = circuits.batch_norm_circuit([0.5, -2.0], [1.3, 0.4], eps=1e-2)
    circuit.backward()
    columns = diagrams.circuit_columns(circuit)
    assert columns["ε"] == columns["v + ε"] - 1  # a constant beside its gate
    assert columns["x₁"] == 0 and columns["μ"] == 1
    fig = diagrams.draw_circuit(circuit)
    assert fig.axes
    plt.close(fig)


def test_a_gate_shows_its_label_or_its_symbol() -> None:
    circuit = circuits.Circuit()
    circuit.input("x", 2.0)
    circuit.apply("s", graph.Square(), "x")
    circuit.apply("f", graph.Sigmoid(), "s", label="act")
    circuit.backward()
    fig = diagrams.draw_circuit(circuit)
    texts = [text.get_text() for text in fig.axes[0].texts]
    assert "x²" in texts and "act" in texts and "σ" not in texts
    plt.close(fig)
