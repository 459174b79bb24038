"""Augmentation and normalisation, defined once: the trainer's layers and the tf.data pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from dlnotes import runtime

tf = runtime.import_quietly("tensorflow")

from dlnotes.data import augmentation, decoding, pipeline  # noqa: E402


def _reference(image: np.ndarray, shift: tuple[int, int], flip: bool) -> np.ndarray:
    """The shifted window of the reflect-padded image, then flipped (NumPy)."""
    size = image.shape[0]
    padded = np.pad(image, [(size - 1, size - 1), (size - 1, size - 1), (0, 0)], mode="reflect")
    top, left = size - 1 + shift[0], size - 1 + shift[1]
    window = padded[top : top + size, left : left + size]
    return window[:, ::-1] if flip else window


def test_shift_and_flip_is_a_reflected_shift_of_the_flipped_image() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 9, 9, 3), dtype=np.uint8)
    shifts = np.array([[0, 0], [2, -3], [-4, 1], [8, -8], [1, 1]], dtype=np.int32)
    flips = np.array([False, True, False, True, True])
    out = np.asarray(augmentation.shift_and_flip(images, shifts, flips))
    assert out.dtype == np.uint8
    for i in range(5):
        np.testing.assert_array_equal(out[i], _reference(images[i], tuple(shifts[i]), flips[i]))
    with pytest.raises(ValueError, match=r"static H, W, C, got \(9, 9, 3\)"):
        augmentation.shift_and_flip(images[0], shifts[:1], flips[:1])


def test_normalize_is_one_formula_for_the_layer_and_the_pipeline() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    mean, std = [100.0, 110.0, 120.0], [50.0, 60.0, 70.0]
    expected = (images.astype(np.float32) - mean) / std
    np.testing.assert_allclose(augmentation.normalize(images, mean, std), expected, rtol=1e-5)
    layer = augmentation.Normalize(mean, std)
    np.testing.assert_allclose(layer(images), expected, rtol=1e-5)
    assert augmentation.Normalize.from_config(layer.get_config()).std == std
    assert not layer.weights  # constants, nothing to save
    stats = pipeline.ChannelStats(tuple(mean), tuple(std))
    np.testing.assert_allclose(pipeline.normalize(images, stats).numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"std must be positive, got \[1.0, 0.0, 1.0\]"):
        augmentation.normalize(images, mean, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="need 3 means and stds, got 1 and 1"):
        augmentation.normalization([0.0], [1.0], 3)


def test_pixel_stats_of_batches_equal_those_of_the_array() -> None:
    images = np.random.default_rng(2).integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    whole = decoding.pixel_stats(images)
    streamed = decoding.pixel_stats(images[i : i + 7] for i in range(0, 30, 7))
    np.testing.assert_allclose(streamed[0], whole[0])
    np.testing.assert_allclose(streamed[1], whole[1])
    with pytest.raises(ValueError, match="needs at least one image, got none"):
        decoding.pixel_stats(iter([]))
