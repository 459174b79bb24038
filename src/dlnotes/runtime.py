"""The runtime a chapter runs in: quiet framework logs, the visible device, the run profile.

Every chapter starts with :func:`setup`, which prints one line naming the profile, the Keras
backend and the device, so that each executed page says what produced its numbers. When a chapter
has to run on a stand-in (synthetic data, random weights, a toy model), :func:`show_stand_in` puts
a warning box on the page that says so.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import os
import platform
import re
import sys
import warnings
from collections.abc import Iterator
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
        imported = importlib.import_module(module)
    if module == "tensorflow":
        # TensorFlow's Python logger prints INFO lines such as "Assets written to: …" on stderr.
        imported.get_logger().setLevel("ERROR")
    return imported


def keras_backend() -> str:
    """Return the Keras backend that ``import keras`` will use (``KERAS_BACKEND``, default TF)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow").strip().lower() or "tensorflow"


def gpu_available() -> bool:
    """Tell whether the active Keras backend sees an accelerator.

    Returns:
        True when the backend (TensorFlow, JAX or PyTorch) lists at least one GPU.
    """
    backend = keras_backend()
    try:
        if backend == "tensorflow":
            tf = import_quietly("tensorflow")
            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            jax = import_quietly("jax")
            return any(device.platform == "gpu" for device in jax.devices())
        if backend == "torch":
            torch = import_quietly("torch")
            return bool(torch.cuda.is_available())
    except ImportError:
        return False
    return False


def device_description() -> str:
    """Describe the device the backend computes on, e.g. ``"GPU: NVIDIA H100 80GB HBM3"``.

    Returns:
        ``"GPU: <name>"`` (with a count when several are visible) or
        ``"no GPU visible, CPU: <n> cores (<machine>)"``.
    """
    backend = keras_backend()
    names: list[str] = []
    try:
        if backend == "tensorflow":
            tf = import_quietly("tensorflow")
            for gpu in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(gpu)
                names.append(str(details.get("device_name", gpu.name)))
        elif backend == "jax":
            jax = import_quietly("jax")
            names = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
        elif backend == "torch":
            torch = import_quietly("torch")
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        names = []
    if names:
        count = f"{len(names)} × " if len(names) > 1 else ""
        return f"GPU: {count}{names[0]}"
    return f"no GPU visible, CPU: {os.cpu_count()} cores ({platform.machine()})"


def describe() -> str:
    """Prepare the runtime and describe it in one line.

    Silences framework logs, imports the Keras backend quietly and resolves the run profile.

    Returns:
        A line such as ``dlnotes 0.1.0 · profile smoke (auto: no GPU is visible) · keras 3.15.1
        on tensorflow · no GPU visible, CPU: 2 cores (x86_64)``.
    """
    import dlnotes
    from dlnotes import profiles

    backend = keras_backend()
    if backend in {"tensorflow", "jax", "torch"}:
        with contextlib.suppress(ImportError):
            import_quietly(backend)
    keras = import_quietly("keras")
    profile = profiles.get_profile()
    return (
        f"dlnotes {dlnotes.__version__} · profile {profile.name} ({profile.reason}) · "
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


STAND_IN_CLASS = "dlnotes-stand-in"
"""CSS class of the warning box of :func:`show_stand_in`; the book's tests look for it."""


class StandInNotice:
    """A warning that a page runs on a stand-in, shown as a box in notebooks and in the book.

    Rendered as HTML (an admonition carrying the CSS class :data:`STAND_IN_CLASS`) where rich output
    is shown, as text elsewhere. Text between backticks is shown as code.

    Args:
        what: What is replaced, e.g. ``"synthetic images instead of Tiny ImageNet"``.
        reason: Why the real thing is missing.
        remedy: How to get the real thing.

    Raises:
        ValueError: If one of the texts is blank.
    """

    def __init__(self, what: str, reason: str, remedy: str) -> None:
        for name, value in (("what", what), ("reason", reason), ("remedy", remedy)):
            if not value.strip():
                raise ValueError(f"{name} must not be blank, got {value!r}")
        self.what, self.reason, self.remedy = what.strip(), reason.strip(), remedy.strip()

    def _repr_html_(self) -> str:
        def rich(text: str) -> str:
            return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

        return (
            f'<div class="admonition warning {STAND_IN_CLASS}">'
            f'<p class="admonition-title">Stand-in: {rich(self.what)}</p>'
            f"<p>{rich(self.reason)} <strong>The results on this page are meaningless.</strong>"
            f"</p><p>{rich(self.remedy)}</p></div>"
        )

    def __repr__(self) -> str:
        return (
            f"WARNING, stand-in: {self.what}. {self.reason} The results on this page are "
            f"meaningless. {self.remedy}"
        )


def show_stand_in(what: str, reason: str, remedy: str) -> None:
    """Show a :class:`StandInNotice`: a warning box in a notebook, a text line elsewhere.

    Args:
        what: What is replaced.
        reason: Why the real thing is missing.
        remedy: How to get the real thing.

    Raises:
        ValueError: If one of the texts is blank.
    """
    notice = StandInNotice(what, reason, remedy)
    shell = None
    with contextlib.suppress(ImportError):
        from IPython import get_ipython

        shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(notice)
    else:
        print(repr(notice), flush=True)
