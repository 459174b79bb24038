"""Reading a built Keras model: costs, activations, receptive fields, blocks.

Parameters and FLOPs per layer (:func:`layer_costs`, :func:`forward_flops`), which layers feed
which (:func:`inbound_layers`), how many floats each layer outputs per example
(:func:`activation_floats`), the receptive field of every layer (:func:`model_receptive_fields`)
and the blocks of the course's ResNet (:func:`block_table`). Everything is read from the model, so
the chapters' tables and diagrams always show the network the code builds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from dlnotes.runtime import import_quietly

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr
layers = keras.layers


def layer_costs(model: keras.Model) -> dict[str, tuple[int, int]]:
    """Parameters and forward FLOPs per image of every convolution and dense layer.

    Two FLOPs per multiply-accumulate. Batch normalisation, activations, additions and pooling are
    left out (they are memory-bound and add well under 1 % of the arithmetic).

    Args:
        model: A built Keras model; nested models are included, their layer names prefixed with
            the nested model's name and a slash.

    Returns:
        ``{layer name: (parameters, FLOPs)}`` in layer order.
    """
    costs: dict[str, tuple[int, int]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for name, cost in layer_costs(layer).items():
                costs[f"{layer.name}/{name}"] = cost
        elif isinstance(layer, layers.Conv2D):
            kernel_h, kernel_w = layer.kernel_size
            in_channels = layer.input.shape[-1]
            _, out_h, out_w, out_channels = layer.output.shape
            macs = out_h * out_w * out_channels * kernel_h * kernel_w * in_channels // layer.groups
            costs[layer.name] = (layer.count_params(), 2 * macs)
        elif isinstance(layer, layers.Dense):
            costs[layer.name] = (layer.count_params(), 2 * layer.input.shape[-1] * layer.units)
    return costs


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass (see :func:`layer_costs`).

    A training step costs about 3× this (forward, gradient with respect to the activations,
    gradient with respect to the weights).

    Args:
        model: A built Keras model; nested models are counted too.

    Returns:
        Floating-point operations per image.
    """
    return int(sum(flops for _, flops in layer_costs(model).values()))


def _history_names(argument: Any) -> list[str]:
    """Names of the layers that produced the Keras tensors inside a serialised argument."""
    if isinstance(argument, dict):
        if argument.get("class_name") == "__keras_tensor__":
            return [argument["config"]["keras_history"][0]]
        return [name for value in argument.values() for name in _history_names(value)]
    if isinstance(argument, list | tuple):
        return [name for value in argument for name in _history_names(value)]
    return []


def inbound_layers(model: Any) -> dict[str, list[str]]:
    """Which layers feed each layer of a functional Keras model, read from its config.

    Args:
        model: A functional ``keras.Model`` (each layer called once).

    Returns:
        ``{layer name: [names of the layers whose outputs it takes]}`` in layer order; input
        layers map to an empty list.

    Raises:
        ValueError: If the model is not functional (a subclassed model has no layer graph) or a
            layer is called more than once.
    """
    config = model.get_config()
    if not isinstance(config, dict) or "layers" not in config:
        raise ValueError(f"{model.name!r} is not a functional model: it has no layer graph")
    graph = {}
    for layer in config["layers"]:
        nodes = layer.get("inbound_nodes", [])
        if len(nodes) > 1:
            raise ValueError(f"layer {layer['name']!r} is called {len(nodes)} times")
        graph[layer["name"]] = _history_names(nodes[0]) if nodes else []
    return graph


def activation_floats(model: Any) -> dict[str, int]:
    """Number of values each layer of a built model outputs for **one** example.

    The sum over all layers is what a training step keeps for the backward pass if every layer
    output is stored (frameworks keep roughly this; fusion and recomputation can keep less).
    Input layers are left out; a nested model counts as one layer (its outputs).

    Args:
        model: A built ``keras.Model`` with static output shapes.

    Returns:
        ``{layer name: values per example}`` in layer order.

    Raises:
        ValueError: If a layer's output shape has an unknown dimension besides the batch.
    """
    import keras

    counts = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        outputs = layer.output if isinstance(layer.output, list | tuple) else [layer.output]
        total = 0
        for output in outputs:
            shape = tuple(output.shape[1:])
            if any(dim is None for dim in shape):
                raise ValueError(f"layer {layer.name!r} has an unknown output shape {shape}")
            total += math.prod(shape)
        counts[layer.name] = total
    return counts


def model_receptive_fields(model: Any) -> dict[str, tuple[int, int]]:
    """Receptive field ``(size, jump)`` of every spatial layer of a functional model.

    Convolutions and pooling windows apply :func:`receptive_field`'s recurrence; every other
    layer with a 4-D output (normalisation, activations, additions, padding) takes the largest
    field among its inputs — an addition sees the union of its inputs' fields. Layers without
    spatial axes (global pooling, dense) are left out.

    Args:
        model: A functional ``keras.Model`` of images ``(N, H, W, C)``.

    Returns:
        ``{layer name: (size, jump)}`` in input pixels.
    """
    import keras

    graph = inbound_layers(model)
    fields: dict[str, tuple[int, int]] = {}
    for layer in model.layers:
        if len(layer.output.shape) != 4:
            continue
        parents = [fields[name] for name in graph[layer.name] if name in fields]
        size, jump = max(parents) if parents else (1, 1)
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            kernel, stride, dilation = (
                layer.kernel_size[0],
                layer.strides[0],
                layer.dilation_rate[0],
            )
        elif isinstance(layer, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D):
            kernel, stride, dilation = layer.pool_size[0], layer.strides[0], 1
        else:
            fields[layer.name] = (size, jump)
            continue
        fields[layer.name] = (size + (kernel - 1) * dilation * jump, jump * stride)
    return fields


class Block(NamedTuple):
    """One block of the course's ResNet, as read from the built model by :func:`block_table`.

    Attributes:
        name: The layer-name prefix of the block, e.g. ``"level0_block2"``; for merged blocks the
            first and last, e.g. ``"level0_block0…block3"``.
        kind: ``"identity bottleneck"``, ``"projection bottleneck"`` or the layer types.
        count: How many consecutive blocks of this kind and shape it stands for.
        output_shape: Output shape of one example, ``(H, W, C)`` or ``(C,)``.
        parameters: Parameters of all ``count`` blocks together.
    """

    name: str
    kind: str
    # The field shadows tuple.count(), which no caller of a Block uses; chapter 10 reads .count.
    count: int  # type: ignore[assignment]
    output_shape: tuple[int, ...]
    parameters: int


def _block_name(layer_name: str) -> str:
    parts = layer_name.split("_")
    return "_".join(parts[:2]) if parts[0].startswith("level") and len(parts) > 1 else parts[0]


def block_table(model: Any, *, collapse: bool = True) -> list[Block]:
    """The blocks of a network built by :func:`dlnotes.models.build_resnet`, in order.

    Layers are grouped by the prefix of their names (``stem``, ``entry``,
    ``level<i>_block<j>``, ``level<i>_downsample``, ``final``, ``pool``, ``logits``), so the
    table follows the built model and cannot drift from it.

    Args:
        model: A model from :func:`dlnotes.models.build_resnet` (its layer names).
        collapse: Merge consecutive identity bottlenecks of the same shape into one row.

    Returns:
        The blocks, the input layer first.
    """
    import keras

    groups: dict[str, list[Any]] = {}
    for layer in model.layers:
        groups.setdefault(_block_name(layer.name), []).append(layer)
    blocks: list[Block] = []
    for name, group in groups.items():
        layer_names = [layer.name for layer in group]
        if any(isinstance(layer, keras.layers.Add) for layer in group):
            shortcut = any(n.endswith("shortcut_conv") for n in layer_names)
            kind = "projection bottleneck" if shortcut else "identity bottleneck"
        else:
            kind = " → ".join(type(layer).__name__ for layer in group)
        shape = tuple(int(d) for d in group[-1].output.shape[1:])
        parameters = sum(layer.count_params() for layer in group)
        if (
            collapse
            and blocks
            and kind == "identity bottleneck"
            and blocks[-1].kind == kind
            and blocks[-1].output_shape == shape
        ):
            previous = blocks[-1]
            first = previous.name.split("…")[0]
            blocks[-1] = previous._replace(
                name=f"{first}…{name.split('_')[-1]}",
                count=previous.count + 1,
                parameters=previous.parameters + parameters,
            )
        else:
            blocks.append(Block(name, kind, 1, shape, parameters))
    return blocks
