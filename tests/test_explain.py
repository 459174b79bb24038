"""Grad-CAM and occlusion (dlnotes.models.explain), and splitting a transfer model for them."""

from __future__ import annotations

import numpy as np
import pytest

from dlnotes import runtime

keras = runtime.import_quietly("keras")

from dlnotes.models import explain, transfer  # noqa: E402


def test_grad_cam_of_a_pooled_linear_head_is_the_class_weighted_sum() -> None:
    rng = np.random.default_rng(0)
    features = rng.uniform(size=(3, 4, 5, 6)).astype("float32")
    weights = rng.normal(size=(6, 2)).astype("float32")
    inputs = keras.Input((4, 5, 6))
    dense = keras.layers.Dense(2, use_bias=False)
    upper = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([weights])
    classes = np.array([0, 1, 1])
    np.testing.assert_allclose(
        explain.channel_weights(upper, features, classes), weights[:, classes].T / 20, rtol=1e-5
    )
    maps = explain.grad_cam(lambda x, training: x, upper, features, classes)
    # ∂y_c/∂A_k[i, j] = W[k, c] / (h·w), the same at every position: α_k = W[k, c] / 20.
    expected = np.maximum(np.einsum("nhwk,kn->nhw", features, weights[:, classes] / 20), 0)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"3 images, got \(2,\)"):
        explain.grad_cam(lambda x, training: x, upper, features, classes[:2])


def test_masks_occlusion_and_upsampling() -> None:
    maps = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    top = explain.top_fraction(maps, 0.25)
    bottom = explain.top_fraction(maps, 0.25, largest=False)
    assert top.sum(axis=(1, 2)).tolist() == [4, 4] and not (top & bottom).any()
    assert top[0, 3].all() and bottom[0, 0].all()  # the largest values are in the last row
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[:, :2] = 200  # half bright: mean 100
    hidden = explain.occlude(images, top)
    assert hidden.dtype == np.uint8 and (hidden[0, 3] == 100).all() and (hidden[0, 0] == 200).all()
    assert explain.upsample(maps, (8, 8)).shape == (2, 8, 8)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\), got 1.0"):
        explain.top_fraction(maps, 1.0)
    with pytest.raises(ValueError, match="masks"):
        explain.occlude(images, top[:, :2])


def test_a_transfer_model_split_at_a_layer_computes_the_same_logits() -> None:
    keras.utils.set_random_seed(0)
    model, backbone = transfer.build_transfer_model(3, image_size=32, input_size=48, alpha=0.35)
    lower, upper = transfer.split_at(model, backbone, "block_6_expand_relu")
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3)).astype("uint8")
    np.testing.assert_allclose(
        np.asarray(upper(lower(images))), np.asarray(model(images)), rtol=1e-4, atol=1e-5
    )
    assert lower.output.shape[1:3] == (6, 6)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        transfer.split_at(model, backbone, "nope")
