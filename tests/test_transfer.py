"""Transfer-learning helpers around keras.applications.MobileNetV2 (random weights offline)."""

from __future__ import annotations

import numpy as np
import pytest

from dlnotes import runtime

runtime.import_quietly("tensorflow")
import keras  # noqa: E402

from dlnotes import training, transfer  # noqa: E402


@pytest.fixture(scope="module")
def built() -> tuple[keras.Model, keras.Model]:
    return transfer.build_transfer_model(5, image_size=32, input_size=32, seed=0)


def test_backbone_starts_frozen_and_only_the_head_trains(built) -> None:
    model, backbone = built
    assert model.input.dtype == "uint8" and model.output_shape == (None, 5)
    assert not backbone.trainable
    head = model.get_layer("logits")
    assert transfer.trainable_parameters(model) == head.count_params()


def test_unfreeze_from_keeps_early_layers_and_batch_norm_frozen(built) -> None:
    _, backbone = built
    count = transfer.unfreeze_from(backbone, 100)
    trainable = [layer for layer in backbone.layers if layer.trainable]
    assert count == len(trainable) > 0
    assert all(backbone.layers.index(layer) >= 100 for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert transfer.unfreeze_from(backbone, backbone.layers[140].name) < count
    backbone.trainable = False


def test_batch_norm_statistics_do_not_move_while_fine_tuning() -> None:
    model, backbone = transfer.build_transfer_model(3, image_size=32, input_size=32, seed=1)
    transfer.unfreeze_from(backbone, 0)
    bn = next(
        layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    before = np.array(bn.moving_mean)
    training.compile_classifier(model, training.make_optimizer("adam", 1e-3))
    images = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3)).astype("uint8")
    model.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
    np.testing.assert_array_equal(np.array(bn.moving_mean), before)
    kernel = backbone.layers[-3]
    assert kernel.trainable or not kernel.weights  # conv layers after index 0 train


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.3}, "alpha must be one of"),
        ({"input_size": 16}, "at least 32×32, got 16"),
        ({"num_classes": 1}, "at least 2, got 1"),
        ({"weights": "/nowhere/weights.h5"}, "weights file not found: /nowhere/weights.h5"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    arguments = {"num_classes": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        transfer.build_transfer_model(**arguments)


def test_unfreeze_rejects_unknown_layers(built) -> None:
    _, backbone = built
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        transfer.unfreeze_from(backbone, "nope")
    with pytest.raises(ValueError, match="first_trainable must be in"):
        transfer.unfreeze_from(backbone, 10_000)
