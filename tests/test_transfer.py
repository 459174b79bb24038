"""Transfer-learning helpers around keras.applications.MobileNetV2: weights, models, fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import ArchiveServer, pretrained_dir
from dlnotes import runtime
from dlnotes.runtime import paths

runtime.import_quietly("tensorflow")
import keras  # noqa: E402

from dlnotes import training  # noqa: E402
from dlnotes.models import transfer  # noqa: E402


@pytest.fixture(scope="module")
def built() -> tuple[keras.Model, keras.Model]:
    return transfer.build_transfer_model(5, image_size=32, input_size=32, alpha=0.35, seed=0)


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
    model, backbone = transfer.build_transfer_model(
        3, image_size=32, input_size=32, alpha=0.35, seed=1
    )
    transfer.unfreeze_from(backbone, 0)
    bn = next(
        layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    before = np.array(bn.moving_mean)
    training.compile_classifier(model, training.make_optimizer("adam", 1e-3))
    images = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3)).astype("uint8")
    model.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
    np.testing.assert_array_equal(np.array(bn.moving_mean), before)
    convolutions = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and all(layer.trainable for layer in convolutions)  # unfrozen from 0
    assert not any(
        layer.trainable
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


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


def _pooled_features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.Model(model.input, model.get_layer("pool").output).predict(images, verbose=0)


def test_pretrained_weights_come_from_the_configured_folder(monkeypatch) -> None:
    if pretrained_dir() is None:
        pytest.skip("needs the real MobileNetV2 weights (../shared/models)")
    monkeypatch.setenv("DLNOTES_PRETRAINED_DIR", str(pretrained_dir()))
    weights = transfer.pretrained_backbone_weights()
    assert weights == str(pretrained_dir() / paths.MOBILENET_V2_NO_TOP_WEIGHTS)
    images = np.random.default_rng(0).integers(0, 256, size=(4, 64, 64, 3)).astype("uint8")
    pretrained, _ = transfer.build_transfer_model(3, input_size=64, weights=weights, seed=0)
    random_init, _ = transfer.build_transfer_model(3, input_size=64, weights=None, seed=0)
    assert np.abs(_pooled_features(pretrained, images)).mean() > 0.05
    # Random init in inference mode: every block shrinks the signal, the features vanish.
    assert np.abs(_pooled_features(random_init, images)).mean() < 1e-6


def test_pretrained_weights_are_downloaded_without_the_folder(
    server: ArchiveServer, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DLNOTES_PRETRAINED_DIR", raising=False)
    monkeypatch.setattr(transfer, "KERAS_WEIGHTS_URL", server.url("/keras/"))
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    with pytest.raises(paths.PretrainedUnavailable, match="could not be downloaded"):
        transfer.pretrained_backbone_weights(cache_dir=tmp_path)
    server.files[f"/keras/{name}"] = b"weights"
    downloaded = transfer.pretrained_backbone_weights(cache_dir=tmp_path)
    assert Path(downloaded) == tmp_path / "models" / name
    assert Path(downloaded).read_bytes() == b"weights"


def test_scratch_model_trains_every_layer_with_batch_statistics() -> None:
    keras.utils.set_random_seed(0)
    model = transfer.build_scratch_model(3, image_size=32, input_size=32, alpha=0.35, seed=0)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert isinstance(backbone, keras.Model) and backbone.trainable
    assert transfer.trainable_parameters(model) > 0.9 * sum(
        int(np.prod(w.shape)) for w in model.weights if "moving" not in w.path
    )
    bn = next(
        layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    before = np.array(bn.moving_mean)
    images = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3)).astype("uint8")
    model(images, training=True)  # as inside fit
    assert not np.array_equal(np.array(bn.moving_mean), before)  # training mode: statistics move
    with pytest.raises(ValueError, match="at least 2, got 1"):
        transfer.build_scratch_model(1)


def test_batch_norm_momentum_reaches_nested_layers() -> None:
    model = transfer.build_scratch_model(3, image_size=32, input_size=32, alpha=0.35, seed=0)
    layers = transfer.batch_norm_layers(model)
    assert layers and {layer.momentum for layer in layers} == {0.999}  # keras.applications'
    assert transfer.set_batch_norm_momentum(model, 0.9) == len(layers)
    assert {layer.momentum for layer in layers} == {0.9}
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.0"):
        transfer.set_batch_norm_momentum(model, 1.0)


def test_recalibrated_statistics_are_the_average_of_the_batch_statistics() -> None:
    inputs = keras.Input((4,))
    frozen = keras.layers.BatchNormalization(name="frozen")
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="free")(frozen(inputs)))
    frozen.trainable = False
    model.get_layer("free").momentum = 0.99
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(60, 4)).astype("float32")
    assert transfer.recalibrate_batch_norm(model, data, batch_size=20) == 1
    free = model.get_layer("free")
    batches = data.reshape(3, 20, 4) / np.sqrt(1 + frozen.epsilon)  # the frozen layer: x/√(1+ε)
    np.testing.assert_allclose(free.moving_mean, batches.mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(free.moving_variance, batches.var(axis=1).mean(axis=0), rtol=1e-4)
    assert free.momentum == 0.99  # restored
    np.testing.assert_array_equal(frozen.moving_mean, np.zeros(4))  # untouched
    with pytest.raises(ValueError, match="batch_size must be at least 2, got 1"):
        transfer.recalibrate_batch_norm(model, data, batch_size=1)
    with pytest.raises(ValueError, match="one batch of 100 images, got 60"):
        transfer.recalibrate_batch_norm(model, data, batch_size=100)


def test_recalibrated_validation_logs_metrics_with_fresh_statistics() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(8)(inputs)
    hidden = keras.layers.BatchNormalization(momentum=0.999, name="bn")(dense)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    training.compile_classifier(model, training.make_optimizer("adam", 1e-2))
    data = np.random.default_rng(0).normal(5.0, 3.0, size=(48, 4)).astype("float32")
    labels = np.arange(48) % 3
    callback = transfer.RecalibratedValidation(data, (data[:12], labels[:12]), batch_size=8)
    history = model.fit(data, labels, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    assert len(history.history["val_accuracy"]) == 2 and "val_loss" in history.history
    bn = model.get_layer("bn")
    logged = np.array(bn.moving_mean)
    assert not np.allclose(logged, 0.0, atol=0.5)  # momentum 0.999 alone would stay near 0
    transfer.recalibrate_batch_norm(model, data, batch_size=8)  # the same data, no randomness
    np.testing.assert_allclose(np.array(bn.moving_mean), logged, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="got batch size 100 and 48 images"):
        transfer.RecalibratedValidation(data, (data, labels), batch_size=100)
