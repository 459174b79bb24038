"""Run profiles: one switch that sizes the data and the number of epochs of every chapter.

``DLNOTES_PROFILE`` selects the profile:

* ``smoke`` — real data subsets, sized to run in minutes on two CPU cores (tests, CI, a laptop);
* ``full`` — the real Tiny ImageNet on a GPU;
* ``auto`` (the default) — ``full`` only when a GPU is visible *and* the full dataset is present,
  otherwise ``smoke``.

Chapters ask the profile for sizes with :meth:`Profile.pick`, so the two settings of each
quantity sit next to each other in the chapter that uses them::

    profile = profiles.get_profile()
    epochs = profile.pick(smoke=2, full=30)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

PROFILE_ENV = "DLNOTES_PROFILE"
PROFILE_NAMES = ("smoke", "full", "auto")
FULL_DATASET_CLASSES = 200
"""Number of classes of the published Tiny ImageNet; used only to recognise the full dataset."""

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """A resolved run profile.

    Attributes:
        name: ``"smoke"`` or ``"full"``.
        reason: One sentence that says why this profile was chosen.
    """

    name: Literal["smoke", "full"]
    reason: str

    @property
    def is_full(self) -> bool:
        """Whether this is the full profile."""
        return self.name == "full"

    def pick(self, *, smoke: T, full: T) -> T:
        """Return the value meant for this profile.

        Args:
            smoke: Value used by the smoke profile.
            full: Value used by the full profile.

        Returns:
            ``full`` in the full profile, ``smoke`` otherwise.
        """
        return full if self.is_full else smoke


def full_dataset_present(root: str | os.PathLike[str]) -> bool:
    """Tell whether ``root`` holds the complete Tiny ImageNet (all 200 classes, val annotations).

    Args:
        root: A dataset root, the folder that holds ``wnids.txt``.

    Returns:
        True when ``wnids.txt`` lists the published number of classes and the train and val
        folders exist.
    """
    root = Path(root)
    wnids = root / "wnids.txt"
    if not wnids.is_file():
        return False
    classes = [line for line in wnids.read_text().split() if line]
    return (
        len(classes) >= FULL_DATASET_CLASSES
        and (root / "train").is_dir()
        and (root / "val" / "val_annotations.txt").is_file()
    )


def resolve_profile(requested: str, *, gpu_available: bool, full_data: bool) -> Profile:
    """Turn a requested profile name into a concrete profile.

    Args:
        requested: ``"smoke"``, ``"full"`` or ``"auto"`` (case-insensitive, blanks ignored).
        gpu_available: Whether an accelerator is visible.
        full_data: Whether the complete dataset is present.

    Returns:
        The resolved profile.

    Raises:
        ValueError: If ``requested`` is not one of the profile names.
    """
    name = requested.strip().lower()
    if name not in PROFILE_NAMES:
        raise ValueError(
            f"unknown run profile {requested!r}: expected one of {', '.join(PROFILE_NAMES)}"
        )
    if name == "smoke":
        return Profile("smoke", f"{PROFILE_ENV}=smoke")
    if name == "full":
        return Profile("full", f"{PROFILE_ENV}=full")
    if gpu_available and full_data:
        return Profile("full", "auto: a GPU is visible and the full dataset is present")
    missing = [
        what
        for what, ok in (
            ("no GPU is visible", gpu_available),
            ("the full dataset is absent", full_data),
        )
        if not ok
    ]
    return Profile("smoke", "auto: " + " and ".join(missing))


def get_profile(requested: str | None = None) -> Profile:
    """Return the run profile of this process.

    Args:
        requested: Profile name; defaults to ``$DLNOTES_PROFILE`` or ``"auto"``.

    Returns:
        The resolved profile. ``auto`` looks for a GPU and for the full dataset at
        :func:`dlnotes.runtime.paths.data_dir`.

    Raises:
        ValueError: If the requested name is unknown.
    """
    from dlnotes.runtime import environment, paths

    requested = requested if requested is not None else os.environ.get(PROFILE_ENV, "auto")
    if requested.strip().lower() == "auto":
        return resolve_profile(
            requested,
            gpu_available=environment.gpu_available(),
            full_data=full_dataset_present(paths.data_dir()),
        )
    return resolve_profile(requested, gpu_available=False, full_data=False)
