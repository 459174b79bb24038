"""Computational graphs of scalars: forward values and backpropagation through gates.

A :class:`Circuit` wires the nodes of :mod:`dlnotes.theory.graph` into a graph of named scalar
values, computes each value as it is added and backpropagates from an output, keeping the gradient
of every value and of every wire. :func:`batch_norm_circuit` builds batch normalisation of two
values from elementary gates. :mod:`dlnotes.book.diagrams` draws circuits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from dlnotes.theory import graph


class Operation(NamedTuple):
    """One operation of a :class:`Circuit`: a graph node applied to earlier values.

    Attributes:
        node: The node (used by this operation only: nodes cache their inputs).
        inputs: Names of the values it takes, in the node's argument order.
    """

    node: graph.Node[...]
    inputs: tuple[str, ...]


class Circuit:
    """A scalar computational graph built from :mod:`dlnotes.theory.graph` nodes.

    Add inputs with :meth:`input` and operations with :meth:`apply` (each computes its forward
    value at once), then call :meth:`backward`. A value used by several operations receives the
    sum of their gradients, as the chain rule requires.

    ``row`` and ``label`` are hints for :func:`dlnotes.book.diagrams.draw_circuit` (where to draw
    a value, what to write in a gate); they do not change any value.

    Attributes:
        values: Forward value of every input and operation, by name, in the order added.
        operations: The :class:`Operation` that computed each non-input value.
        gradients: ``∂output/∂value`` after :meth:`backward`.
        edge_gradients: The share of the gradient that flows along each wire, keyed by
            ``(source, operation, argument index)``, after :meth:`backward`.
        output: The value :meth:`backward` differentiated (None before).
        rows: Drawing rows given with ``row=``.
        labels: Gate texts given with ``label=``.

    Example:
        >>> circuit = Circuit()
        >>> x, y, z = circuit.input("x", -2.0), circuit.input("y", 5.0), circuit.input("z", -4.0)
        >>> q = circuit.apply("q", graph.Add(), x, y)
        >>> f = circuit.apply("f", graph.Multiply(), q, z)
        >>> circuit.backward(f)["x"]
        -4.0
    """

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.operations: dict[str, Operation] = {}
        self.gradients: dict[str, float] = {}
        self.edge_gradients: dict[tuple[str, str, int], float] = {}
        self.output: str | None = None
        self.rows: dict[str, float] = {}
        self.labels: dict[str, str] = {}

    def _new_name(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a value needs a non-empty name, got {name!r}")
        if name in self.values:
            raise ValueError(f"the circuit already has a value named {name!r}")
        return name

    def input(self, name: str, value: float, *, row: float | None = None) -> str:
        """Add an input (a leaf) and return its name.

        Args:
            name: A new, unique name.
            value: Its value.
            row: Where to draw it, in rows from the top (default: inputs stacked in order).

        Returns:
            ``name``, to pass to :meth:`apply`.

        Raises:
            ValueError: For a duplicate or empty name.
        """
        self.values[self._new_name(name)] = float(value)
        if row is not None:
            self.rows[name] = float(row)
        return name

    def apply(
        self,
        name: str,
        node: graph.Node[...],
        *inputs: str,
        label: str | None = None,
        row: float | None = None,
    ) -> str:
        """Apply a fresh graph node to earlier values and store its forward value.

        Args:
            name: A new, unique name for the result.
            node: A new :class:`dlnotes.theory.graph.Node` (nodes keep a cache: one node per use).
            *inputs: Names of earlier values, in the node's argument order.
            label: Text inside the gate when drawn (default: the gate's symbol, e.g. ``+``).
            row: Where to draw the gate, in rows from the top (default: level with the mean of
                its inputs).

        Returns:
            ``name``.

        Raises:
            ValueError: For a duplicate name or an unknown input.
        """
        self._new_name(name)
        unknown = [value for value in inputs if value not in self.values]
        if unknown or not inputs:
            raise ValueError(f"{name!r} needs earlier values as inputs, got unknown {unknown}")
        if any(node is operation.node for operation in self.operations.values()):
            raise ValueError(f"node {node.name!r} is already used: give each operation its own")
        result = node.forward(*(self.values[value] for value in inputs))
        self.values[name] = float(result)
        self.operations[name] = Operation(node, tuple(inputs))
        if label:
            self.labels[name] = label
        if row is not None:
            self.rows[name] = float(row)
        return name

    def backward(self, output: str | None = None) -> dict[str, float]:
        """Backpropagate from ``output`` (default: the last operation), starting from 1.

        Args:
            output: Name of the value to differentiate.

        Returns:
            ``{value name: ∂output/∂value}`` for every value the output depends on.

        Raises:
            ValueError: If the circuit has no operation or ``output`` is unknown.
        """
        if not self.operations:
            raise ValueError("the circuit has no operation to differentiate")
        output = output if output is not None else list(self.operations)[-1]
        if output not in self.values:
            raise ValueError(f"unknown output {output!r}; values are {sorted(self.values)}")
        self.output = output
        self.gradients = {output: 1.0}
        self.edge_gradients = {}
        for name in reversed(list(self.operations)):
            if name not in self.gradients:
                continue
            node, inputs = self.operations[name]
            local = node.backward(np.asarray(self.gradients[name]))
            for index, (source, gradient) in enumerate(zip(inputs, local, strict=True)):
                self.edge_gradients[(source, name, index)] = float(gradient)
                self.gradients[source] = self.gradients.get(source, 0.0) + float(gradient)
        return dict(self.gradients)


def batch_norm_circuit(
    x: Sequence[float], upstream: Sequence[float], *, eps: float = 1e-3
) -> Circuit:
    """Batch normalisation of two values as a circuit of elementary gates, ready to draw.

    ``μ = mean(x₁, x₂)``, ``dᵢ = xᵢ − μ``, ``v = mean(d₁², d₂²)``, ``σ = √(v + ε)``,
    ``x̂ᵢ = dᵢ / σ``, and ``e = w₁x̂₁ + w₂x̂₂`` with the upstream gradients ``w``; the scale and
    shift (γ, β) are left out. Each ``xᵢ`` reaches ``x̂ᵢ`` along three paths — directly through
    ``dᵢ``, through ``μ`` and through ``σ`` — and the backward pass adds them. The first value's
    chain is drawn on top, the second's below, the shared statistics in between.

    Args:
        x: The two values of one channel.
        upstream: ``∂e/∂x̂`` for each.
        eps: The ε under the square root (Keras: 1e-3).

    Returns:
        The circuit, forward pass done; call :meth:`Circuit.backward` before drawing.

    Raises:
        ValueError: Unless exactly two values and two upstream gradients are given, or for
            equal values with ``eps = 0`` (no variance).
    """
    if len(x) != 2 or len(upstream) != 2:
        raise ValueError(
            f"need two values and two upstream gradients, got {len(x)} and {len(upstream)}"
        )
    c = Circuit()
    c.input("x₁", x[0], row=0)
    c.input("x₂", x[1], row=4)
    c.apply("μ", graph.Mean(), "x₁", "x₂", row=2)
    c.apply("d₁", graph.Subtract(), "x₁", "μ", row=0)
    c.apply("d₂", graph.Subtract(), "x₂", "μ", row=4)
    c.apply("d₁²", graph.Square(), "d₁", row=1)
    c.apply("d₂²", graph.Square(), "d₂", row=3)
    c.apply("v", graph.Mean(), "d₁²", "d₂²", row=2)
    c.input("ε", eps, row=3)
    c.apply("v + ε", graph.Add(), "v", "ε", row=2)
    c.apply("σ", graph.Sqrt(), "v + ε", row=2)
    c.apply("x̂₁", graph.Divide(), "d₁", "σ", row=0)
    c.apply("x̂₂", graph.Divide(), "d₂", "σ", row=4)
    c.input("w₁", upstream[0], row=-1)
    c.input("w₂", upstream[1], row=5)
    c.apply("w₁x̂₁", graph.Multiply(), "w₁", "x̂₁", row=0)
    c.apply("w₂x̂₂", graph.Multiply(), "w₂", "x̂₂", row=4)
    c.apply("e", graph.Add(), "w₁x̂₁", "w₂x̂₂", row=2)
    return c
