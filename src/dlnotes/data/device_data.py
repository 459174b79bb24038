"""Keep the whole dataset in accelerator memory and feed the training step indices, not pixels.

The Tiny ImageNet training split is 1.2 GB as uint8, a small fraction of a GPU's memory. Once it
sits there, a training step needs from the host only which images to use: 256 indices (1 KB)
instead of 256 images (3 MB), and the host can never be the bottleneck — no decoding, copying or
augmenting on the CPU while the GPU waits.

* :class:`ImageLookup` is a Keras layer holding the images as a non-trainable uint8 variable; it
  maps a batch of indices to a batch of images with one gather. It is left out of checkpoints:
  the data is not part of the model.
* :class:`IndexBatches` is a ``keras.utils.PyDataset`` that yields those indices (with the MixUp/
  CutMix parameters and targets of :mod:`dlnotes.data.mixing`): shuffled full batches for training,
  padded batches with zero sample weights for evaluation, so that every step has the same shape
  and XLA compiles the step once.

Everything is backend-agnostic Keras 3, so the same code runs on TensorFlow and JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes.data import mixing
from dlnotes.runtime import import_quietly

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr
layers, ops = keras.layers, keras.ops


class ImageLookup(keras.layers.Layer):
    """Hold a uint8 image array as a non-trainable variable; ``call(indices)`` gathers images.

    The variable is skipped when the model is saved or loaded (``save_own_variables`` writes
    nothing), so checkpoints stay small and a model can be reloaded with another image set.

    Args:
        images: ``(N, H, W, C)`` uint8 array.
        **kwargs: Passed to ``keras.layers.Layer`` (e.g. ``name``).

    Raises:
        ValueError: If ``images`` is not a non-empty 4-D uint8 array.
    """

    def __init__(self, images: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
            raise ValueError(
                f"images must be a non-empty (N, H, W, C) uint8 array, got {images.dtype} "
                f"{images.shape}"
            )
        self.image_shape = tuple(int(d) for d in images.shape[1:])
        # Zeros, then one assignment: Keras places the variable by the active distribution
        # (replicated under DataParallel) and, for a large variable, jit-compiles its
        # initializer, which must not capture the array as a constant.
        self.images = self.add_weight(
            shape=images.shape, dtype="uint8", initializer="zeros", trainable=False, name="images"
        )
        self.images.assign(images)
        self.built = True

    def call(self, indices: Any) -> Any:
        return ops.take(self.images, ops.cast(indices, "int32"), axis=0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape, *self.image_shape)

    def save_own_variables(self, store: Any) -> None:
        """Save nothing: the images are data, not model state."""

    def load_own_variables(self, store: Any) -> None:
        """Load nothing (see :meth:`save_own_variables`)."""


class IndexBatches(keras.utils.PyDataset):
    """Batches of image indices (and targets) for a model that starts with :class:`ImageLookup`.

    Training (``shuffle=True``): each epoch is a new permutation drawn from ``(seed, epoch)``,
    cut into full batches (the remainder, fewer than ``batch_size`` images, is left out of that
    epoch and lands in another). Each image's MixUp/CutMix partner is the image at the mirrored
    position of the same batch.

    Evaluation (``shuffle=False``): the images in order, the last batch padded by repeating the
    first image with sample weight 0, so that every batch has the same shape and the weighted
    metrics are exactly those of the real images.

    Each item is ``(inputs, targets)`` for training and ``(inputs, targets, sample_weights)`` for
    evaluation; ``inputs`` is ``{"index": …}`` plus, with ``mixing_inputs``, ``"partner"``,
    ``"box"`` and ``"mix_weight"``. Targets are float32 one-hot rows (blended when mixing).

    With several processes (``process_count`` > 1), ``batch_size`` is the global batch and each
    item is this process's consecutive share of it: rows ``[p·B/n, (p+1)·B/n)`` of the batch that
    one process would get, mixing partners and CutMix boxes included. Every process computes the
    same global order from the same seed, so together they use each image of an epoch once, as
    one process would.

    Args:
        labels: ``(N,)`` integer labels of the images, in index order.
        num_classes: Number of classes.
        batch_size: Images per batch.
        shuffle: Training (True) or evaluation (False) order.
        seed: Seed of the permutations and the mixing draws.
        offset: Added to every index (when the lookup holds several splits one after another).
        mix_mode: One of :data:`dlnotes.data.mixing.MODES`; used in training only.
        mix_alpha: Beta parameter of the mixing.
        mix_probability: Share of mixed images.
        mixing_inputs: Emit the partner/box/weight inputs (the model has them).
        image_size: ``(H, W)`` of the images (for CutMix boxes).
        first_epoch: Epoch the sequence starts at (a resumed run continues the sequence).
        process_index: This process's position among the processes that share each batch.
        process_count: Processes that share each batch (``batch_size`` must be a multiple).

    Raises:
        ValueError: For an empty label array, a batch size outside ``[1, N]`` in training, a
            batch that the processes cannot share evenly, a process index outside
            ``[0, process_count)``, or mixing requested without ``mixing_inputs``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        offset: int = 0,
        mix_mode: str = "none",
        mix_alpha: float = 1.0,
        mix_probability: float = 1.0,
        mixing_inputs: bool = False,
        image_size: tuple[int, int] = (64, 64),
        first_epoch: int = 0,
        process_index: int = 0,
        process_count: int = 1,
    ) -> None:
        super().__init__()
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1 or len(self.labels) == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {self.labels.shape}")
        if batch_size < 1 or (shuffle and batch_size > len(self.labels)):
            raise ValueError(
                f"batch of {batch_size} does not fit the {len(self.labels)} images "
                "(need 1 ≤ batch ≤ images for training)"
            )
        if process_count < 1 or batch_size % process_count:
            raise ValueError(
                f"a batch of {batch_size} cannot be shared evenly by {process_count} process(es)"
            )
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"process_index must be from 0 to {process_count - 1}, got {process_index}"
            )
        if mix_mode not in mixing.MODES:
            raise ValueError(f"mix_mode must be one of {mixing.MODES}, got {mix_mode!r}")
        if shuffle and mix_mode != "none" and not mixing_inputs:
            raise ValueError(f"mix_mode {mix_mode!r} needs a model with mixing inputs")
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.offset = offset
        self.mix_mode = mix_mode if shuffle else "none"
        self.mix_alpha = mix_alpha
        self.mix_probability = mix_probability
        self.mixing_inputs = mixing_inputs
        self.image_size = image_size
        self.epoch = first_epoch
        share = batch_size // process_count
        self._share = slice(process_index * share, (process_index + 1) * share)
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        count = len(self.labels)
        if not self.shuffle:
            padded = -(-count // self.batch_size) * self.batch_size
            return np.concatenate([np.arange(count), np.zeros(padded - count, dtype=np.int64)])
        return np.random.default_rng((self.seed, self.epoch)).permutation(count)

    def __len__(self) -> int:
        if self.shuffle:
            return len(self.labels) // self.batch_size
        return len(self._order) // self.batch_size

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.epoch += 1
            self._order = self._epoch_order()

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range [0, {len(self)})")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        partner_rows = rows[::-1]
        labels = self.labels[rows]
        # Seeded per batch, so a batch's mixing does not depend on the order batches are read.
        mix = mixing.sample_mixing(
            np.random.default_rng((self.seed, self.epoch, index)),
            len(rows),
            self.image_size,
            mode=self.mix_mode,
            alpha=self.mix_alpha,
            probability=self.mix_probability,
        )
        targets = mixing.mix_targets(
            labels, self.labels[partner_rows], mix.fractions, self.num_classes
        )
        inputs: dict[str, np.ndarray] = {"index": (rows + self.offset).astype(np.int32)}
        if self.mixing_inputs:
            inputs.update(
                partner=(partner_rows + self.offset).astype(np.int32),
                box=mix.boxes,
                mix_weight=mix.weights,
            )
        share = self._share  # this process's rows of the global batch
        inputs = {name: value[share] for name, value in inputs.items()}
        if self.shuffle:
            return inputs, targets[share]
        start = index * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        weights = (positions < len(self.labels)).astype(np.float32)
        return inputs, targets[share], weights[share]
