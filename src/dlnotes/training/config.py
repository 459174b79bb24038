"""What defines a training run: :class:`TrainConfig`, the defaults of each run profile, and the
command's other options (:class:`RunOptions`).

The full profile's defaults are the recipe of the recorded run in
``benchmarks/results/full-profile`` (a test compares them): change them only with a new recorded
run.

**Adding a setting.** A new field of :class:`TrainConfig` needs a default that reproduces the
runs made before it existed (e.g. ``False`` for a new technique that was not used), a ``help``
in its metadata, and a line in :meth:`TrainConfig.validate`: the command line gets its flag from
the field (:func:`dlnotes.training.cli.parse_args`), the profiles take the default unless they
name the field, and run folders and recorded runs whose ``config.json`` lacks the field read as
having the default (:func:`upgrade_record`), so they still resume and still compare equal.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dlnotes.data import mixing
from dlnotes.runtime import profiles

OPTIMIZERS = ("sgd", "adam", "adamw")


def _setting(text: str = "", *, default: Any = MISSING, **cli: Any) -> Any:
    """A field with its flag's help (``text``) and argparse options such as ``choices``."""
    return field(default=default, metadata={"help": text, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run's result; stored in ``OUT/config.json``, checked on resume.

    Each field is a flag of ``python -m dlnotes.train`` (``batch_size``: ``--batch-size``); its
    metadata holds the flag's help. A field added later has a default (see the module's
    docstring).

    Attributes:
        profile: ``"smoke"``, ``"full"`` or ``"fast"`` (the recipe's defaults).
        epochs: Training epochs.
        batch_size: Images per step per device (the global batch is this × devices).
        levels: Identity bottlenecks per level of the ResNet.
        width: Channels after the stem.
        optimizer: ``"sgd"`` (Nesterov), ``"adam"`` or ``"adamw"``.
        learning_rate: Peak learning rate for one device; scaled linearly with the devices.
        warmup_epochs: Epochs of linear warm-up before the cosine decay.
        weight_decay: Decoupled weight decay (not on batch-norm parameters and biases).
        label_smoothing: Label smoothing of the cross-entropy.
        augment_padding: Largest random shift in pixels (0: flips only).
        mix: MixUp/CutMix mode, one of :data:`dlnotes.data.mixing.MODES`.
        mix_alpha: Beta parameter of the mixing.
        mix_probability: Share of training images that are mixed.
        test_time_flip: Report the final accuracy on the mean logits of each validation image
            and its mirror image.
        max_train_per_class: Use at most this many training images per class (None: all).
        seed: Seed of the initialisation, the data order and the augmentation.
    """

    profile: str = field(metadata={"cli": False})  # --profile is the command's own flag
    epochs: int = _setting()
    batch_size: int = _setting("per device")
    levels: tuple[int, ...] = _setting("blocks per level, e.g. 4,6,3,2")
    width: int = _setting()
    optimizer: str = _setting(choices=OPTIMIZERS)
    learning_rate: float = _setting("peak learning rate for one device")
    warmup_epochs: float = _setting()
    weight_decay: float = _setting()
    label_smoothing: float = _setting()
    augment_padding: int = _setting("largest random shift in pixels (0: flips only)")
    mix: str = _setting("MixUp / CutMix", choices=mixing.MODES)
    mix_alpha: float = _setting("Beta parameter of the mixing")
    mix_probability: float = _setting("share of mixed training images")
    test_time_flip: bool = _setting("on/off: average the logits of image and mirror")
    max_train_per_class: int | None = _setting("use a subset of the training images")
    seed: int = _setting(default=0)
    # Fields added later go here, each with the default that reproduces the runs made before.

    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides: Any) -> TrainConfig:
        """The configuration of a run profile, with some settings overridden.

        Args:
            profile: ``"smoke"``, ``"full"``, ``"fast"`` or ``"auto"``; default
                ``$DLNOTES_PROFILE`` or auto (which picks ``full`` or ``smoke``).
            **overrides: Field values to use instead of the profile's defaults.

        Returns:
            The validated configuration.

        Raises:
            ValueError: For an unknown profile or field, or an invalid value.
        """
        requested = profile if profile is not None else None
        if requested is not None and requested.strip().lower() in RECIPES_ON_FULL_DATA:
            name = requested.strip().lower()
        else:
            name = profiles.get_profile(requested).name
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {unknown}")
        values = {**PROFILE_DEFAULTS[name], **overrides, "profile": name}
        values["levels"] = tuple(values["levels"])
        config = cls(**values)
        config.validate()
        return config

    @property
    def data_profile(self) -> str:
        """The run profile that sizes the data: ``"smoke"``, or ``"full"`` for the recipes that
        train on the whole dataset (``full`` and ``fast``)."""
        return "full" if self.profile in RECIPES_ON_FULL_DATA else self.profile

    def validate(self) -> None:
        """Check every field's range, before anything is built or written.

        The ranges are those that make sense for the trainer: at most
        :data:`MAX_LEVELS` levels (each halves the 64×64 images), a network of at most
        :data:`MAX_PARAMETERS` parameters, a shift smaller than the image, finite numbers.

        Raises:
            ValueError: Naming the first invalid field, its value and the range.
        """
        for name, ok, allowed in self._checks():
            if not ok:
                raise ValueError(
                    f"invalid {name}: {getattr(self, name)!r} (must be {allowed}, and finite)"
                    if name in _FLOAT_FIELDS
                    else f"invalid {name}: {getattr(self, name)!r} (must be {allowed})"
                )
        parameters = backbone_parameters(self.levels, self.width)
        if parameters > MAX_PARAMETERS:
            raise ValueError(
                f"invalid levels and width: {self.levels} at width {self.width} make a network "
                f"of {parameters:,} parameters, more than the {MAX_PARAMETERS:,} the trainer builds"
            )

    def _checks(self) -> list[tuple[str, bool, str]]:
        """Each field's check: ``(name, whether its value is valid, the valid values)``."""
        levels_ok = 1 <= len(self.levels) <= MAX_LEVELS and all(
            1 <= count <= MAX_BLOCKS_PER_LEVEL for count in self.levels
        )
        levels = (
            f"1 to {MAX_LEVELS} levels (each halves the {IMAGE_SIZE}×{IMAGE_SIZE} images) of "
            f"1 to {MAX_BLOCKS_PER_LEVEL} blocks"
        )
        shift = f"a shift in pixels from 0 to {IMAGE_SIZE - 1} (the images are {IMAGE_SIZE} wide)"
        return [
            ("epochs", 1 <= self.epochs <= MAX_EPOCHS, f"an integer from 1 to {MAX_EPOCHS:,}"),
            ("batch_size", 1 <= self.batch_size <= MAX_BATCH_SIZE, _integers(MAX_BATCH_SIZE)),
            ("levels", levels_ok, levels),
            (
                "width",
                4 <= self.width <= MAX_WIDTH and self.width % 4 == 0,
                f"a multiple of 4 from 4 to {MAX_WIDTH:,}",
            ),
            ("optimizer", self.optimizer in OPTIMIZERS, "sgd, adam or adamw"),
            ("learning_rate", _finite(self.learning_rate) and self.learning_rate > 0, "> 0"),
            ("warmup_epochs", _finite(self.warmup_epochs) and self.warmup_epochs >= 0, "≥ 0"),
            ("weight_decay", _finite(self.weight_decay) and self.weight_decay >= 0, "≥ 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("augment_padding", 0 <= self.augment_padding < IMAGE_SIZE, shift),
            ("mix", self.mix in mixing.MODES, f"one of {', '.join(mixing.MODES)}"),
            ("mix_alpha", _finite(self.mix_alpha) and self.mix_alpha > 0, "> 0"),
            ("mix_probability", 0 <= self.mix_probability <= 1, "in [0, 1]"),
            (
                "max_train_per_class",
                self.max_train_per_class is None or self.max_train_per_class >= 1,
                "≥ 1",
            ),
            ("seed", 0 <= self.seed <= MAX_SEED, _integers(MAX_SEED, low=0)),
        ]


def _integers(high: int, *, low: int = 1) -> str:
    return f"an integer from {low} to {high:,}"


IMAGE_SIZE = 64
"""Height and width of the images the trainer decodes (Tiny ImageNet's own size)."""

MAX_LEVELS = 6
"""At most this many ResNet levels: each halves the resolution, and 64 = 2⁶."""

MAX_BLOCKS_PER_LEVEL = 64
MAX_WIDTH = 4096
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_SEED = 2**32 - 1  # NumPy's seeds, which keras.utils.set_random_seed sets
MAX_PARAMETERS = 1_000_000_000
"""The largest network (without its classifier) the trainer builds; the full profile's has 6.8 M."""

_FLOAT_FIELDS = {"learning_rate", "warmup_epochs", "weight_decay", "mix_alpha"}


def _finite(value: float) -> bool:
    return math.isfinite(value)


def backbone_parameters(levels: tuple[int, ...], width: int) -> int:
    """Parameters of :func:`dlnotes.models.build_resnet` without its classifier, by arithmetic.

    Counted without building anything (a test compares it with Keras' count), so that a network
    too large to build is refused before the run folder is touched. Batch normalisation counts
    four values per channel (scale, offset, moving mean and variance), as Keras does.

    Args:
        levels: Identity bottlenecks per level.
        width: Channels after the stem.

    Returns:
        The number of parameters up to the global pooling.
    """

    def unit(inputs: int, outputs: int, kernel: int) -> int:  # BN → ReLU → Conv, no bias
        return 4 * inputs + kernel * kernel * inputs * outputs

    def projection(inputs: int, outputs: int, inner: int) -> int:
        shortcut = 4 * inputs + inputs * outputs + inputs * inner
        return shortcut + unit(inner, inner, 3) + unit(inner, outputs, 1)

    def bottleneck(channels: int) -> int:
        inner = channels // 4
        return unit(channels, inner, 1) + unit(inner, inner, 3) + unit(inner, channels, 1)

    total = 27 * width + projection(width, width, width // 4)
    channels = width
    for repeats in levels:
        total += repeats * bottleneck(channels) + projection(channels, 2 * channels, channels // 2)
        channels *= 2
    return total + 4 * channels  # the final batch normalisation


PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Runs in about a minute on 2 CPU cores on 10 classes × 100 images.
    "smoke": {
        "epochs": 12,
        "batch_size": 32,
        "levels": (1, 1, 1),
        "width": 16,
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "warmup_epochs": 1.0,
        "weight_decay": 5e-5,
        "label_smoothing": 0.1,
        "augment_padding": 4,
        "mix": "none",
        "mix_alpha": 1.0,
        "mix_probability": 1.0,
        "test_time_flip": True,
        "max_train_per_class": None,
    },
    # The best accuracy within ten minutes on one GPU, from a cold start (recorded run:
    # benchmarks/results/full-profile, 63.7 % top-1 in 571 s on one H200). The wider channels
    # make the memory-bound convolutions more efficient; batch and learning rate as "fast".
    "full": {
        "epochs": 70,
        "batch_size": 512,
        "levels": (1, 2, 4, 2),
        "width": 128,
        "optimizer": "sgd",
        "learning_rate": 0.8,
        "warmup_epochs": 5.0,
        "weight_decay": 5e-5,
        "label_smoothing": 0.1,
        "augment_padding": 4,
        "mix": "cutmix",
        "mix_alpha": 1.0,
        "mix_probability": 0.5,
        "test_time_flip": True,
        "max_train_per_class": None,
    },
}

PROFILE_DEFAULTS["fast"] = {
    # 60 % top-1 within five minutes on one GPU, from a cold start (recorded run:
    # benchmarks/results/fast-profile, 61.2 % in 284 s on one H200): the full profile's recipe
    # with the narrower network of the previous full profile (width 96) and fewer epochs, as
    # many as benchmarks/budget_epochs.py found to fit.
    **PROFILE_DEFAULTS["full"],
    "epochs": 33,
    "width": 96,
}

RECIPES_ON_FULL_DATA = ("full", "fast")
"""Training profiles that read the whole dataset (the data profile ``full``)."""

TRAINING_PROFILES = ("smoke", "full", "fast", "auto")
"""What ``--profile`` accepts: the run profiles, and ``fast``, a recipe on the full data."""

DISTRIBUTE_CHOICES = ("none", "data-parallel", "mirrored")


def make_config(args: argparse.Namespace) -> TrainConfig:
    """Merge the command line over the defaults of the resolved profile.

    Args:
        args: From :func:`dlnotes.training.cli.parse_args` (any object with the
            fields as attributes; None means the profile's default).

    Returns:
        The validated configuration.

    Raises:
        ValueError: For an invalid value.
    """
    overrides = {
        item.name: getattr(args, item.name)
        for item in fields(TrainConfig)
        if item.name != "profile" and getattr(args, item.name, None) is not None
    }
    return TrainConfig.for_profile(args.profile, **overrides)


def config_record(config: TrainConfig) -> dict[str, Any]:
    """The JSON object ``config.json`` holds for ``config`` (tuples become lists)."""
    record: dict[str, Any] = _json_values(asdict(config))
    return record


def _json_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_values(item) for item in value]
    return value


def upgrade_record(record: dict[str, Any], kind: type[TrainConfig] = TrainConfig) -> dict[str, Any]:
    """A ``config.json`` written by an older :class:`TrainConfig`, read with today's fields.

    A field added since has a default that reproduces the runs made before it (see the module's
    docstring): it is filled in. Nothing else changes, so a field that was removed or renamed
    still shows as a difference.

    Args:
        record: The JSON object of a ``config.json``.
        kind: The configuration class (a subclass may add fields).

    Returns:
        The record with every defaulted field that it lacks.
    """
    defaults = {
        item.name: _json_values(item.default)
        for item in fields(kind)
        if item.default is not MISSING and item.name not in record
    }
    return {**record, **defaults}


def changed_settings(record: dict[str, Any], config: TrainConfig) -> list[str]:
    """The settings in which a run folder's ``config.json`` differs from ``config``.

    Args:
        record: The JSON object of the ``config.json`` (possibly from an older version).
        config: The settings of this command.

    Returns:
        The names that differ, sorted (fields added since with their default do not count).
    """
    previous = upgrade_record(record, type(config))
    current = config_record(config)
    return sorted(k for k in {*previous, *current} if previous.get(k, MISSING) != current.get(k))


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out, beyond what defines its result (:class:`TrainConfig`).

    None of these is recorded in ``config.json``; :func:`dlnotes.training.trainer.check_options`
    checks them before anything is written.

    Attributes:
        distribute: One of :data:`DISTRIBUTE_CHOICES`.
        steps_per_execution: Training steps per call of the compiled function (None: 32 on a
            GPU, 1 on a CPU).
        tfrecords: Folder of TFRecord shards to read instead of the JPEG files (TensorFlow).
        decode_workers: Processes that decode the JPEGs (None: the CPU count, at most 32).
        logical_cpus: Split the CPU into this many logical devices (0: no; TensorFlow).
        coordinator_address: ``HOST:PORT`` of process 0 (several processes).
        num_processes: Processes of the run (None: from the environment, else 1).
        process_id: This process's id (None: from the environment, else 0).
        process_timeout: Seconds to wait for the other processes (None: the default).
    """

    distribute: str = "none"
    steps_per_execution: int | None = None
    tfrecords: Path | None = None
    decode_workers: int | None = None
    logical_cpus: int = 0
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    process_timeout: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        """The options of a parsed command line (attributes it lacks keep their defaults)."""
        names = [item.name for item in fields(cls)]
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})
