"""MixUp/CutMix: the host-side draws and targets, and the on-device blending layer."""

from __future__ import annotations

import numpy as np
import pytest

from dlnotes.data import mixing


def test_no_mixing_leaves_every_image_alone() -> None:
    batch = mixing.sample_mixing(np.random.default_rng(0), 5, (8, 8), mode="none")
    assert batch.boxes.shape == (5, 4) and batch.boxes.dtype == np.int32
    np.testing.assert_array_equal(batch.weights, 0)
    np.testing.assert_array_equal(batch.fractions, 0)


def test_cutmix_boxes_lie_inside_and_their_area_is_the_partner_share() -> None:
    batch = mixing.sample_mixing(np.random.default_rng(1), 400, (64, 48), mode="cutmix")
    top, bottom, left, right = batch.boxes.T
    assert np.all((0 <= top) & (top <= bottom) & (bottom <= 64))
    assert np.all((0 <= left) & (left <= right) & (right <= 48))
    np.testing.assert_array_equal(batch.weights, 1.0)
    np.testing.assert_allclose(batch.fractions, (bottom - top) * (right - left) / (64 * 48))
    # Beta(1, 1): the share is uniform before clipping, so its mean is near (and, clipped, below) ½.
    assert 0.3 < batch.fractions.mean() < 0.5


def test_mixup_weights_are_the_partner_share_over_the_whole_image() -> None:
    batch = mixing.sample_mixing(np.random.default_rng(2), 300, (8, 8), mode="mixup", alpha=0.4)
    np.testing.assert_array_equal(batch.boxes, np.tile([0, 8, 0, 8], (300, 1)))
    np.testing.assert_allclose(batch.weights, batch.fractions)
    assert 0 <= batch.fractions.min() and batch.fractions.max() <= 1
    # Beta(0.4, 0.4) puts most of its mass near 0 and 1.
    assert np.mean((batch.fractions < 0.1) | (batch.fractions > 0.9)) > 0.4


def test_probability_and_both_modes() -> None:
    rng = np.random.default_rng(3)
    untouched = mixing.sample_mixing(rng, 50, (8, 8), mode="cutmix", probability=0.0)
    np.testing.assert_array_equal(untouched.weights, 0)
    half = mixing.sample_mixing(rng, 4000, (8, 8), mode="cutmix", probability=0.5)
    assert 0.45 < np.mean(half.weights > 0) < 0.55
    both = mixing.sample_mixing(rng, 4000, (8, 8), mode="both")
    full_image = np.all(both.boxes == [0, 8, 0, 8], axis=1)
    cut = both.weights == 1.0
    assert 0.4 < cut.mean() < 0.6  # about half CutMix …
    assert np.all(full_image[~cut])  # … and MixUp over the whole image for the rest


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "blend"}, "mode must be one of"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"alpha": 0.0}, "alpha must be positive, got 0.0"),
        ({"probability": 1.5}, r"probability must be in \[0, 1\], got 1.5"),
    ],
)
def test_sample_mixing_rejects_bad_arguments(kwargs, message) -> None:
    arguments = {"batch_size": 4, "image_size": (8, 8), "mode": "cutmix", **kwargs}
    with pytest.raises(ValueError, match=message):
        mixing.sample_mixing(np.random.default_rng(0), **arguments)


def test_mix_targets_blend_one_hot_rows() -> None:
    targets = mixing.mix_targets(
        np.array([0, 1, 2]), np.array([2, 1, 0]), np.array([0.25, 0.5, 0.0]), 3
    )
    np.testing.assert_allclose(targets, [[0.75, 0, 0.25], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    assert targets.dtype == np.float32


@pytest.mark.parametrize(
    ("labels", "partners", "fractions", "message"),
    [
        ([0, 1], [1], [0.5, 0.5], "one length"),
        ([0, 3], [1, 0], [0.5, 0.5], r"labels must be in \[0, 3\), got \[0, 3\]"),
        ([0, 1], [1, -1], [0.5, 0.5], r"partner_labels must be in \[0, 3\)"),
        ([0, 1], [1, 0], [0.5, 1.5], r"fractions must be in \[0, 1\]"),
    ],
)
def test_mix_targets_rejects_bad_input(labels, partners, fractions, message) -> None:
    with pytest.raises(ValueError, match=message):
        mixing.mix_targets(np.array(labels), np.array(partners), np.array(fractions), 3)


def test_mix_images_pastes_the_box_and_blends_with_the_weight() -> None:
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 255, (3, 6, 5, 3)).astype("float32")
    partners = rng.uniform(0, 255, (3, 6, 5, 3)).astype("float32")
    boxes = np.array([[1, 4, 2, 5], [0, 6, 0, 5], [0, 6, 0, 5]], dtype="int32")
    weights = np.array([1.0, 0.25, 0.0], dtype="float32")
    layer = mixing.MixImages()
    mixed = np.asarray(layer([images, partners, boxes, weights], training=True))
    expected = images.copy()
    expected[0, 1:4, 2:5] = partners[0, 1:4, 2:5]  # CutMix: the partner's box
    expected[1] = 0.75 * images[1] + 0.25 * partners[1]  # MixUp: a blend of the whole image
    np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-3)
    at_inference = layer([images, partners, boxes, weights], training=False)
    np.testing.assert_array_equal(np.asarray(at_inference), images)
