"""Training with several processes — several machines — on JAX's distributed runtime.

``python -m dlnotes.train --distribute data-parallel`` started as N processes (one per machine, or
one per GPU) trains one data-parallel program over the devices of all of them:

* **Who is who** (:func:`process_settings`, in :mod:`dlnotes.training.multihost_settings`): the
  coordinator's address, the number of processes and this process's id come from
  ``--coordinator-address``, ``--num-processes`` and ``--process-id``, else from the variables
  ``keras.distribution.initialize`` reads
  (``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES``,
  ``KERAS_DISTRIBUTION_PROCESS_ID``), else from SLURM's (``SLURM_NTASKS``, ``SLURM_PROCID``; JAX
  then derives the coordinator from the job's first node).
* **Connecting** (:func:`start`): ``jax.distributed.initialize``, the call
  ``keras.distribution.initialize`` makes, made directly because Keras does not pass on JAX's
  timeouts: ``--process-timeout`` seconds for every process to connect, for a silent process to be
  declared dead, and for the others to wait at the end. After it, Keras' ``DataParallel`` spans
  the devices of every process, and the gradients and batch-normalisation statistics are reduced
  across processes (over gloo on CPUs, NCCL on GPUs).
* **Feeding**: every process computes the same global batches from the same seed and feeds its
  consecutive share (:class:`dlnotes.data.device_data.IndexBatches` with ``process_index``), so
  the run is the one-process run with the same devices, up to float rounding.
* **The run folder**: process 0 alone locks, checks and writes it (checkpoints, logs, manifest,
  metrics). The others cannot just skip the checkpoints: with several JAX processes, assigning a
  host value to a variable is a collective in which every process takes part (``jax.device_put``
  checks that all pass the same value), and Keras creates a variable the first time it saves a
  checkpoint and assigns every one when it restores one. So every process runs the same steps and
  callbacks in the same order, the others on a private temporary folder
  (:func:`private_run_folder`); :meth:`ProcessGroup.settle` tells them where to start and, on a
  resume, copies process 0's committed backup into their folder. They need the data, not the run
  folder.
* **Failures**: an error found before training by any process (settings, data, a run folder that
  refuses the command) is raised by every process (:meth:`ProcessGroup.failures_shared`), so all
  exit with status 1. A process that dies ends the others: at once when their next collective
  fails (:class:`LostContact`, one ``error:`` line), or when JAX has not heard its heartbeat for
  ``--process-timeout`` seconds (JAX's "Terminating process because the JAX distributed service
  detected fatal errors"; at once when the dead one was process 0, which runs the coordination
  service). Running the same commands again resumes after the last finished epoch.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlnotes.runtime import import_quietly, storage
from dlnotes.training import backup
from dlnotes.training.multihost_settings import (
    DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
)
from dlnotes.training.multihost_settings import (
    JOB_ADDRESSES_ENV as JOB_ADDRESSES_ENV,
)
from dlnotes.training.multihost_settings import (
    MAX_PROCESSES as MAX_PROCESSES,
)
from dlnotes.training.multihost_settings import (
    MAX_TIMEOUT as MAX_TIMEOUT,
)
from dlnotes.training.multihost_settings import (
    NUM_PROCESSES_ENV as NUM_PROCESSES_ENV,
)
from dlnotes.training.multihost_settings import (
    PROCESS_ID_ENV as PROCESS_ID_ENV,
)
from dlnotes.training.multihost_settings import (
    SLURM_NUM_TASKS_ENV as SLURM_NUM_TASKS_ENV,
)
from dlnotes.training.multihost_settings import (
    SLURM_STEP_ENV as SLURM_STEP_ENV,
)
from dlnotes.training.multihost_settings import (
    SLURM_TASK_ID_ENV as SLURM_TASK_ID_ENV,
)
from dlnotes.training.multihost_settings import (
    ProcessSettings as ProcessSettings,
)
from dlnotes.training.multihost_settings import (
    process_settings as process_settings,
)


class LostContact(OSError):
    """A collective failed in a run of several processes (another process probably died).

    :func:`dlnotes.training.cli.main` prints it as one ``error: …`` line and ends the process at
    once (:func:`leave`), instead of waiting at JAX's shutdown barrier for processes that will
    not come.
    """


def leave(status: int) -> None:
    """End this process now with ``status``, without JAX's shutdown barrier (after an error that
    the other processes do not share: waiting for them would only delay the end by
    ``--process-timeout``). Standard output and error are flushed first."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


class ProcessGroup:
    """The processes of a run, once connected (one process: nothing is shared).

    Args:
        settings: From :func:`process_settings`.
    """

    def __init__(self, settings: ProcessSettings) -> None:
        self.settings = settings
        self._met = settings.count == 1

    @property
    def count(self) -> int:
        """Processes in the run."""
        return self.settings.count

    @property
    def index(self) -> int:
        """This process's id."""
        return self.settings.index

    @property
    def writes(self) -> bool:
        """Whether this process reads and writes the run folder (process 0 only)."""
        return self.settings.index == 0

    def _gather(self, text: str) -> list[str]:
        """Every process's ``text``, in process order (a collective: all must call it)."""
        multihost_utils = import_quietly("jax.experimental.multihost_utils")
        data = np.frombuffer(text.encode(), dtype=np.uint8)
        lengths = multihost_utils.process_allgather(np.array([len(data)], dtype=np.int32))
        padded = np.zeros(int(np.max(lengths)), dtype=np.uint8)
        padded[: len(data)] = data
        gathered = multihost_utils.process_allgather(padded)
        return [
            bytes(row[: int(length)]).decode()
            for row, length in zip(gathered, lengths.reshape(-1), strict=True)
        ]

    def _broadcast(self, data: np.ndarray) -> np.ndarray:
        """Process 0's ``data`` on every process (a collective; the shape must agree)."""
        multihost_utils = import_quietly("jax.experimental.multihost_utils")
        return np.asarray(multihost_utils.broadcast_one_to_all(data))

    def _meet(self, outcome: dict[str, Any]) -> list[dict[str, Any]]:
        """Exchange every process's outcome; raise the first other process's error, if any."""
        self._met = True
        outcomes = [json.loads(text) for text in self._gather(json.dumps(outcome))]
        for index, other in enumerate(outcomes):
            if "error" in other and index != self.index:
                kind = OSError if other["error"] == "OSError" else ValueError
                raise kind(f"process {index}: {other['message']}")
        return outcomes

    @contextlib.contextmanager
    def failures_shared(self) -> Iterator[None]:
        """Make an error raised before :meth:`settle` an error of every process.

        Wrap everything a process does before it reaches :meth:`settle`: a ``ValueError`` or
        ``OSError`` raised in it is sent to the others, who are waiting in :meth:`settle`, and
        raised there (``process K: …``); this process raises its own. So a command refused by
        process 0's run folder, or by one process's data, ends every process with status 1
        instead of leaving the others waiting. Later errors are not shared.

        With several processes, a ``jax.errors.JaxRuntimeError`` (a collective that failed,
        typically because another process died) becomes :class:`LostContact`.

        Yields:
            Nothing.

        Raises:
            LostContact: For a JAX runtime error with several processes.
        """
        try:
            yield
        except (ValueError, OSError) as error:
            if not self._met:
                kind = "OSError" if isinstance(error, OSError) else "ValueError"
                with contextlib.suppress(ValueError, OSError, RuntimeError):  # another's error
                    self._meet({"error": kind, "message": str(error)})
            raise
        except RuntimeError as error:  # jax.errors.JaxRuntimeError: a collective failed
            if self.count == 1 or type(error).__name__ != "JaxRuntimeError":
                raise
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise LostContact(
                f"process {self.index} of {self.count} failed in JAX ({first_line}); if another "
                "process died, run the same commands again on every process to resume after the "
                "last finished epoch"
            ) from error

    def settle(self, first_epoch: int, identity: Mapping[str, str], backup_dir: Path) -> int:
        """Wait for every process to be ready to train; return process 0's first epoch.

        On a resume, process 0's committed backup (``backup_dir``'s weights and metadata) is
        copied into the other processes' ``backup_dir`` (their private folder, see
        :func:`private_run_folder`), so that every process restores the same state the same way.

        Args:
            first_epoch: The epoch to resume from (process 0's, read from the run folder; the
                others' value is not used).
            identity: What must be the same on every process, by name (e.g. the settings and a
                fingerprint of the data); compared with process 0's.
            backup_dir: The backup folder of this process's run folder.

        Returns:
            The epoch every process starts at.

        Raises:
            ValueError: If a process failed before (:meth:`failures_shared`), or one's identity
                differs from process 0's, naming the process and what differs.
            OSError: If a process failed before with an ``OSError``, or the backup cannot be
                read or copied.
        """
        if self._met:
            return first_epoch
        digest = {
            name: hashlib.sha256(text.encode()).hexdigest() for name, text in identity.items()
        }
        outcome: dict[str, Any] = {"first_epoch": first_epoch, "identity": digest}
        weights = backup_dir / backup.BACKUP_WEIGHTS
        if self.writes and first_epoch:
            outcome["metadata"] = (backup_dir / backup.BACKUP_METADATA).read_text()
            outcome["weights_bytes"] = weights.stat().st_size
        outcomes = self._meet(outcome)
        first = outcomes[0]["identity"]
        for index, other in enumerate(outcomes):
            differs = sorted(name for name in digest if other["identity"].get(name) != first[name])
            if differs:
                raise ValueError(
                    f"process {index} has other {' and '.join(differs)} than process 0: start "
                    "every process with the same command, on the same data"
                )
        first_epoch = int(outcomes[0]["first_epoch"])
        if first_epoch:
            size = int(outcomes[0]["weights_bytes"])
            data = (
                np.frombuffer(weights.read_bytes(), dtype=np.uint8)
                if self.writes
                else np.zeros(size, dtype=np.uint8)
            )
            received = self._broadcast(data)
            if not self.writes:
                backup_dir.mkdir(parents=True, exist_ok=True)
                with storage.atomic_path(backup_dir / backup.BACKUP_WEIGHTS) as partial:
                    partial.write_bytes(received.tobytes())
                storage.write_text(backup_dir / backup.BACKUP_METADATA, outcomes[0]["metadata"])
        return first_epoch


@contextlib.contextmanager
def private_run_folder(index: int) -> Iterator[Path]:
    """A process's own temporary stand-in for the run folder, deleted afterwards.

    Every process must run the same Keras steps in the same order: with several JAX processes,
    creating or assigning a variable is a collective in which all take part (JAX checks that
    every process passes the same value), and so are the checkpoints' saves and restores. So the
    processes other than 0 run the whole trainer, callbacks included, on a folder of their own in
    the temporary directory; a folder left by a killed process is removed by the next one.

    Args:
        index: The process id (part of the folder's name).

    Yields:
        The folder.
    """
    parent = Path(tempfile.gettempdir())
    user = os.getuid() if hasattr(os, "getuid") else 0  # only one's own folders are removed
    storage.remove_abandoned(parent, f"dlnotes-{user}-process-*")
    with storage.staging_folder(parent, f"dlnotes-{user}-process-{index}-") as folder:
        yield folder


def start(settings: ProcessSettings) -> ProcessGroup:
    """Connect this process to the others (several processes); call before anything uses JAX.

    Prints which process this is and what happens if one dies. With one process it does nothing.

    Args:
        settings: From :func:`process_settings`.

    Returns:
        The group.

    Raises:
        ValueError: If the processes do not each have the same number of devices.
    """
    group = ProcessGroup(settings)
    if settings.count == 1:
        return group
    jax = import_quietly("jax")
    where = settings.coordinator or "derived from SLURM"
    print(
        f"process {settings.index} of {settings.count} ({settings.source}): connecting to the "
        f"coordinator {where}, waiting at most {settings.timeout} s for every process",
        flush=True,
    )
    jax.distributed.initialize(
        coordinator_address=settings.coordinator,
        num_processes=settings.count,
        process_id=settings.index,
        initialization_timeout=settings.timeout,
        heartbeat_timeout_seconds=settings.timeout,
        shutdown_timeout_seconds=settings.timeout,
    )
    per_process = collections.Counter(device.process_index for device in jax.devices())
    if len(set(per_process.values())) != 1:
        raise ValueError(
            "every process needs the same number of devices, got "
            + ", ".join(f"{per_process[p]} on process {p}" for p in sorted(per_process))
        )
    print(
        f"process {settings.index} of {settings.count}: {jax.local_device_count()} of "
        f"{jax.device_count()} devices; process 0 writes the run folder; if a process dies, "
        f"the others stop within {settings.timeout} s, and the same commands resume the run",
        flush=True,
    )
    return group
