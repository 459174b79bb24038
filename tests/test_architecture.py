from __future__ import annotations

import keras
import numpy as np
import pytest

from dlnotes import models
from dlnotes.theory import convolution

RNG = np.random.default_rng(0)


SHAPE_CASES = [
    (size, kernel_size, strides, padding)
    for size in (5, 8, 9, 64)
    for kernel_size in (1, 2, 3, 7)
    for strides in (1, 2, 3)
    for padding in ("valid", "same")
    if not (padding == "valid" and kernel_size > size)
]


@pytest.mark.parametrize(("size", "kernel_size", "strides", "padding"), SHAPE_CASES)
def test_output_size_matches_keras(size: int, kernel_size: int, strides: int, padding: str) -> None:
    layer = keras.layers.Conv2D(1, kernel_size, strides=strides, padding=padding)
    expected = layer.compute_output_shape((1, size, size, 1))[1]
    assert convolution.conv_output_size(size, kernel_size, strides=strides, padding=padding) == (
        expected
    )


def test_output_size_with_explicit_padding_and_dilation() -> None:
    assert convolution.conv_output_size(32, 3, padding=1) == 32
    assert convolution.conv_output_size(32, 3, strides=2, padding=1) == 16
    assert convolution.conv_output_size(10, 3, dilation_rate=2) == 6  # spans 5 pixels
    layer = keras.layers.Conv2D(1, 3, dilation_rate=2, padding="same")
    assert layer.compute_output_shape((1, 10, 10, 1))[1] == convolution.conv_output_size(
        10, 3, padding="same", dilation_rate=2
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: convolution.conv_output_size(0, 3), "size must be an integer ≥ 1, got 0"),
        (lambda: convolution.conv_output_size(8, 3, padding="full"), "got 'full'"),
        (lambda: convolution.conv_output_size(8, 3, padding=-1), "got -1"),
        (lambda: convolution.conv_output_size(2, 5), "does not fit an input of 2"),
        (lambda: convolution.same_padding(8, 3, strides=0), "strides must be an integer"),
        (lambda: convolution.conv_parameters(3, 6, 4, groups=4), "divisible by groups 4"),
        (lambda: convolution.conv_parameters((3, 3, 3), 6, 4), r"got \(3, 3, 3\)"),
        (lambda: convolution.receptive_field([(3,)]), r"got \(3,\)"),
        (lambda: convolution.receptive_field([(3, 0)]), "strides must be an integer ≥ 1, got 0"),
    ],
)
def test_bad_arguments_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_same_padding_puts_the_odd_zero_after() -> None:
    assert convolution.same_padding(64, 3, 1) == (1, 1)
    assert convolution.same_padding(64, 3, 2) == (0, 1)
    assert convolution.same_padding(63, 3, 2) == (1, 1)
    assert convolution.same_padding(224, 7, 2) == (2, 3)
    assert convolution.same_padding(64, 1, 2) == (0, 0)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_matches_keras(strides: int, padding: str) -> None:
    images = RNG.normal(size=(2, 10, 9, 3)).astype("float32")
    layer = keras.layers.Conv2D(5, (3, 2), strides=strides, padding=padding)
    expected = layer(images).numpy()
    kernel, bias = (weight.numpy() for weight in layer.weights)
    ours = convolution.conv2d(images, kernel, strides=strides, padding=padding) + bias
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_conv2d_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"got \(4, 4, 3\) and"):
        convolution.conv2d(np.zeros((4, 4, 3)), np.zeros((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="got 'full'"):
        convolution.conv2d(np.zeros((1, 4, 4, 3)), np.zeros((3, 3, 3, 1)), padding="full")


@pytest.mark.parametrize(
    ("layer", "in_channels", "groups"),
    [
        (keras.layers.Conv2D(8, 3), 4, 1),
        (keras.layers.Conv2D(8, (1, 5), use_bias=False), 4, 1),
        (keras.layers.Conv2D(8, 3, groups=2), 4, 2),
        (keras.layers.DepthwiseConv2D(3), 4, 4),
    ],
)
def test_parameter_count_matches_keras(layer, in_channels: int, groups: int) -> None:
    layer.build((None, 16, 16, in_channels))
    filters = in_channels if groups == in_channels else layer.filters
    count = convolution.conv_parameters(
        layer.kernel_size, in_channels, filters, use_bias=layer.use_bias, groups=groups
    )
    assert count == layer.count_params()


def test_receptive_field_recurrence() -> None:
    assert convolution.receptive_field([(3, 1), (3, 1)]) == [(3, 1), (5, 1)]
    assert convolution.receptive_field([(3, 2), (3, 2), (3, 1)]) == [(3, 2), (7, 4), (15, 4)]
    assert convolution.receptive_field([(3, 1, 2)]) == [(5, 1)]
    assert convolution.receptive_field([]) == []


def _gradient_extent(model: keras.Model, size: int) -> int:
    import tensorflow as tf

    image = tf.Variable(tf.ones((1, size, size, 1)))
    centre = model.output_shape[1] // 2
    with tf.GradientTape() as tape:
        output = model(image)[0, centre, centre, 0]
    rows = np.abs(tape.gradient(output, image).numpy()[0, :, :, 0]).sum(axis=1)
    return int(np.count_nonzero(rows))


def test_model_receptive_fields_agree_with_the_gradient() -> None:
    ones = {"kernel_initializer": "ones", "use_bias": False, "padding": "same"}
    inputs = keras.Input((48, 48, 1))
    branch = keras.layers.Conv2D(1, 3, name="a", **ones)(inputs)
    branch = keras.layers.Conv2D(1, 3, strides=2, name="b", **ones)(branch)
    shortcut = keras.layers.Conv2D(1, 1, strides=2, name="shortcut", **ones)(inputs)
    merged = keras.layers.Add(name="add")([shortcut, branch])
    pooled = keras.layers.AveragePooling2D(2, name="pool")(merged)  # max would route to one pixel
    outputs = keras.layers.Conv2D(1, 5, name="c", **ones)(pooled)
    model = keras.Model(inputs, outputs)
    fields = models.model_receptive_fields(model)
    assert fields["add"] == (5, 2)  # the branch's field, larger than the shortcut's (1, 2)
    assert fields["pool"] == (7, 4)
    assert fields["c"] == (23, 4)
    assert _gradient_extent(model, 48) == 23
    sequential = keras.Sequential(
        [keras.Input((32, 32, 1))]
        + [keras.layers.Conv2D(1, 3, strides=s, **ones) for s in (1, 2, 1, 2)]
    )
    chain = convolution.receptive_field([(3, 1), (3, 2), (3, 1), (3, 2)])
    assert _gradient_extent(sequential, 32) == chain[-1][0]


def test_inbound_layers_of_a_bottleneck_block() -> None:
    inputs = keras.Input((8, 8, 16), name="x")
    block = keras.Model(inputs, models.bottleneck_block(inputs, name="b"))
    graph = models.inbound_layers(block)
    assert graph["x"] == []
    assert graph["b_1_bn"] == ["x"]
    assert graph["b_add"] == ["x", "b_3_conv"]
    assert list(graph) == [layer.name for layer in block.layers]


def test_inbound_layers_needs_a_functional_model() -> None:
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="not a functional model"):
        models.inbound_layers(Subclassed(name="sub"))


def test_activation_floats_sums_every_layer_output() -> None:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="dense")(x))
    assert models.activation_floats(model) == {
        "conv": 256,
        "relu": 256,
        "pool": 4,
        "dense": 10,
    }


def test_block_table_follows_the_built_resnet() -> None:
    model = models.build_resnet(10, levels=(2, 1), width=16, input_shape=(16, 16, 3))
    blocks = models.block_table(model)
    names = [block.name for block in blocks]
    assert names == [
        "images",
        "stem",
        "entry",
        "level0_block0…block1",
        "level0_downsample",
        "level1_block0",
        "level1_downsample",
        "final",
        "pool",
        "logits",
    ]
    level0 = blocks[3]
    assert (level0.kind, level0.count, level0.output_shape) == (
        "identity bottleneck",
        2,
        (16, 16, 16),
    )
    assert blocks[4].kind == "projection bottleneck" and blocks[4].output_shape == (8, 8, 32)
    assert sum(block.parameters for block in blocks) == model.count_params()
    uncollapsed = models.block_table(model, collapse=False)
    assert len(uncollapsed) == len(blocks) + 1
    assert sum(block.parameters for block in uncollapsed) == model.count_params()
