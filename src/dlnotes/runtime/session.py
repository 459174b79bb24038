"""Each chapter's first cell: prepare the runtime and say what produced the page's numbers."""

from __future__ import annotations

import contextlib

from dlnotes.runtime import profiles
from dlnotes.runtime.environment import (
    device_description,
    gpu_available,
    import_quietly,
    keras_backend,
)


def describe(profile_line: str | None = None) -> str:
    """Prepare the runtime and describe it in one line.

    Silences framework logs, imports the Keras backend quietly and resolves the run profile.

    Args:
        profile_line: What to say about the profile instead of the resolved run profile (the
            trainer names its recipe, e.g. ``"recipe fast (--profile fast)"``).

    Returns:
        A line such as ``dlnotes 0.1.0 · profile smoke (auto: no GPU is visible) · keras 3.15.1
        on tensorflow · no GPU visible, CPU: 2 cores (x86_64)``.
    """
    import dlnotes

    backend = keras_backend()
    if backend in {"tensorflow", "jax", "torch"}:
        with contextlib.suppress(ImportError):
            import_quietly(backend)
    keras = import_quietly("keras")
    if profile_line is None:
        profile = profiles.get_profile()
        profile_line = f"profile {profile.name} ({profile.reason})"
    return (
        f"dlnotes {dlnotes.__version__} · {profile_line} · "
        f"keras {keras.__version__} on {backend} · {device_description()}"
    )


GPU_HINT = (
    "No GPU visible: the chapters run their small smoke profile. For a GPU in Google Colab, choose "
    "Runtime > Change runtime type > a GPU (e.g. T4), then run the notebook again."
)


def setup() -> None:
    """Prepare a chapter's runtime and print :func:`describe`'s line (each chapter's first cell).

    Without a GPU it also says how to get one in Colab (:data:`GPU_HINT`).
    """
    print(describe())
    if not gpu_available():
        print(GPU_HINT)
