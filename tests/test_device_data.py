"""Images in accelerator memory: the lookup layer, the index batches and the trainer's models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlnotes import runtime

runtime.import_quietly("tensorflow")
import keras  # noqa: E402

from dlnotes import models  # noqa: E402
from dlnotes.data import device_data  # noqa: E402


def _images(count: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_image_lookup_gathers_the_named_images() -> None:
    images = _images(10)
    lookup = device_data.ImageLookup(images)
    gathered = np.asarray(lookup(np.array([3, 0, 3], dtype="int32")))
    np.testing.assert_array_equal(gathered, images[[3, 0, 3]])
    assert lookup.images.dtype == "uint8" and not lookup.trainable_weights


def test_image_lookup_stays_out_of_saved_weights(tmp_path: Path) -> None:
    index = keras.Input((), dtype="int32")
    x = device_data.ImageLookup(_images(500, 16), name="lookup")(index)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(x))
    model = keras.Model(index, keras.layers.Dense(2, name="dense")(x))
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    assert path.stat().st_size < 100_000  # the 384 kB of images are not in the file
    other = device_data.ImageLookup(_images(2, 16, seed=1), name="lookup")
    index2 = keras.Input((), dtype="int32")
    y = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(other(index2)))
    reloaded = keras.Model(index2, keras.layers.Dense(2, name="dense")(y))
    reloaded.load_weights(path)
    np.testing.assert_array_equal(
        reloaded.get_layer("dense").get_weights()[0], model.get_layer("dense").get_weights()[0]
    )
    np.testing.assert_array_equal(np.asarray(other.images), _images(2, 16, seed=1))


LARGE_TABLE_UNDER_DATA_PARALLEL = """
import numpy as np, keras
from dlnotes.data.device_data import ImageLookup
devices = keras.distribution.list_devices()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
images = np.random.default_rng(0).integers(0, 256, (2700, 64, 64, 3), dtype=np.uint8)
layer = ImageLookup(images, name="image_lookup")
out = keras.ops.convert_to_numpy(layer(np.array([5, 2699, 0])))
assert (out == images[[5, 2699, 0]]).all()
print(len(devices), layer.images.value.sharding.is_fully_replicated)
"""


def test_a_large_image_table_is_replicated_under_jax_data_parallel() -> None:
    """Above 250 MB × devices Keras jit-compiles a variable's initialiser (the H100 case)."""
    pytest.importorskip("jax")
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    result = subprocess.run(
        [sys.executable, "-c", LARGE_TABLE_UNDER_DATA_PARALLEL],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["2", "True"]


def test_image_lookup_rejects_non_uint8_images() -> None:
    with pytest.raises(ValueError, match=r"uint8 array, got float64 \(2, 4, 4, 3\)"):
        device_data.ImageLookup(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        device_data.ImageLookup(np.zeros((0, 4, 4, 3), dtype=np.uint8))


def test_training_batches_are_full_shuffled_and_new_each_epoch() -> None:
    labels = np.arange(103) % 7
    batches = device_data.IndexBatches(labels, 7, 10, shuffle=True, seed=3)
    assert len(batches) == 10  # 103 // 10: the 3 left over wait for another epoch

    def epoch() -> np.ndarray:
        rows = []
        for i in range(len(batches)):
            inputs, targets = batches[i]
            assert set(inputs) == {"index"} and inputs["index"].dtype == np.int32
            np.testing.assert_array_equal(targets.argmax(axis=1), labels[inputs["index"]])
            rows.append(inputs["index"])
        batches.on_epoch_end()
        return np.concatenate(rows)

    first, second = epoch(), epoch()
    assert len(set(first)) == 100 and len(set(second)) == 100
    assert not np.array_equal(first, second)
    again = device_data.IndexBatches(labels, 7, 10, shuffle=True, seed=3, first_epoch=1)
    np.testing.assert_array_equal(again[0][0]["index"], second[:10])  # resuming continues


def test_training_batches_carry_the_mixing_parameters() -> None:
    labels = np.arange(40) % 4
    batches = device_data.IndexBatches(
        labels,
        4,
        8,
        shuffle=True,
        mix_mode="cutmix",
        mixing_inputs=True,
        offset=100,
        image_size=(8, 8),
    )
    inputs, targets = batches[0]
    assert set(inputs) == {"index", "partner", "box", "mix_weight"}
    np.testing.assert_array_equal(inputs["partner"], inputs["index"][::-1])
    assert inputs["index"].min() >= 100
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    mixed = inputs["mix_weight"] > 0
    assert mixed.any()
    own = targets[np.arange(8), labels[inputs["index"] - 100]]
    assert np.all(own[~mixed] == 1.0)


def test_evaluation_batches_pad_with_zero_weights() -> None:
    labels = np.arange(23) % 5
    batches = device_data.IndexBatches(labels, 5, 10, shuffle=False, offset=7)
    assert len(batches) == 3
    indices, weights = [], []
    for i in range(3):
        inputs, _, sample_weights = batches[i]
        indices.append(inputs["index"])
        weights.append(sample_weights)
    indices, weights = np.concatenate(indices), np.concatenate(weights)
    np.testing.assert_array_equal(indices[:23], np.arange(23) + 7)
    np.testing.assert_array_equal(weights, [1.0] * 23 + [0.0] * 7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.array([], dtype=int)}, "non-empty 1-D"),
        ({"batch_size": 11}, "batch of 11 does not fit the 10 images"),
        ({"mix_mode": "blend"}, "mix_mode must be one of"),
        ({"mix_mode": "mixup"}, "needs a model with mixing inputs"),
    ],
)
def test_index_batches_reject_bad_arguments(kwargs, message) -> None:
    arguments = {"labels": np.arange(10) % 2, "num_classes": 2, "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        device_data.IndexBatches(shuffle=True, **arguments)
    with pytest.raises(IndexError):
        device_data.IndexBatches(np.arange(10) % 2, 2, 4, shuffle=True)[2]


def test_training_models_share_one_backbone() -> None:
    images = _images(6, 16)
    backbone = models.build_resnet(3, (1,), 8, input_shape=(16, 16, 3))
    built = models.build_training_models(
        backbone, images, [120.0] * 3, [60.0] * 3, padding=2, seed=0, mix=True
    )
    assert set(built.train.input) == {"index", "partner", "box", "mix_weight"}
    indices = np.array([0, 5], dtype="int32")
    direct = np.asarray(built.inference(images[indices]))
    inputs = {
        "index": indices,
        "partner": indices[::-1],
        "box": np.zeros((2, 4), dtype="int32"),
        "mix_weight": np.zeros(2, dtype="float32"),
    }
    np.testing.assert_allclose(built.train(inputs, training=False), direct, rtol=1e-4, atol=1e-5)
    mirrored = np.asarray(built.inference(images[indices][:, :, ::-1]))
    np.testing.assert_allclose(
        built.flip_averaged({"index": indices}), (direct + mirrored) / 2, rtol=1e-4, atol=1e-5
    )
    assert models.forward_flops(built.inference) == models.forward_flops(backbone)
    with pytest.raises(ValueError, match=r"takes images of shape \(N, 16, 16, 3\), got .*8, 8, 3"):
        models.build_training_models(backbone, _images(2, 8), [0.0] * 3, [1.0] * 3)
