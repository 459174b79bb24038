"""Who is who in a run of several processes (:func:`process_settings`), resolved and checked
before anything is started or written; :mod:`dlnotes.training.multihost` connects them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass

from dlnotes.runtime import keras_backend
from dlnotes.training.config import RunOptions

JOB_ADDRESSES_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
NUM_PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"
SLURM_NUM_TASKS_ENV = "SLURM_NTASKS"
SLURM_TASK_ID_ENV = "SLURM_PROCID"
SLURM_STEP_ENV = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_LOCALID")
"""With the two above, the variables by which JAX recognises a task started by ``srun``."""

DEFAULT_TIMEOUT = 100
"""Seconds of ``--process-timeout``: JAX's own default heartbeat timeout."""

MAX_TIMEOUT = 86_400
MAX_PROCESSES = 65_536


@dataclass(frozen=True)
class ProcessSettings:
    """Which process this is, and how to reach the others.

    Attributes:
        count: Processes in the job (1: no distributed runtime is started).
        index: This process's id, from 0 (process 0 writes the run folder).
        coordinator: ``HOST:PORT`` of process 0's coordination service, or None to let JAX derive
            it from SLURM's variables.
        timeout: Seconds to wait for every process to connect, for a silent process, and at the
            end (JAX's initialization, heartbeat and shutdown timeouts).
        source: Where the values came from, for messages.
    """

    count: int = 1
    index: int = 0
    coordinator: str | None = None
    timeout: int = DEFAULT_TIMEOUT
    source: str = "a single process"


def _from_environment(
    environ: Mapping[str, str], name: str, low: int, high: int | None
) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" to {high:,}"
        raise ValueError(f"{name} must be an integer from {low}{upper}, got {value}")
    return value


def _coordinator(text: str, origin: str) -> str:
    """The first address of a comma-separated list (as Keras reads it), checked as HOST:PORT."""
    first = text.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65_535:
        raise ValueError(f"{origin} must be HOST:PORT (a port from 1 to 65,535), got {text!r}")
    return first


def process_settings(
    args: RunOptions | argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ProcessSettings:
    """Resolve and check the processes of a run, before anything is started or written.

    Each value comes from its flag, else from the variable ``keras.distribution.initialize``
    reads, else (number and id) from SLURM's variables in a task started by ``srun`` (those JAX
    recognises; JAX then derives the coordinator). Several processes need
    ``--distribute data-parallel`` (SLURM's variables are ignored without it) and the JAX backend.

    Args:
        args: The run's options, or a parsed command line (missing attributes are defaults).
        environ: The environment (default: ``os.environ``).

    Returns:
        The settings; ``count`` 1 for a single process.

    Raises:
        ValueError: Naming the flag or variable and the value: a count below 1, an id outside
            ``[0, count)``, an address that is not HOST:PORT, a missing coordinator, several
            processes without ``--distribute data-parallel`` or on another backend than JAX, a
            timeout outside 1–86,400 s.
    """
    environ = os.environ if environ is None else environ
    timeout = getattr(args, "process_timeout", None)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise ValueError(
            f"--process-timeout must be a number of seconds from 1 to {MAX_TIMEOUT:,}, got "
            f"{timeout}"
        )
    distributed = getattr(args, "distribute", "none") != "none"
    slurm = distributed and all(
        name in environ for name in (SLURM_NUM_TASKS_ENV, SLURM_TASK_ID_ENV, *SLURM_STEP_ENV)
    )
    sources: list[str] = []
    count = _count(getattr(args, "num_processes", None), environ, slurm, sources)
    index = _index(getattr(args, "process_id", None), count, environ, slurm, sources)
    coordinator = _coordinator_of(
        getattr(args, "coordinator_address", None), count, environ, sources
    )
    if count == 1:
        return ProcessSettings(timeout=timeout)
    if not distributed:
        raise ValueError(
            f"{count} processes ({', '.join(sources)}) train one run together only with "
            "--distribute data-parallel"
        )
    backend = keras_backend()
    if backend != "jax":
        raise ValueError(
            f"{count} processes ({', '.join(sources)}) need KERAS_BACKEND=jax, not {backend}: on "
            "TensorFlow the trainer uses every GPU of one machine (MirroredStrategy), and Keras 3 "
            "does not train with MultiWorkerMirroredStrategy "
            "(https://github.com/keras-team/keras/issues/20585)"
        )
    if coordinator is None and not slurm:
        raise ValueError(
            f"{count} processes need the coordinator's address: --coordinator-address HOST:PORT "
            f"or {JOB_ADDRESSES_ENV} (HOST: where process 0 runs; PORT: any free port)"
        )
    return ProcessSettings(count, index or 0, coordinator, timeout, ", ".join(sources))


def _count(flag: int | None, environ: Mapping[str, str], slurm: bool, sources: list[str]) -> int:
    """The number of processes: the flag, Keras' variable, SLURM's (``slurm``), else 1."""
    if flag is not None:
        if not 1 <= flag <= MAX_PROCESSES:
            raise ValueError(
                f"--num-processes must be an integer from 1 to {MAX_PROCESSES:,}, got {flag}"
            )
        sources.append("--num-processes")
        return flag
    if (count := _from_environment(environ, NUM_PROCESSES_ENV, 1, MAX_PROCESSES)) is not None:
        sources.append(NUM_PROCESSES_ENV)
        return count
    if slurm and (count := _from_environment(environ, SLURM_NUM_TASKS_ENV, 1, None)):
        sources.append(SLURM_NUM_TASKS_ENV)
        return count
    return 1


def _index(
    flag: int | None, count: int, environ: Mapping[str, str], slurm: bool, sources: list[str]
) -> int | None:
    """This process's id: the flag, Keras' variable, SLURM's (``slurm``), else None."""
    index, origin = flag, "--process-id"
    if index is None:
        index, origin = _from_environment(environ, PROCESS_ID_ENV, 0, None), PROCESS_ID_ENV
    if index is None and slurm:
        index, origin = _from_environment(environ, SLURM_TASK_ID_ENV, 0, None), SLURM_TASK_ID_ENV
    if index is not None:
        if not 0 <= index < count:
            raise ValueError(
                f"{origin} must be a process id from 0 to {count - 1} (for {count} "
                f"process(es)), got {index}"
            )
        sources.append(origin)
    return index


def _coordinator_of(
    flag: str | None, count: int, environ: Mapping[str, str], sources: list[str]
) -> str | None:
    """The coordinator's ``HOST:PORT``: the flag, else Keras' variable, else None."""
    if flag is not None:
        sources.append("--coordinator-address")
        return _coordinator(flag, "--coordinator-address")
    addresses = environ.get(JOB_ADDRESSES_ENV, "").strip()
    if not addresses:
        return None
    coordinator = _coordinator(environ[JOB_ADDRESSES_ENV], JOB_ADDRESSES_ENV)
    sources.append(JOB_ADDRESSES_ENV)
    listed = len(environ[JOB_ADDRESSES_ENV].split(","))
    if listed > 1 and listed != count:  # Keras' own check of a full list
        raise ValueError(
            f"{JOB_ADDRESSES_ENV} lists {listed} addresses for {count} process(es): give "
            "one address per process, or only the coordinator's"
        )
    return coordinator
