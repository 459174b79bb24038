"""The console commands: a bad ``KERAS_BACKEND`` and Ctrl-C as one line, never a traceback.

``dlnotes-train`` (and ``python -m dlnotes.train``), ``dlnotes-make-tfrecords``,
``dlnotes-pseudo-label`` and ``dlnotes-download`` start here, with nothing but the standard library
imported. Each command's module imports Keras or TensorFlow (which imports Keras), and Keras reads
``KERAS_BACKEND`` when it is imported: a misspelt value would end the command in a traceback from
inside an import. So the variable is checked first
(:func:`dlnotes.runtime.check_keras_backend`) and a bad value is one ``error: …`` line (exit
status 1). Then the command's own ``main`` runs; Ctrl-C (SIGINT) prints one ``interrupted: …``
line and exits with status 130, the shell's convention for a command ended by SIGINT.

TensorFlow can lose a Ctrl-C: a ``KeyboardInterrupt`` raised while its C++ fast path calls back
into Python (e.g. ``TensorShape.__len__`` as an iterator is created) is cleared there, and the
command runs on as if nothing had happened. So while a command runs, SIGINT is repeated once a
second until the ``KeyboardInterrupt`` has reached the launcher (:class:`_CtrlC`).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""


class _CtrlC:
    """SIGINT raises ``KeyboardInterrupt``, and is sent again every ``repeat`` seconds until
    :meth:`caught` says the launcher has it (a lost one is thus repeated, not waited for)."""

    def __init__(self, repeat: float = 1.0) -> None:
        self.repeat = repeat
        self.timer: threading.Timer | None = None
        self.done = False
        self.previous: Any = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous = signal.signal(signal.SIGINT, self._interrupted)
        return self

    def _interrupted(self, signum: int, frame: FrameType | None) -> None:
        if not self.done and self.timer is None:
            self.timer = threading.Timer(self.repeat, self._again)
            self.timer.daemon = True
            self.timer.start()
        raise KeyboardInterrupt

    def _again(self) -> None:
        self.timer = None
        if not self.done:
            os.kill(os.getpid(), signal.SIGINT)

    def caught(self) -> None:
        """The interrupt has arrived: no more repeats, and further Ctrl-C are ignored."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.previous is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc_info: object) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


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
    with _CtrlC() as ctrl_c:
        try:
            status: int = importlib.import_module(module).main(argv, **kwargs)
        except KeyboardInterrupt:
            ctrl_c.caught()
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
