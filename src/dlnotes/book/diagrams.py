"""Diagrams drawn by code when the book is built: computational graphs and network structure.

Everything is plain matplotlib, so the book needs no system package (no graphviz):

* :func:`draw_circuit` draws a :class:`dlnotes.theory.circuits.Circuit` (a scalar expression of
  :mod:`dlnotes.theory.graph` nodes, backpropagated) with the forward value (green, above) and
  the gradient (red, below) on every wire;
* :func:`draw_layer_graph` draws the layers of a small functional Keras model — one block of the
  ResNet — with their output shapes, from the model's own layer graph;
* :func:`draw_network` draws the blocks of the whole ResNet (:func:`dlnotes.models.inspection.
  block_table`) with their output shapes.

Because the diagrams are computed from the running code, they cannot drift from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from dlnotes import models
from dlnotes.theory.circuits import Circuit

GATE_LABELS = {
    "add": "+",
    "subtract": "−",
    "multiply": "×",
    "divide": "÷",
    "max": "max",
    "sigmoid": "σ",
    "sqrt": "√",
    "square": "x²",
    "mean": "mean",
}
VALUE_COLOUR = "#1b7837"
GRADIENT_COLOUR = "#b2182b"


def circuit_columns(circuit: Circuit) -> dict[str, int]:
    """Drawing column of every value of a circuit.

    An operation sits one column right of its latest input, an input one column left of its first
    use (so that a constant used late, such as a scale, sits next to the gate that uses it
    instead of far away in column 0).

    Args:
        circuit: The circuit.

    Returns:
        ``{value name: column}``, from 0.
    """
    column: dict[str, int] = {}
    for name in circuit.values:
        if name in circuit.operations:
            sources = circuit.operations[name].inputs
            column[name] = 1 + max(column.get(source, 0) for source in sources)
        else:
            column[name] = 0
    for name in circuit.values:
        if name not in circuit.operations:
            users = [op for op, (_, sources) in circuit.operations.items() if name in sources]
            if users:
                column[name] = max(0, min(column[user] for user in users) - 1)
    return column


def _gate_label(circuit: Circuit, name: str) -> str:
    """The text inside an operation's gate: its ``label=``, else the node's symbol."""
    node = circuit.operations[name].node
    return circuit.labels.get(name) or GATE_LABELS.get(node.name, node.name)


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure | SubFigure, Axes]:
    fig: Figure | SubFigure
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    ax.set_axis_off()
    return fig, ax


def draw_circuit(
    circuit: Circuit, *, ax: Axes | None = None, title: str | None = None
) -> Figure | SubFigure:
    """Draw a circuit after :meth:`~dlnotes.theory.circuits.Circuit.backward`: values above the
    wires, gradients below.

    Args:
        circuit: A circuit whose backward pass has run.
        ax: Axes to draw into (default: a new figure).
        title: Optional title.

    Returns:
        The figure that holds the axes (the subfigure when ``ax`` lies in one).

    Raises:
        ValueError: If the backward pass has not run.
    """
    if circuit.output is None:
        raise ValueError("run circuit.backward() before drawing: the gradients are not known")
    column = circuit_columns(circuit)
    inputs = [name for name in circuit.values if name not in circuit.operations]
    y = {name: 1.4 * (len(inputs) - 1 - i) for i, name in enumerate(inputs)}
    y.update({name: -1.4 * row for name, row in circuit.rows.items() if name in inputs})
    for name, (_, sources) in circuit.operations.items():
        y[name] = (
            -1.4 * circuit.rows[name]
            if name in circuit.rows
            else float(np.mean([y[source] for source in sources]))
        )
    x = {name: 2.2 * column[name] for name in circuit.values}
    width = 2.2 * max(column.values()) + 3.5
    height = max(y.values()) - min(y.values()) + 1.4
    scale = min(1.0, 10.0 / width)
    fig, ax = _new_axes(ax, (scale * width, scale * height + 0.4))

    def wire(
        start: tuple[float, float], end: tuple[float, float], value: float, grad: float
    ) -> None:
        ax.add_patch(
            FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.35", lw=1.2)
        )
        middle = (0.6 * start[0] + 0.4 * end[0], 0.6 * start[1] + 0.4 * end[1])
        ax.annotate(
            f"{value:.3g}",
            middle,
            xytext=(0, 5),
            textcoords="offset points",
            ha="center",
            va="bottom",
            color=VALUE_COLOUR,
            fontsize=9,
            fontweight="bold",
        )
        ax.annotate(
            f"{grad:.3g}",
            middle,
            xytext=(0, -5),
            textcoords="offset points",
            ha="center",
            va="top",
            color=GRADIENT_COLOUR,
            fontsize=9,
        )

    for name in inputs:
        ax.text(x[name] - 0.15, y[name], name, ha="right", va="center", fontsize=11)
    for name, (_, sources) in circuit.operations.items():
        label = _gate_label(circuit, name)
        for index, source in enumerate(sources):
            start = (x[source] + (0.3 if source in circuit.operations else 0.0), y[source])
            grad = circuit.edge_gradients.get((source, name, index), 0.0)
            wire(start, (x[name] - 0.3, y[name]), circuit.values[source], grad)
        ax.add_patch(Circle((x[name], y[name]), 0.3, facecolor="#deebf7", edgecolor="0.2"))
        ax.text(
            x[name], y[name], label, ha="center", va="center", fontsize=11 if len(label) < 3 else 7
        )
    out = circuit.output
    end = (x[out] + 1.5, y[out])
    wire((x[out] + 0.3, y[out]), end, circuit.values[out], 1.0)
    ax.text(end[0] + 0.1, end[1], out, ha="left", va="center", fontsize=11)
    ax.set_xlim(min(x.values()) - 1.0, end[0] + 0.8)
    ax.set_ylim(min(y.values()) - 0.7, max(y.values()) + 0.7)
    ax.set_aspect("equal")
    legend = [
        Line2D([], [], color=VALUE_COLOUR, lw=3, label="forward value"),
        Line2D([], [], color=GRADIENT_COLOUR, lw=3, label="gradient ∂out/∂wire"),
    ]
    ax.legend(handles=legend, loc="upper right", fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def _shape_text(shape: Sequence[Any]) -> str:
    return "×".join(str(d) for d in shape)


def layer_description(layer: Any) -> str:
    """A short description of a Keras layer for diagrams, e.g. ``"Conv 3×3, 16, stride 2"``.

    Args:
        layer: A Keras layer.

    Returns:
        The description.
    """
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        kernel = _shape_text(layer.kernel_size)
        stride = f", stride {layer.strides[0]}" if layer.strides[0] != 1 else ""
        return f"Conv {kernel}, {layer.filters}{stride}"
    if isinstance(layer, keras.layers.InputLayer):
        return "input"
    names = {"BatchNormalization": "BatchNorm", "GlobalAveragePooling2D": "GlobalAvgPool"}
    return names.get(type(layer).__name__, type(layer).__name__)


def _layer_colour(description: str) -> str:
    for prefix, colour in (
        ("Conv", "#c6dbef"),
        ("BatchNorm", "#fdd0a2"),
        ("ReLU", "#c7e9c0"),
        ("Add", "#fcbba1"),
    ):
        if description.startswith(prefix):
            return colour
    return "#eeeeee"


def draw_layer_graph(
    model: Any, *, ax: Axes | None = None, title: str | None = None
) -> Figure | SubFigure:
    """Draw the layers of a small functional Keras model top to bottom, with output shapes.

    Each layer sits one row below the deepest layer feeding it; layers on the same row are
    spread sideways. Connections that skip rows (shortcuts) are drawn as arcs.

    Args:
        model: A functional ``keras.Model`` — one block, a few dozen layers at most.
        ax: Axes to draw into (default: a new figure).
        title: Optional title (default: the model's name).

    Returns:
        The figure that holds the axes (the subfigure when ``ax`` lies in one).

    Raises:
        ValueError: If the model is not functional or has more than 60 layers.
    """
    parents = models.inbound_layers(model)
    if len(parents) > 60:
        raise ValueError(f"{model.name!r} has {len(parents)} layers; draw at most 60")
    layers = {layer.name: layer for layer in model.layers}
    depth: dict[str, int] = {}
    for name, sources in parents.items():
        depth[name] = 1 + max((depth[s] for s in sources), default=-1)
    height: dict[str, int] = {}
    for name in reversed(list(parents)):
        children = [child for child, sources in parents.items() if name in sources]
        height[name] = 1 + max((height[c] for c in children), default=-1)
    # Each layer continues the lane of a parent whose longest onward path it carries (its
    # "heir"); other branches, such as a projection shortcut, open a lane to the right.
    heir = {}
    for name in parents:
        children = [child for child, sources in parents.items() if name in sources]
        if children:
            heir[name] = max(children, key=lambda child: height[child])
    lane: dict[str, int] = {}
    for name, sources in parents.items():
        carried = [source for source in sources if heir.get(source) == name]
        if carried:
            lane[name] = lane[max(carried, key=lambda source: depth[source])]
        else:
            lane[name] = max(lane.values(), default=-1) + 1 if sources else 0
    position = {name: (4.6 * lane[name], -float(depth[name])) for name in parents}
    rows = max(depth.values()) + 1
    fig, ax = _new_axes(ax, (4.0 + 3.0 * max(lane.values()), 0.62 * rows + 0.8))
    for name, sources in parents.items():
        for source in sources:
            (x0, y0), (x1, y1) = position[source], position[name]
            skip = depth[name] - depth[source] > 1
            if skip and x0 == x1:  # an identity shortcut: an arc beside the column
                bend = 2.0 / (y0 - y1)  # bulges about one unit to the left
                start, end, style = (x0 - 1.5, y0), (x1 - 1.5, y1), f"arc3,rad={bend:.3f}"
            elif skip:  # a branch that rejoins: down its lane, then across
                start, end, style = (x0, y0 - 0.22), (x1 + 1.5, y1), "angle,angleA=-90,angleB=0"
            else:
                start, end, style = (x0, y0 - 0.22), (x1, y1 + 0.22), "arc3"
            ax.add_patch(
                FancyArrowPatch(
                    start,
                    end,
                    arrowstyle="-|>",
                    mutation_scale=10,
                    color="#cb181d" if skip else "0.35",
                    lw=1.4 if skip else 1.0,
                    connectionstyle=style,
                )
            )
    for name, (x, y) in position.items():
        layer = layers[name]
        description = layer_description(layer)
        shape = _shape_text(layer.output.shape[1:])
        ax.add_patch(
            FancyBboxPatch(
                (x - 1.5, y - 0.24),
                3.0,
                0.48,
                boxstyle="round,pad=0.02",
                facecolor=_layer_colour(description),
                edgecolor="0.3",
            )
        )
        ax.text(x, y + 0.06, description, ha="center", va="center", fontsize=8.5)
        ax.text(x, y - 0.13, shape, ha="center", va="center", fontsize=7, color="0.35")
    xs = [p[0] for p in position.values()]
    ax.set_xlim(min(xs) - 2.6, max(xs) + 2.6)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.set_title(title if title is not None else model.name, fontsize=10)
    return fig


def draw_network(
    blocks: Sequence[models.Block], *, ax: Axes | None = None, title: str | None = None
) -> Figure | SubFigure:
    """Draw the blocks of a network top to bottom (from :func:`~dlnotes.models.block_table`).

    Each box names the block and its kind and shows its output shape and parameter count; box
    widths grow with the number of channels, so the narrowing resolution and widening channels
    are visible at a glance.

    Args:
        blocks: The rows of the table.
        ax: Axes to draw into (default: a new figure).
        title: Optional title.

    Returns:
        The figure that holds the axes (the subfigure when ``ax`` lies in one).

    Raises:
        ValueError: If ``blocks`` is empty.
    """
    if not blocks:
        raise ValueError("draw_network needs at least one block, got none")
    fig, ax = _new_axes(ax, (8.0, 0.55 * len(blocks) + 0.6))
    channels = [block.output_shape[-1] for block in blocks]
    smallest, largest = np.log2(min(channels)), np.log2(max(channels))
    span = max(largest - smallest, 1.0)
    colours = {"identity bottleneck": "#c6dbef", "projection bottleneck": "#fcbba1"}
    for row, block in enumerate(blocks):
        y = -float(row)
        width = 2.0 + 3.0 * (np.log2(block.output_shape[-1]) - smallest) / span
        ax.add_patch(
            FancyBboxPatch(
                (-width / 2, y - 0.2),
                width,
                0.4,
                boxstyle="round,pad=0.02",
                facecolor=colours.get(block.kind, "#eeeeee"),
                edgecolor="0.3",
            )
        )
        repeat = f"{block.count} × " if block.count > 1 else ""
        ax.text(0, y, f"{repeat}{block.kind}", ha="center", va="center", fontsize=8.5)
        ax.text(-3.0, y, block.name, ha="right", va="center", fontsize=8.5)
        ax.text(
            3.0,
            y,
            f"{_shape_text(block.output_shape):<12} {block.parameters:>10,} params",
            ha="left",
            va="center",
            fontsize=8.5,
            family="monospace",
        )
        if row:
            ax.add_patch(
                FancyArrowPatch(
                    (0, y + 0.8), (0, y + 0.2), arrowstyle="-|>", mutation_scale=9, color="0.4"
                )
            )
    ax.set_xlim(-6.5, 8.5)
    ax.set_ylim(-len(blocks) + 0.4, 0.6)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
