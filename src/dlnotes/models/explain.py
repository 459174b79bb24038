"""Which pixels decide a prediction: Grad-CAM, and an occlusion test of what it shows.

Grad-CAM (Selvaraju et al., 2017) weighs each channel ``k`` of a convolutional layer's output
``A`` by the mean gradient of the class score ``y_c`` over the channel's positions,
``α_k = mean_ij ∂y_c/∂A_k[i, j]``, and keeps the positive part of the weighted sum,
``ReLU(Σ_k α_k A_k)``: a coarse map, at the layer's resolution, of the regions that raise the score.
Whether such a map is *faithful* — whether the model really depends on those pixels — is a
separate question, which :func:`occlude` helps answer: hide the pixels the map marks and see how
much the score drops, against hiding the same number of pixels it does not mark.

The gradients come from ``tf.GradientTape``: the TensorFlow backend is required.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlnotes import runtime


def _tensorflow() -> Any:
    backend = runtime.keras_backend()
    if backend != "tensorflow":
        raise ValueError(
            f"Grad-CAM needs the TensorFlow backend (gradients by tape), not {backend}"
        )
    return runtime.import_quietly("tensorflow")


def channel_weights(upper: Any, features: Any, classes: Any) -> np.ndarray:
    """Grad-CAM's channel weights: the mean gradient of each class score over each channel.

    Args:
        upper: Callable from a layer's output ``(N, h, w, K)`` to the logits ``(N, C)``.
        features: That layer's output for a batch of images.
        classes: The class whose score to differentiate, one per image, ``(N,)``.

    Returns:
        ``α`` of shape ``(N, K)``: ``α[n, k] = mean_ij ∂y[n, classes[n]] / ∂features[n, i, j, k]``.

    Raises:
        ValueError: On a backend other than TensorFlow, or without one class per image.
    """
    tf = _tensorflow()
    targets = np.asarray(classes, dtype=np.int32)
    features = tf.convert_to_tensor(features)
    if targets.shape != (features.shape[0],):
        raise ValueError(
            f"need one class per image: {features.shape[0]} images, got {targets.shape}"
        )
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = upper(features, training=False)
        scores = tf.gather(logits, targets, axis=1, batch_dims=1)
    gradients = tape.gradient(scores, features)
    weights: np.ndarray = tf.reduce_mean(gradients, axis=(1, 2)).numpy()
    return weights


def grad_cam(lower: Any, upper: Any, images: Any, classes: Any) -> np.ndarray:
    """Grad-CAM maps of a model split at a convolutional layer, one per image.

    Args:
        lower: Callable from images to the layer's output ``(N, h, w, K)``.
        upper: Callable from that output to the logits ``(N, C)``.
        images: The batch of images ``lower`` takes.
        classes: The class to explain for each image (e.g. the predicted one), ``(N,)``.

    Returns:
        ``(N, h, w)`` float32 maps ``ReLU(Σ_k α_k A_k)`` (:func:`channel_weights`), each scaled
        to a maximum of 1 (all zeros where nothing raises the score).

    Raises:
        ValueError: On a backend other than TensorFlow, or without one class per image.
    """
    _tensorflow()
    features = np.asarray(lower(images, training=False))
    weights = channel_weights(upper, features, classes)
    maps = np.maximum(np.einsum("nhwk,nk->nhw", features, weights), 0.0)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    scaled: np.ndarray = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
    return scaled.astype(np.float32)


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(N, h, w)`` maps bilinearly to ``(N, *size)``, e.g. to overlay them on the images.

    Raises:
        ValueError: For maps that are not a batch of 2-D arrays.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {maps.shape}")
    keras = runtime.import_quietly("keras")
    resized = keras.ops.image.resize(maps[..., None], size, interpolation="bilinear")
    return np.asarray(keras.ops.convert_to_numpy(resized))[..., 0]


def top_fraction(maps: np.ndarray, fraction: float, *, largest: bool = True) -> np.ndarray:
    """Boolean masks of each map's ``fraction`` of positions with the largest (or smallest) values.

    Args:
        maps: ``(N, H, W)`` maps.
        fraction: Share of the positions to mark, in (0, 1).
        largest: Mark the largest values (else the smallest).

    Returns:
        ``(N, H, W)`` boolean masks with ``round(fraction·H·W)`` positions set in each.

    Raises:
        ValueError: For a fraction outside (0, 1) or maps that are not ``(N, H, W)``.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {maps.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    flat = maps.reshape(len(maps), -1)
    count = max(1, round(fraction * flat.shape[1]))
    order = np.argsort(-flat if largest else flat, axis=1, kind="stable")[:, :count]
    masks = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(masks, order, True, axis=1)
    return masks.reshape(maps.shape)


def occlude(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Replace the masked pixels of each image by that image's mean colour.

    Args:
        images: ``(N, H, W, C)`` images (any dtype).
        masks: ``(N, H, W)`` booleans, True where the image is hidden.

    Returns:
        The occluded copy, in the images' dtype.

    Raises:
        ValueError: If the masks do not match the images.
    """
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=bool)
    if images.ndim != 4 or masks.shape != images.shape[:3]:
        raise ValueError(
            f"need images (N, H, W, C) and masks (N, H, W), got {images.shape} and {masks.shape}"
        )
    mean = images.mean(axis=(1, 2), keepdims=True).astype(images.dtype)
    return np.where(masks[..., None], mean, images)
