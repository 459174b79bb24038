"""Transfer learning with a MobileNetV2 backbone from ``keras.applications``.

Two phases, as in the keras-io guide: (1) **feature extraction** — the backbone is frozen and only
a new classification head is trained; (2) **fine-tuning** — the top part of the backbone is
unfrozen and everything trains further with a learning rate about ten times lower. The backbone's
batch-normalisation layers stay frozen throughout (:func:`unfreeze_from`), which in Keras 3 keeps
them in inference mode, normalising with the statistics they were trained with. (The backbone is
also called with ``training=False``, as in the keras-io guide, but in Keras 3.15 ``fit`` overrides
that flag for nested models — keras-team/keras#20285 — so it is not what protects them.)

The ImageNet weights come from ``$DLNOTES_PRETRAINED_DIR`` when it is set, otherwise from Keras'
own download (:func:`pretrained_backbone_weights`). :func:`build_scratch_model` builds the same
network from random initialisation, trained as a whole, as the baseline that shows what the
pretrained weights are worth. Its batch-normalisation statistics need care:
``keras.applications`` sets their momentum to 0.999, a memory of about 1,000 steps, longer than a
short run, so the moving averages still describe the random initial network when ``fit``
evaluates it. :func:`recalibrate_batch_norm` recomputes them exactly, and
:class:`RecalibratedValidation` does so before every end-of-epoch evaluation
(:func:`set_batch_norm_momentum` is the other remedy: a shorter memory).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dlnotes import runtime
from dlnotes.data import download
from dlnotes.runtime import paths

if TYPE_CHECKING:
    import keras
    from keras import layers
else:
    keras = runtime.import_quietly("keras")
    layers = keras.layers

MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
"""Where ``keras.applications.MobileNetV2(weights="imagenet")`` downloads its weights from."""


def pretrained_backbone_weights(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The ImageNet weights of the MobileNetV2 1.0 feature extractor (no classifier), as a file.

    ``$DLNOTES_PRETRAINED_DIR/mobilenet_v2_1.0_224_no_top.weights.h5`` when the variable is set;
    otherwise the file ``keras.applications.MobileNetV2(weights="imagenet", include_top=False)``
    downloads for 224×224 inputs (cached in ``~/.keras/models``). Both hold the same weights of
    Google's ``mobilenet_v2_1.0_224`` checkpoint and suit any input size.

    Args:
        cache_dir: Where Keras keeps its downloads (default ``~/.keras``); the file goes into its
            ``models`` folder.

    Returns:
        The weights file, for :func:`build_transfer_model`'s ``weights``.

    Raises:
        dlnotes.runtime.paths.PretrainedUnavailable: Without ``$DLNOTES_PRETRAINED_DIR`` when the
            download fails.
        FileNotFoundError: If ``$DLNOTES_PRETRAINED_DIR`` lacks the file.
    """
    local = paths.pretrained_file(paths.MOBILENET_V2_NO_TOP_WEIGHTS)
    if local is not None:
        return str(local)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    try:
        downloaded: str = keras.utils.get_file(
            name,
            KERAS_WEIGHTS_URL + name,
            cache_subdir="models",
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        )
        return downloaded
    except Exception as error:  # get_file wraps URL errors in a bare Exception
        download.close_http_errors(error)
        raise paths.PretrainedUnavailable(
            f"the ImageNet weights could not be downloaded from {KERAS_WEIGHTS_URL} ({error}), "
            f"and {paths.PRETRAINED_DIR_ENV} is not set"
        ) from error


def _check_arguments(num_classes: int, input_size: int, alpha: float) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if alpha not in MOBILENET_ALPHAS:
        raise ValueError(f"alpha must be one of {MOBILENET_ALPHAS}, got {alpha!r}")
    if input_size < 32:
        raise ValueError(f"MobileNetV2 needs inputs of at least 32×32, got {input_size}")


def _assemble(
    backbone: keras.Model,
    num_classes: int,
    *,
    image_size: int,
    input_size: int,
    dropout: float,
    seed: int | None,
    inference_mode: bool,
    name: str,
) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="uint8_images")
    x = layers.Resizing(input_size, input_size, name="resize")(inputs)
    x = layers.RandomFlip("horizontal", seed=seed, name="random_flip")(x)
    x = layers.RandomRotation(0.05, fill_mode="reflect", seed=seed, name="random_rotation")(x)
    # MobileNetV2 saw pixels scaled to [-1, 1] (keras.applications.mobilenet_v2.preprocess_input).
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_minus_one_one")(x)
    x = backbone(x, training=False) if inference_mode else backbone(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def build_transfer_model(
    num_classes: int,
    *,
    image_size: int = 64,
    input_size: int = 96,
    alpha: float = 1.0,
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.2,
    seed: int | None = None,
) -> tuple[keras.Model, keras.Model]:
    """Build ``uint8 images → resize → augment → [−1, 1] → MobileNetV2 (frozen) → head``.

    Args:
        num_classes: Number of output logits (≥ 2).
        image_size: Height and width of the incoming images (Tiny ImageNet: 64).
        input_size: Resolution the backbone sees (larger inputs give the pretrained features more
            to work with, at a quadratic cost).
        alpha: Width multiplier of MobileNetV2 (the pretrained weights here are for 1.0).
        weights: ``None`` (random initialisation), ``"imagenet"`` (downloaded by Keras; needs the
            internet) or the path of a weights file for the same ``alpha``, e.g. from
            :func:`pretrained_backbone_weights`.
        dropout: Dropout rate before the head.
        seed: Seed of the augmentation layers.

    Returns:
        ``(model, backbone)``; the backbone starts frozen (hence in inference mode).

    Raises:
        ValueError: For an unsupported ``alpha``, an input smaller than 32 pixels, fewer than two
            classes or a weights file that does not exist.
    """
    _check_arguments(num_classes, input_size, alpha)
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise ValueError(f"weights file not found: {weights}")
    backbone = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3),
        include_top=False,
        weights=None if weights is None else os.fspath(weights),
        alpha=alpha,
    )
    backbone.trainable = False
    model = _assemble(
        backbone,
        num_classes,
        image_size=image_size,
        input_size=input_size,
        dropout=dropout,
        seed=seed,
        inference_mode=True,
        name="mobilenet_v2_transfer",
    )
    return model, backbone


def build_scratch_model(
    num_classes: int,
    *,
    image_size: int = 64,
    input_size: int = 96,
    alpha: float = 1.0,
    dropout: float = 0.2,
    seed: int | None = None,
) -> keras.Model:
    """The network of :func:`build_transfer_model`, randomly initialised and trained as a whole.

    Unlike the transfer model, every layer trains and batch normalisation runs in training mode
    during ``fit`` (normalising each batch and updating its statistics), as it must for a network
    that learns its features from scratch.

    Args:
        num_classes: Number of output logits (≥ 2).
        image_size: Height and width of the incoming images.
        input_size: Resolution the backbone sees.
        alpha: Width multiplier of MobileNetV2.
        dropout: Dropout rate before the head.
        seed: Seed of the augmentation layers.

    Returns:
        The model.

    Raises:
        ValueError: For an unsupported ``alpha``, an input smaller than 32 pixels or fewer than two
            classes.
    """
    _check_arguments(num_classes, input_size, alpha)
    backbone = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3), include_top=False, weights=None, alpha=alpha
    )
    return _assemble(
        backbone,
        num_classes,
        image_size=image_size,
        input_size=input_size,
        dropout=dropout,
        seed=seed,
        inference_mode=False,
        name="mobilenet_v2_from_scratch",
    )


def unfreeze_from(backbone: keras.Model, first_trainable: int | str) -> int:
    """Make the backbone trainable from one layer on, keeping the layers before it frozen.

    Batch-normalisation layers stay frozen as well. A frozen Keras 3 ``BatchNormalization`` runs
    in inference mode, normalising with its stored ImageNet statistics; unfrozen, it would run in
    training mode inside ``fit`` — the ``training=False`` the backbone was called with does not
    survive ``fit`` in Keras 3.15 (keras-team/keras#20285) — and overwrite those statistics.

    Args:
        backbone: The backbone returned by :func:`build_transfer_model`.
        first_trainable: Index or name of the first layer to train.

    Returns:
        Number of layers that are now trainable.

    Raises:
        ValueError: For an index out of range or an unknown layer name.
    """
    names = [layer.name for layer in backbone.layers]
    if isinstance(first_trainable, str):
        if first_trainable not in names:
            raise ValueError(f"no layer named {first_trainable!r} in {backbone.name}")
        start = names.index(first_trainable)
    else:
        if not 0 <= first_trainable < len(names):
            raise ValueError(f"first_trainable must be in [0, {len(names)}), got {first_trainable}")
        start = first_trainable
    backbone.trainable = True
    count = 0
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= start and not isinstance(layer, layers.BatchNormalization)
        count += layer.trainable
    return count


def batch_norm_layers(model: Any) -> list[Any]:
    """Every ``BatchNormalization`` layer of a model, nested models included, in layer order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batch_norm_layers(layer))
    return found


def set_batch_norm_momentum(model: Any, momentum: float) -> int:
    """Set the momentum of every batch-normalisation layer of a model (before compiling it).

    The moving averages forget with a time constant of ``1 / (1 − momentum)`` steps: about 1,000
    for ``keras.applications``' 0.999, 100 for Keras' default 0.99, 10 for 0.9. A network trained
    from scratch for fewer steps than that is evaluated with averages that still remember its
    random initialisation.

    Args:
        model: A Keras model.
        momentum: The new momentum, in [0, 1).

    Returns:
        Number of layers changed.

    Raises:
        ValueError: For a momentum outside [0, 1).
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    changed = batch_norm_layers(model)
    for layer in changed:
        layer.momentum = momentum
    return len(changed)


def recalibrate_batch_norm(model: Any, images: Any, *, batch_size: int = 100) -> int:
    """Recompute the moving statistics of a model's trainable batch normalisations from data.

    Each layer's moving mean and variance become the plain average of its batch statistics over
    ``images``, seen in batches of ``batch_size`` in training mode — the statistics the network
    was normalised with while training, now exact instead of an exponential average that may lag
    behind the weights (the "precise BN" of Wu and Johnson, 2021). Weights do not change; frozen
    batch normalisations (``trainable=False``) run in inference mode and keep their statistics.
    The model's other training-mode layers (augmentation, dropout) are active too, as in training.

    Args:
        model: A Keras model.
        images: Inputs, e.g. the training images.
        batch_size: Images per forward pass (≥ 2: one image has no variance to measure).

    Returns:
        Number of layers recalibrated.

    Raises:
        ValueError: For a batch size below 2 or fewer images than one batch.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2, got {batch_size}")
    batches = len(images) // batch_size
    if batches < 1:
        raise ValueError(f"need at least one batch of {batch_size} images, got {len(images)}")
    recalibrated = [layer for layer in batch_norm_layers(model) if layer.trainable]
    momenta = [layer.momentum for layer in recalibrated]
    try:
        for index in range(batches):
            for layer in recalibrated:  # moving ← (i·moving + batch) / (i + 1): a running mean
                layer.momentum = index / (index + 1)
            model(images[index * batch_size : (index + 1) * batch_size], training=True)
    finally:
        for layer, momentum in zip(recalibrated, momenta, strict=True):
            layer.momentum = momentum
    return len(recalibrated)


class RecalibratedValidation(keras.callbacks.Callback):  # type: ignore[misc]
    """``fit``'s validation, with batch-normalisation statistics recalibrated first, every epoch.

    At the end of each epoch the model's trainable batch normalisations get exact statistics from
    ``calibration_images`` (:func:`recalibrate_batch_norm`), then the model is evaluated on the
    validation data and the results are logged as ``val_<metric>``, like ``fit``'s own
    ``validation_data`` (which should then not be given as well).

    Args:
        calibration_images: Training images for the statistics.
        validation_data: ``(inputs, labels)``.
        batch_size: Batch size of the recalibration and of the evaluation (≥ 2).

    Raises:
        ValueError: For a batch size below 2 or fewer calibration images than one batch.
    """

    def __init__(
        self, calibration_images: Any, validation_data: tuple[Any, Any], *, batch_size: int = 100
    ) -> None:
        super().__init__()
        if batch_size < 2 or len(calibration_images) < batch_size:
            raise ValueError(
                f"need a batch size of at least 2 and at least one batch of calibration images, "
                f"got batch size {batch_size} and {len(calibration_images)} images"
            )
        self.calibration_images = calibration_images
        self.validation_data = validation_data
        self.batch_size = batch_size

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        recalibrate_batch_norm(self.model, self.calibration_images, batch_size=self.batch_size)
        inputs, labels = self.validation_data
        results = self.model.evaluate(
            inputs, labels, batch_size=self.batch_size, verbose=0, return_dict=True
        )
        if logs is not None:
            logs.update({f"val_{name}": float(value) for name, value in results.items()})


def split_at(model: Any, backbone: Any, layer: str) -> tuple[Any, Any]:
    """Split a model of :func:`build_transfer_model` at a layer of its backbone.

    Args:
        model: The transfer model (uint8 images → logits).
        backbone: Its backbone.
        layer: Name of a backbone layer, e.g. ``"block_13_expand_relu"``.

    Returns:
        ``(lower, upper)``: ``lower`` maps uint8 images to that layer's output (resizing and
        scaling as the model does, augmentation inactive at inference); ``upper`` maps the layer's
        output to the logits (the rest of the backbone, pooling, dropout and the head). In
        inference mode, ``upper(lower(x))`` equals ``model(x)``. Both share the model's weights.

    Raises:
        ValueError: For a layer name the backbone does not have.
    """
    names = [candidate.name for candidate in backbone.layers]
    if layer not in names:
        raise ValueError(f"no layer named {layer!r} in {backbone.name}")
    inner_lower = keras.Model(backbone.input, backbone.get_layer(layer).output)
    inner_upper = keras.Model(backbone.get_layer(layer).output, backbone.output)
    x = model.input
    for name in ("resize", "random_flip", "random_rotation", "to_minus_one_one"):
        x = model.get_layer(name)(x)
    lower = keras.Model(model.input, inner_lower(x), name=f"up_to_{layer}")
    features = keras.Input(inner_lower.output.shape[1:], name=f"{layer}_output")
    y = inner_upper(features)
    for name in ("pool", "dropout", "logits"):
        y = model.get_layer(name)(y)
    upper = keras.Model(features, y, name=f"from_{layer}")
    return lower, upper


def trainable_parameters(model: Any) -> int:
    """Number of trainable scalars of a model."""
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))
