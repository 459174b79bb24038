"""MixUp and CutMix: train on blends of two images with correspondingly blended labels.

Both replace a training pair ``(x, y)`` by a blend with a partner ``(x', y')``:

* **MixUp** (Zhang et al., 2018) takes the pixel-wise convex combination
  ``(1 − a)·x + a·x'`` with ``a ~ Beta(α, α)``;
* **CutMix** (Yun et al., 2019) pastes a random box of ``x'`` into ``x``; ``a`` is the fraction
  of the image the box covers.

The target is ``(1 − a)·onehot(y) + a·onehot(y')`` in both cases. The network can no longer
memorise single images, which is why these methods reduce over-fitting.

The work is split so that everything runs inside the compiled training step:

* the **host** draws the random boxes and weights (:func:`sample_mixing`) and blends the one-hot
  targets (:func:`mix_targets`) — a few hundred bytes per image;
* the **accelerator** blends the pixels with :class:`MixImages`, one formula for both methods:
  ``x + w·mask(box)·(x' − x)``: MixUp is a full-image box with ``w = a``, CutMix a partial box with
  ``w = 1``, and "no mixing" ``w = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes import runtime

if TYPE_CHECKING:
    import keras
    from keras import layers, ops
else:
    keras = runtime.import_quietly("keras")  # quietly: TensorFlow's first import logs to stderr
    layers, ops = keras.layers, keras.ops

MODES = ("none", "mixup", "cutmix", "both")


@dataclass(frozen=True)
class MixBatch:
    """Per-image blending parameters of one batch.

    Attributes:
        boxes: ``(B, 4)`` int32 rows ``(top, bottom, left, right)``, half-open pixel ranges of the
            partner's region.
        weights: ``(B,)`` float32 weight of the partner's pixels inside the box.
        fractions: ``(B,)`` float32 share ``a`` of the partner in the blended image (and target).
    """

    boxes: np.ndarray
    weights: np.ndarray
    fractions: np.ndarray


def sample_mixing(
    rng: np.random.Generator,
    batch_size: int,
    image_size: tuple[int, int],
    *,
    mode: str,
    alpha: float = 1.0,
    probability: float = 1.0,
) -> MixBatch:
    """Draw MixUp/CutMix parameters for a batch.

    Each image is mixed with probability ``probability``; with ``mode="both"`` each mixed image
    uses MixUp or CutMix with equal chance. ``λ ~ Beta(α, α)`` is the share of the image itself;
    CutMix cuts a box of area ``(1 − λ)·H·W`` (clipped at the borders, the share recomputed from
    the clipped box, as in the CutMix paper).

    Args:
        rng: Random generator.
        batch_size: Images in the batch (≥ 1).
        image_size: ``(H, W)``.
        mode: One of :data:`MODES`.
        alpha: Beta distribution parameter (> 0).
        probability: Share of images that are mixed, in [0, 1].

    Returns:
        The parameters.

    Raises:
        ValueError: For an unknown mode or an out-of-range argument.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    if not 0 <= probability <= 1:
        raise ValueError(f"probability must be in [0, 1], got {probability!r}")
    height, width = image_size
    boxes = np.tile(np.array([0, height, 0, width], dtype=np.int32), (batch_size, 1))
    weights = np.zeros(batch_size, dtype=np.float32)
    fractions = np.zeros(batch_size, dtype=np.float32)
    if mode == "none":
        return MixBatch(boxes, weights, fractions)
    share = rng.beta(alpha, alpha, size=batch_size)  # λ: share of the image itself
    mixed = rng.random(batch_size) < probability
    cut = np.full(batch_size, mode == "cutmix")
    if mode == "both":
        cut = rng.random(batch_size) < 0.5
    # MixUp: the whole image, partner weight 1 − λ.
    mixup = mixed & ~cut
    weights[mixup] = 1 - share[mixup]
    fractions[mixup] = 1 - share[mixup]
    cutmix = mixed & cut
    if cutmix.any():
        boxes[cutmix] = _cutmix_boxes(rng, share[cutmix], height, width)
        weights[cutmix] = 1.0
        top, bottom, left, right = boxes[cutmix].T
        fractions[cutmix] = (bottom - top) * (right - left) / (height * width)
    return MixBatch(boxes, weights, fractions)


def _cutmix_boxes(
    rng: np.random.Generator, share: np.ndarray, height: int, width: int
) -> np.ndarray:
    """CutMix boxes of area ``(1 − λ)·H·W`` at uniform centres, clipped at the borders.

    Args:
        rng: Random generator.
        share: ``(n,)`` shares λ of the images themselves.
        height: Image height H.
        width: Image width W.

    Returns:
        ``(n, 4)`` int32 rows ``(top, bottom, left, right)``.
    """
    ratio = np.sqrt(1 - share)
    cut_h, cut_w = np.round(ratio * height), np.round(ratio * width)
    centre_y = rng.integers(0, height, size=len(share))
    centre_x = rng.integers(0, width, size=len(share))
    top = np.clip(centre_y - cut_h // 2, 0, height)
    bottom = np.clip(centre_y + cut_h - cut_h // 2, 0, height)
    left = np.clip(centre_x - cut_w // 2, 0, width)
    right = np.clip(centre_x + cut_w - cut_w // 2, 0, width)
    return np.stack([top, bottom, left, right], axis=1).astype(np.int32)


def mix_targets(
    labels: np.ndarray,
    partner_labels: np.ndarray,
    fractions: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """Blend one-hot targets: ``(1 − a)·onehot(y) + a·onehot(y')``.

    Args:
        labels: ``(B,)`` integer labels of the images.
        partner_labels: ``(B,)`` integer labels of their partners.
        fractions: ``(B,)`` partner shares ``a`` in [0, 1].
        num_classes: Number of classes.

    Returns:
        ``(B, num_classes)`` float32 targets; each row sums to 1.

    Raises:
        ValueError: For mismatched lengths, labels outside ``[0, num_classes)`` or shares
            outside [0, 1].
    """
    labels = np.asarray(labels, dtype=np.int64)
    partner_labels = np.asarray(partner_labels, dtype=np.int64)
    fractions = np.asarray(fractions, dtype=np.float32)
    if not labels.shape == partner_labels.shape == fractions.shape or labels.ndim != 1:
        raise ValueError(
            "labels, partner_labels and fractions must be 1-D of one length, got shapes "
            f"{labels.shape}, {partner_labels.shape}, {fractions.shape}"
        )
    for name, values in (("labels", labels), ("partner_labels", partner_labels)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must be in [0, {num_classes}), got [{values.min()}, {values.max()}]"
            )
    if fractions.size and (fractions.min() < 0 or fractions.max() > 1):
        raise ValueError(f"fractions must be in [0, 1], got [{fractions.min()}, {fractions.max()}]")
    rows = np.arange(len(labels))
    targets = np.zeros((len(labels), num_classes), dtype=np.float32)
    targets[rows, labels] = 1 - fractions
    targets[rows, partner_labels] += fractions
    return targets


@keras.saving.register_keras_serializable(package="dlnotes")
class MixImages(layers.Layer):
    """Blend each image with its partner inside a box: ``x + w·mask(box)·(x' − x)``.

    Called on ``[images, partners, boxes, weights]`` with images and partners ``(B, H, W, C)``
    float, boxes ``(B, 4)`` int32 ``(top, bottom, left, right)`` and weights ``(B,)``. The box
    masks are built from index comparisons, so the layer has static shapes and compiles with
    XLA on every backend. At inference it returns the images unchanged.
    """

    def call(self, inputs: list[Any], training: bool | None = None) -> Any:
        images, partners, boxes, weights = inputs
        if not training:
            return images
        height, width = images.shape[1], images.shape[2]
        boxes = ops.cast(boxes, "int32")
        rows = ops.reshape(ops.arange(height, dtype="int32"), (1, height, 1))
        columns = ops.reshape(ops.arange(width, dtype="int32"), (1, 1, width))

        def edge(i: int) -> Any:
            return ops.reshape(boxes[:, i], (-1, 1, 1))

        inside = (rows >= edge(0)) & (rows < edge(1)) & (columns >= edge(2)) & (columns < edge(3))
        mask = ops.cast(inside, images.dtype) * ops.reshape(
            ops.cast(weights, images.dtype), (-1, 1, 1)
        )
        return images + ops.expand_dims(mask, -1) * (partners - images)

    def compute_output_shape(
        self, input_shape: list[tuple[int | None, ...]]
    ) -> tuple[int | None, ...]:
        return input_shape[0]
