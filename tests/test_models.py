"""The ResNet builder, its blocks and the in-model augmentation (TensorFlow backend in CI)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shift_flip_candidates
from dlnotes import runtime

runtime.import_quietly("tensorflow")
import keras  # noqa: E402

from dlnotes import models  # noqa: E402
from dlnotes.data import augmentation  # noqa: E402


def _expected_parameters(num_classes: int, levels: tuple[int, ...], width: int) -> int:
    """Count the parameters from the architecture's description, independently of Keras."""

    def conv(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout

    def bn(c: int) -> int:
        return 4 * c  # gamma, beta, moving mean, moving variance

    def projection(cin: int, cout: int, inner: int) -> int:
        return (
            bn(cin)
            + conv(1, cin, cout)
            + conv(1, cin, inner)
            + bn(inner)
            + conv(3, inner, inner)
            + bn(inner)
            + conv(1, inner, cout)
        )

    def bottleneck(c: int) -> int:
        inner = c // 4
        return (
            bn(c)
            + conv(1, c, inner)
            + bn(inner)
            + conv(3, inner, inner)
            + bn(inner)
            + conv(1, inner, c)
        )

    total = conv(3, 3, width) + projection(width, width, width // 4)
    channels = width
    for repeats in levels:
        total += repeats * bottleneck(channels)
        total += projection(channels, 2 * channels, channels // 2)
        channels *= 2
    return total + bn(channels) + channels * num_classes + num_classes


@pytest.mark.parametrize(
    ("num_classes", "levels", "width", "pinned"),
    [(200, (4, 6, 3, 2), 64, 3_133_960), (200, (4, 6, 3, 2), 32, 842_536), (10, (1, 1), 16, None)],
)
def test_parameter_counts(num_classes, levels, width, pinned) -> None:
    model = models.build_resnet(num_classes, levels, width)
    assert model.count_params() == _expected_parameters(num_classes, levels, width)
    if pinned is not None:
        assert model.count_params() == pinned


def test_output_shapes_and_named_layers() -> None:
    model = models.build_resnet(7, (1, 2), 16, input_shape=(32, 32, 3))
    assert model.output_shape == (None, 7)
    names = {layer.name for layer in model.layers}
    assert {
        "stem_conv",
        "entry_add",
        "level1_block1_add",
        "level1_downsample_add",
        "logits",
    } <= names
    assert model.get_layer("level0_downsample_add").output.shape == (None, 16, 16, 32)
    assert model.get_layer("level1_downsample_add").output.shape == (None, 8, 8, 64)
    logits = model(np.zeros((2, 32, 32, 3), "float32"))
    assert logits.shape == (2, 7)


def test_variants_and_mixed_precision() -> None:
    assert models.resnet_full_width(200).count_params() == 3_133_960
    assert models.resnet_half_width(200).count_params() == 842_536
    model = models.build_resnet(5, (1,), 8, input_shape=(16, 16, 3), dtype="mixed_bfloat16")
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "at least 2, got 1"),
        ({"width": 30}, "divisible by 4"),
        ({"width": 32.0}, "positive integer, got 32.0"),
        ({"levels": ()}, "at least one level"),
        ({"levels": (2, 0)}, "every entry of levels"),
        ({"input_shape": (60, 60, 3)}, "divisible by 2\\*\\*4"),
    ],
)
def test_builder_rejects_bad_arguments(kwargs, message) -> None:
    arguments = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        models.build_resnet(**arguments)


def test_forward_flops_counts_convolutions_and_dense() -> None:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    assert models.forward_flops(model) == 2 * 8 * 8 * 4 * 3 * 3 * 3 + 2 * 4 * 5
    backbone = models.build_resnet(200)
    wrapped = models.with_preprocessing(backbone, [0.0] * 3, [1.0] * 3)
    assert models.forward_flops(wrapped) == models.forward_flops(backbone)


def test_one_training_step_changes_the_weights() -> None:
    model = models.build_resnet(4, (1,), 8, input_shape=(16, 16, 3))
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(
        np.random.default_rng(0).normal(size=(8, 16, 16, 3)), np.arange(8) % 4
    )
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_random_shift_flip_is_a_reflected_shift_and_flip() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(6, 12, 12, 3)).astype("float32")
    layer = augmentation.RandomShiftFlip(padding=2, seed=1)
    outputs = np.asarray(layer(images, training=True))
    for image, output in zip(images, outputs, strict=True):
        assert any(np.array_equal(output, c) for c in shift_flip_candidates(image, 2))
    assert any(not np.array_equal(o, i) for o, i in zip(outputs, images, strict=True))
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    clone = augmentation.RandomShiftFlip.from_config(layer.get_config())
    assert clone.padding == 2 and clone.seed == 1


def test_random_shift_flip_rejects_bad_padding() -> None:
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        augmentation.RandomShiftFlip(padding=-1)
    with pytest.raises(ValueError, match="smaller than the image"):
        augmentation.RandomShiftFlip(padding=8)(np.zeros((1, 8, 8, 3), "float32"), training=True)


def test_with_preprocessing_takes_uint8_and_normalises() -> None:
    backbone = models.build_resnet(3, (1,), 8, input_shape=(16, 16, 3))
    model = models.with_preprocessing(
        backbone, [100.0, 110.0, 120.0], [50.0, 60.0, 70.0], augment=False
    )
    assert model.input.dtype == "uint8"
    images = np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 3)).astype("uint8")
    normalised = (images.astype("float32") - [100.0, 110.0, 120.0]) / [50.0, 60.0, 70.0]
    np.testing.assert_allclose(
        model(images), backbone(normalised.astype("float32")), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="need 3 means and stds"):
        models.with_preprocessing(backbone, [0.0], [1.0])
    with pytest.raises(ValueError, match="std must be positive"):
        models.with_preprocessing(backbone, [0.0] * 3, [1.0, 0.0, 1.0])
