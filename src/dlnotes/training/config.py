"""What defines a training run: :class:`TrainConfig` and the defaults of each run profile.

The full profile's defaults are the recipe of the recorded run in
``benchmarks/results/full-profile`` (a test compares them): change them only with a new recorded
run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any

from dlnotes.runtime import profiles


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run's result; stored in ``OUT/config.json``, checked on resume.

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

    profile: str
    epochs: int
    batch_size: int
    levels: tuple[int, ...]
    width: int
    optimizer: str
    learning_rate: float
    warmup_epochs: float
    weight_decay: float
    label_smoothing: float
    augment_padding: int
    mix: str
    mix_alpha: float
    mix_probability: float
    test_time_flip: bool
    max_train_per_class: int | None
    seed: int

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
        values = {**PROFILE_DEFAULTS[name], "seed": 0, **overrides, "profile": name}
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
        """Check every field's range.

        Raises:
            ValueError: Naming the first invalid field and its value.
        """
        from dlnotes.data import mixing

        checks = [
            ("epochs", self.epochs >= 1),
            ("batch_size", self.batch_size >= 1),
            ("levels", len(self.levels) >= 1 and min(self.levels) >= 1),
            ("width", self.width >= 4 and self.width % 4 == 0),
            ("optimizer", self.optimizer in ("sgd", "adam", "adamw")),
            ("learning_rate", self.learning_rate > 0),
            ("warmup_epochs", 0 <= self.warmup_epochs),
            ("weight_decay", self.weight_decay >= 0),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("augment_padding", self.augment_padding >= 0),
            ("mix", self.mix in mixing.MODES),
            ("mix_alpha", self.mix_alpha > 0),
            ("mix_probability", 0 <= self.mix_probability <= 1),
            (
                "max_train_per_class",
                self.max_train_per_class is None or self.max_train_per_class >= 1,
            ),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"invalid {name}: {getattr(self, name)!r}")


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
    # The full Tiny ImageNet on one H100 in under ten minutes (see benchmarks/results/full-profile).
    "full": {
        "epochs": 55,
        "batch_size": 256,
        "levels": (1, 2, 4, 2),
        "width": 96,
        "optimizer": "sgd",
        "learning_rate": 0.4,
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
    # The full dataset within five minutes on one GPU, from a cold start (recorded run:
    # benchmarks/results/fast-profile): the full profile's network and augmentation, twice the
    # batch with twice the learning rate (as the two-GPU run of the full profile trained, at the
    # same accuracy), fewer epochs.
    **PROFILE_DEFAULTS["full"],
    "epochs": 36,
    "batch_size": 512,
    "learning_rate": 0.8,
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
        key: getattr(args, key)
        for key in PROFILE_DEFAULTS["full"]
        if getattr(args, key, None) is not None
    }
    return TrainConfig.for_profile(args.profile, seed=args.seed, **overrides)
