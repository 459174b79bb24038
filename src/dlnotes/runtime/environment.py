"""The environment a chapter or a command runs in: quiet framework imports and the devices.

Frameworks are imported only when asked for (:func:`import_quietly`), so that importing this
module costs nothing. :func:`accelerators` is the package's one probe of the devices the active
Keras backend sees; everything else that needs to know about GPUs asks it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

_QUIET_ENV = {
    # C++ logging of TensorFlow (INFO, WARNING and ERROR lines such as the oneDNN notice).
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # XLA / absl logging used by TensorFlow and JAX.
    "GRPC_VERBOSITY": "ERROR",
}


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 while the block runs.

    TensorFlow's C++ runtime prints lines such as ``WARNING: All log messages before
    absl::InitializeLog() is called are written to STDERR`` at import time, straight to the
    process's standard error, beyond the reach of Python's ``logging`` and ``warnings``.
    Jupyter shows those lines in the cell output. Redirecting the descriptor while the import
    runs is the only reliable way to keep them off the page.

    Yields:
        Nothing; standard error is restored when the block exits, even on error.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2 (rare embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_quietly(module: str) -> ModuleType:
    """Import ``module`` with framework log output silenced.

    Sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the caller already chose a level) and silences
    native standard error during the import. Importing an already imported module is free.

    Args:
        module: Dotted module name, e.g. ``"tensorflow"``.

    Returns:
        The imported module.
    """
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if module in sys.modules:
        return sys.modules[module]
    with native_stderr_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if module != "tensorflow_hub" or error.name != "pkg_resources":
                raise
            imported = _import_tensorflow_hub_without_pkg_resources()
    if module == "tensorflow":
        # TensorFlow's Python logger prints INFO lines such as "Assets written to: …" on stderr.
        imported.get_logger().setLevel("ERROR")
    return imported


def _import_tensorflow_hub_without_pkg_resources() -> ModuleType:
    """Import ``tensorflow_hub`` where ``pkg_resources`` is missing.

    ``tensorflow_hub`` 0.16.1 (its latest release) imports ``parse_version`` from
    ``pkg_resources`` for one version check when it is imported. ``pkg_resources`` is gone from
    setuptools 81 and later, and a Python 3.12 virtual environment has no setuptools at all, so
    the import fails there. During that one import, a stand-in module offers the same function
    (``packaging.version.parse``, which TensorFlow installs); it is removed right after.
    """
    from packaging.version import parse

    stand_in = ModuleType("pkg_resources")
    stand_in.parse_version = parse  # type: ignore[attr-defined]
    had_entry = "pkg_resources" in sys.modules
    previous = sys.modules.get("pkg_resources")
    sys.modules["pkg_resources"] = stand_in
    try:
        return importlib.import_module("tensorflow_hub")
    finally:
        if had_entry:
            sys.modules["pkg_resources"] = previous  # type: ignore[assignment]
        else:
            del sys.modules["pkg_resources"]


def keras_backend() -> str:
    """Return the Keras backend that ``import keras`` will use (``KERAS_BACKEND``, default TF)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow").strip().lower() or "tensorflow"


KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")
"""The values of ``KERAS_BACKEND`` that Keras 3 knows; any other makes ``import keras`` fail."""

TRAINING_BACKENDS = ("tensorflow", "jax", "torch")
"""The Keras backends that can train (``numpy`` and ``openvino`` only run inference)."""


def check_keras_backend(
    allowed: tuple[str, ...] = KERAS_BACKENDS, *, installed: bool = True, purpose: str = ""
) -> str:
    """Check ``KERAS_BACKEND`` before Keras is imported, so that a bad value is one clear error.

    Keras reads the variable when it is imported, and TensorFlow imports Keras: a misspelt
    value would otherwise end a command in a traceback from deep inside an import. Only
    ``os.environ`` and ``importlib.util.find_spec`` are consulted; nothing is imported.

    Args:
        allowed: The backends the caller can use.
        installed: Also require the backend's package to be installed.
        purpose: What needs the backend, for the message (e.g. ``"training"``).

    Returns:
        The backend (:func:`keras_backend`).

    Raises:
        ValueError: Naming the variable's value and the allowed ones, or the missing package.
    """
    import importlib.util

    raw = os.environ.get("KERAS_BACKEND", "")
    backend = raw or "tensorflow"  # Keras ignores an empty value
    needed = f" for {purpose}" if purpose else ""
    if backend not in allowed:
        raise ValueError(
            f"KERAS_BACKEND={raw!r} is not a Keras backend this command can use{needed}: "
            f"set it to one of {', '.join(allowed)} (or unset it for tensorflow)"
        )
    if installed and importlib.util.find_spec(backend) is None:
        raise ValueError(
            f"KERAS_BACKEND={raw!r}, but the {backend} package is not installed: install it, or "
            "unset KERAS_BACKEND to use tensorflow"
        )
    return backend


@dataclass(frozen=True)
class Accelerator:
    """A GPU the active Keras backend can compute on.

    Attributes:
        name: The device's name, e.g. ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: ``(major, minor)`` of an NVIDIA GPU, None where unknown.
    """

    name: str
    compute_capability: tuple[int, int] | None


def _capability(value: object) -> tuple[int, int] | None:
    try:
        if isinstance(value, (tuple, list)):
            major, minor = value[0], value[1]
        else:
            major, minor = str(value).split(".")[:2]
        return int(major), int(minor)
    except (TypeError, ValueError, IndexError):
        return None


def accelerators() -> list[Accelerator]:
    """The GPUs the active Keras backend (TensorFlow, JAX or PyTorch) sees.

    This is the package's one device probe: :func:`gpu_available`,
    :func:`gpu_compute_capability` and :func:`device_description` all ask it.

    Returns:
        One entry per visible GPU, in the backend's order; empty on a CPU-only machine or when
        the backend cannot be imported.
    """
    backend = keras_backend()
    found: list[Accelerator] = []
    try:
        if backend == "tensorflow":
            tf = import_quietly("tensorflow")
            for gpu in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(gpu)
                found.append(
                    Accelerator(
                        str(details.get("device_name", gpu.name)),
                        _capability(details.get("compute_capability")),
                    )
                )
        elif backend == "jax":
            jax = import_quietly("jax")
            found = [
                Accelerator(d.device_kind, _capability(getattr(d, "compute_capability", None)))
                for d in jax.devices()
                if d.platform == "gpu"
            ]
        elif backend == "torch":
            torch = import_quietly("torch")
            if torch.cuda.is_available():
                found = [
                    Accelerator(
                        torch.cuda.get_device_name(i),
                        _capability(torch.cuda.get_device_capability(i)),
                    )
                    for i in range(torch.cuda.device_count())
                ]
    except (ImportError, RuntimeError):
        return []
    return found


def gpu_available() -> bool:
    """Tell whether the active Keras backend sees a GPU (see :func:`accelerators`)."""
    return bool(accelerators())


def gpu_compute_capability() -> tuple[int, int] | None:
    """Compute capability of the first GPU of the active backend, or None without a GPU."""
    gpus = accelerators()
    return gpus[0].compute_capability if gpus else None


def device_description() -> str:
    """Describe the device the backend computes on, e.g. ``"GPU: NVIDIA H100 80GB HBM3"``.

    Returns:
        ``"GPU: <name>"`` (with a count when several are visible) or
        ``"no GPU visible, CPU: <n> cores (<machine>)"``.
    """
    gpus = accelerators()
    if gpus:
        count = f"{len(gpus)} × " if len(gpus) > 1 else ""
        return f"GPU: {count}{gpus[0].name}"
    return f"no GPU visible, CPU: {os.cpu_count()} cores ({platform.machine()})"


COMPILATION_CACHE_ENV = "DLNOTES_COMPILATION_CACHE"
"""Environment variable: the folder of JAX's persistent compilation cache, or ``off``."""


def compilation_cache_folder() -> Path | None:
    """Where JAX keeps compiled programs between runs, or None when switched off.

    Returns:
        ``$DLNOTES_COMPILATION_CACHE`` if set (``off`` switches the cache off), else
        ``~/.cache/dlnotes/jax-compilation`` (``$XDG_CACHE_HOME`` honoured).
    """
    from dlnotes.runtime import paths

    configured = os.environ.get(COMPILATION_CACHE_ENV, "").strip()
    if configured.lower() in {"off", "0", "false", "no", "none"}:
        return None
    return Path(configured).expanduser() if configured else paths.cache_dir() / "jax-compilation"


def enable_compilation_cache() -> Path | None:
    """Keep JAX's compiled programs (and GPU autotuning results) on disk for the next run.

    Compiling and autotuning the trainer's steps costs the first epoch tens of seconds on a GPU;
    with the persistent cache a second run of the same program loads them instead. A changed
    network, batch size, dataset size or JAX version compiles afresh (they change the cache key).
    Does nothing unless the Keras backend is JAX.

    Returns:
        The cache folder in use, or None (another backend, or the cache switched off).
    """
    folder = compilation_cache_folder()
    if folder is None or keras_backend() != "jax":
        return None
    jax = import_quietly("jax")
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program, however quick to compile (a CPU test's small steps included), and the
    # GPU autotuning results with them.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
