"""The console commands: a bad ``KERAS_BACKEND`` and Ctrl-C as one line, never a traceback.

``dlnotes-train`` (and ``python -m dlnotes.train``), ``dlnotes-make-tfrecords``,
``dlnotes-pseudo-label`` and ``dlnotes-download`` start here, with nothing but the standard library
imported. Each command's module imports Keras or TensorFlow (which imports Keras), and Keras reads
``KERAS_BACKEND`` when it is imported: a misspelt value would end the command in a traceback from
inside an import. So the variable is checked first
(:func:`dlnotes.runtime.check_keras_backend`) and a bad value is one ``error: …`` line (exit
status 1). Then the command's own ``main`` runs; Ctrl-C (SIGINT) prints one ``interrupted: …``
line and exits with status 130, the shell's convention for a command ended by SIGINT.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""


def _launch(
    module: str,
    argv: list[str] | None,
    *,
    backends: tuple[str, ...] | None = None,
    installed: bool = True,
    purpose: str = "",
    interrupted: str,
    **kwargs: Any,
) -> int:
    from dlnotes import runtime

    try:
        runtime.check_keras_backend(
            backends or runtime.KERAS_BACKENDS, installed=installed, purpose=purpose
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        status: int = importlib.import_module(module).main(argv, **kwargs)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {interrupted}", file=sys.stderr, flush=True)
        return INTERRUPTED
    return status


def train(argv: list[str] | None = None, *, started: float | None = None) -> int:
    """``dlnotes-train`` and ``python -m dlnotes.train`` (:func:`dlnotes.training.cli.main`).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        started: ``time.perf_counter()`` value the run's wall time counts from (default: now).

    Returns:
        The exit status: 0, 1 after an error, 2 for bad arguments, 130 after Ctrl-C.
    """
    from dlnotes import runtime

    return _launch(
        "dlnotes.training.cli",
        argv,
        backends=runtime.TRAINING_BACKENDS,
        purpose="training",
        interrupted="run the same command to resume",
        started=started,
    )


def make_tfrecords(argv: list[str] | None = None) -> int:
    """``dlnotes-make-tfrecords`` (:func:`dlnotes.data.tfrecord.main`).

    It needs no Keras, but TensorFlow imports Keras: any backend Keras knows will do, installed
    or not.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 after an error, 2 for bad arguments, 130 after Ctrl-C.
    """
    return _launch(
        "dlnotes.data.tfrecord",
        argv,
        installed=False,
        interrupted="run the same command again to write the shards",
    )


def pseudo_label(argv: list[str] | None = None) -> int:
    """``dlnotes-pseudo-label`` (:func:`dlnotes.models.hub.cli.main`).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 after an error, 2 for bad arguments, 130 after Ctrl-C.
    """
    return _launch(
        "dlnotes.models.hub.cli",
        argv,
        interrupted="nothing was written; run the same command again",
    )


def download(argv: list[str] | None = None) -> int:
    """``dlnotes-download`` (:func:`dlnotes.data.download.main`).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 after an error, 2 for bad arguments, 130 after Ctrl-C.
    """
    return _launch(
        "dlnotes.data.download",
        argv,
        interrupted="run the same command again to download the data",
    )
