"""Loading an image classifier from TF Hub or a local SavedModel, and calling it.

Keras 3 cannot put ``hub.KerasLayer`` in a model ("Only instances of `keras.Layer` can be added to
a Sequential model"): ``KerasLayer`` subclasses the Keras 2 layer class of ``tf_keras``. Setting
``TF_USE_LEGACY_KERAS=1`` would make ``tf.keras`` mean Keras 2 again — for the whole process, so
every Keras 3 model and helper of the course would break. We do not need a Keras layer at all for
inference: :func:`load_classifier` loads the SavedModel with ``hub.load`` (or
``tf.saved_model.load`` for a local folder) and calls it as a function.

The default model is the MobileNetV2 ImageNet classifier of the source notes, at its current
version: 224×224 RGB input in [0, 1], 1001 logits where index 0 is a "background" class and index
``k + 1`` is ImageNet-1k class ``k``. TF Hub's models now live on Kaggle Models; ``tfhub.dev``
handles redirect there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlnotes import runtime

SOURCE_NOTES_HANDLE = "https://tfhub.dev/google/tf2-preview/mobilenet_v2/classification/2"
"""The classifier the source notes used (version 2)."""

MOBILENET_V2_HANDLE = (
    "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/tf2-preview-classification/4"
)
"""The same classifier at its current version (4), where ``tfhub.dev`` now redirects."""

MOBILENET_V2_INPUT_SIZE = 224


@dataclass
class Classifier:
    """A loaded image classifier: ``classifier(images)`` → logits.

    Attributes:
        source: The handle or path it was loaded from.
        input_size: Expected height and width (images are resized to it).
        module: The loaded SavedModel object.
        description: What the model is, for printing.
    """

    source: str
    input_size: int
    module: Any
    description: str = ""

    def __call__(self, images: Any) -> Any:
        """Logits for float32 images in [0, 1] of shape ``(N, input_size, input_size, 3)``."""
        if hasattr(self.module, "serve"):  # exported with keras.Model.export
            return self.module.serve(images)
        if callable(self.module):  # TF Hub modules are callable
            return self.module(images)
        outputs = self.module.signatures["serving_default"](images)
        return next(iter(outputs.values()))


def load_classifier(
    handle_or_path: str, *, input_size: int = MOBILENET_V2_INPUT_SIZE
) -> Classifier:
    """Load an image classifier from a TF Hub handle or a local SavedModel folder.

    Args:
        handle_or_path: A TF Hub URL (downloaded and cached by ``tensorflow_hub``; needs the
            internet the first time) or a folder holding ``saved_model.pb``.
        input_size: The model's input height and width.

    Returns:
        The classifier.

    Raises:
        FileNotFoundError: For a local path that is not a SavedModel.
        ValueError: If the model's signature fixes another input size (naming both).
    """
    tf = runtime.import_quietly("tensorflow")
    path = Path(handle_or_path).expanduser()
    if "://" not in handle_or_path:
        if not (path / "saved_model.pb").is_file():
            raise FileNotFoundError(f"not a SavedModel folder (no saved_model.pb): {path}")
        module = tf.saved_model.load(str(path))
    else:
        hub = runtime.import_quietly("tensorflow_hub")
        module = hub.load(handle_or_path)
    expected = signature_input_size(module)
    if expected is not None and expected != input_size:
        raise ValueError(
            f"the model {handle_or_path} takes images of {expected}×{expected} pixels, not "
            f"{input_size}×{input_size}: pass --input-size {expected}"
        )
    return Classifier(str(handle_or_path), input_size, module, str(handle_or_path))


def signature_input_size(module: Any) -> int | None:
    """The square input size fixed by a loaded SavedModel's signature, if it fixes one.

    Args:
        module: From ``tf.saved_model.load`` or ``hub.load``.

    Returns:
        The height (= width) of the images the model takes, or None where its signature leaves
        the size open or cannot be read.
    """
    specs: list[Any] = []
    serve = getattr(module, "serve", None)
    if serve is not None and getattr(serve, "input_signature", None):
        specs = list(serve.input_signature)
    else:
        signatures = getattr(module, "signatures", None)
        if signatures is not None and "serving_default" in signatures:
            args, kwargs = signatures["serving_default"].structured_input_signature
            specs = [*args, *kwargs.values()]
    if len(specs) != 1:
        return None
    shape = getattr(specs[0], "shape", None)
    if shape is None or shape.rank != 4:
        return None
    height, width = shape[1], shape[2]
    return int(height) if height is not None and height == width else None
