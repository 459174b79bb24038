"""The runtime layer: quiet framework imports, the devices, run profiles, paths and files.

The lowest layer of the package: at import time it needs only the standard library, and the other
layers may all use it. :mod:`~dlnotes.runtime.profiles`, :mod:`~dlnotes.runtime.paths` and
:mod:`~dlnotes.runtime.storage` are imported by name.
"""

from __future__ import annotations

from dlnotes.runtime.environment import (
    KERAS_BACKENDS,
    TRAINING_BACKENDS,
    Accelerator,
    accelerators,
    check_keras_backend,
    compilation_cache_folder,
    device_description,
    enable_compilation_cache,
    gpu_available,
    gpu_compute_capability,
    import_quietly,
    keras_backend,
    native_stderr_silenced,
)
from dlnotes.runtime.notices import (
    STAND_IN_CLASS,
    StandInNotice,
    show_stand_in,
)
from dlnotes.runtime.session import (
    GPU_HINT,
    describe,
    setup,
)

__all__ = [
    "GPU_HINT",
    "KERAS_BACKENDS",
    "STAND_IN_CLASS",
    "TRAINING_BACKENDS",
    "Accelerator",
    "StandInNotice",
    "accelerators",
    "check_keras_backend",
    "compilation_cache_folder",
    "describe",
    "device_description",
    "enable_compilation_cache",
    "gpu_available",
    "gpu_compute_capability",
    "import_quietly",
    "keras_backend",
    "native_stderr_silenced",
    "setup",
    "show_stand_in",
]
