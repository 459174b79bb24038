"""Train the Tiny ImageNet ResNet from the command line, resumably.

Usage:
    python -m dlnotes.train --data-dir ROOT --out-dir OUT [--profile smoke|full]
        [--epochs N] [--batch-size B] [--levels 4,6,3,2] [--width 64] [--mix cutmix] …
        [--distribute none|data-parallel] [--dry-run]
        [--coordinator-address HOST:PORT --num-processes N --process-id I] [--process-timeout S]

Re-running the same command after an interruption — even ``kill -9`` at any instant, checkpoint
writes included — resumes from ``OUT/backup`` after the last finished epoch and finishes the
requested number of epochs; ``OUT/history.csv`` has each epoch exactly once and
``OUT/best.weights.h5`` stays the best epoch's weights (see
:class:`dlnotes.training.backup.RunBackup`).
One trainer at a time may use ``OUT`` (a second one is refused). Every setting and
``KERAS_BACKEND`` are checked before ``OUT`` is created or touched; the settings
(``config.json``) and the data (``dataset.json``: class ids and a fingerprint of the files) are
checked before a resume, and resuming with others is refused; ``OUT/manifest.json`` lists the
files of the last committed epoch with their checksums, and a damaged folder is refused naming
the file (:mod:`dlnotes.training.manifest`). A NaN or infinite loss stops the run with an error
before the epoch is saved. A full disk stops the run with an error and the same command resumes
once there is room; so does Ctrl-C (exit status 130, :mod:`dlnotes.commands`). At the end
``OUT/metrics.json`` holds the validation accuracy, where the time went (decoding, first epoch
with compilation, steady epochs, final evaluation, the whole command), the versions, the device
and the dataset's size. ``--dry-run`` prints the resolved configuration as JSON and exits. Works
on every Keras backend that trains (``KERAS_BACKEND=jax`` on a GPU machine without TensorFlow).
On JAX, ``--distribute data-parallel`` also trains over several processes — several machines —
started with the same command and told who is who by ``--coordinator-address``,
``--num-processes`` and ``--process-id`` (or Keras' or SLURM's variables); process 0 alone writes
``OUT`` (:mod:`dlnotes.training.multihost`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dlnotes.runtime import paths
from dlnotes.training import multihost
from dlnotes.training.config import (
    DISTRIBUTE_CHOICES,
    TRAINING_PROFILES,
    RunOptions,
    TrainConfig,
    make_config,
)
from dlnotes.training.trainer import check_options, train


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"levels must be comma-separated integers, got {text!r}"
        ) from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"levels must be positive integers, got {text!r}")
    return levels


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "1", "yes"):
        return True
    if text.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def _flag_type(hint: Any) -> Callable[[str], Any]:
    """How a :class:`TrainConfig` field's flag reads its text, from the field's type."""
    if hint is bool:
        return _on_off
    if typing.get_origin(hint) is tuple:
        return _levels
    given = [kind for kind in typing.get_args(hint) if kind is not type(None)]  # X | None: X
    parse: Callable[[str], Any] = given[0] if given else hint
    return parse


def _add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--batch-size`` for ``batch_size``), described
    by the field's metadata; left out, the field is None and the profile decides."""
    hints = typing.get_type_hints(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        described = dict(item.metadata)
        if described.pop("cli", True) is False:
            continue
        text = described.pop("help", "") or None
        flag = "--" + item.name.replace("_", "-")
        parser.add_argument(flag, type=_flag_type(hints[item.name]), help=text, **described)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m dlnotes.train``.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The parsed arguments; recipe options left out are None (the profile decides).
    """
    parser = argparse.ArgumentParser(
        prog="python -m dlnotes.train", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="Tiny ImageNet root (default: DLNOTES_DATA_DIR or the cache)",
    )
    parser.add_argument(
        "--out-dir", type=Path, required=True, help="run folder; re-use it to resume"
    )
    parser.add_argument(
        "--profile",
        choices=TRAINING_PROFILES,
        default=None,
        help="the recipe's defaults: smoke (CPU, data subset), full (best within ten minutes on "
        "one GPU), fast (60 %% within five minutes on one GPU); default: DLNOTES_PROFILE or auto",
    )
    _add_recipe_flags(parser)
    _add_device_flags(parser)
    parser.add_argument(
        "--tfrecords",
        type=Path,
        default=None,
        help="read the images from the train/val TFRecord shards of dlnotes-make-tfrecords in "
        "this folder instead of the JPEG files (TensorFlow backend)",
    )
    parser.add_argument(
        "--decode-workers",
        type=int,
        default=None,
        help="processes that decode the JPEGs (default: the CPU count, at most 32); they die "
        "with the trainer",
    )
    parser.add_argument(
        "--logical-cpus",
        type=int,
        default=0,
        help="split the CPU into N logical devices (tests the multi-device path without GPUs)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the resolved configuration and exit"
    )
    return parser.parse_args(argv)


def _add_device_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the devices and of the processes of a run."""
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=None,
        help="training steps per call of the compiled function (default: 32 on a GPU, 1 on a CPU)",
    )
    parser.add_argument(
        "--distribute",
        choices=DISTRIBUTE_CHOICES,
        default="none",
        help="data-parallel: every local accelerator, with keras.distribution.DataParallel on "
        "JAX (and those of every process, see below) or tf.distribute.MirroredStrategy on "
        "TensorFlow ('mirrored' is an alias)",
    )
    processes = parser.add_argument_group(
        "several processes (several machines; JAX, with --distribute data-parallel)",
        "start the same command once per process; process 0 alone writes --out-dir",
    )
    processes.add_argument(
        "--coordinator-address",
        default=None,
        metavar="HOST:PORT",
        help="where process 0 listens for the others (default: KERAS_DISTRIBUTION_JOB_ADDRESSES; "
        "under SLURM, JAX derives it from the job's first node)",
    )
    processes.add_argument(
        "--num-processes",
        type=int,
        default=None,
        help="processes of the run (default: KERAS_DISTRIBUTION_NUM_PROCESSES, SLURM_NTASKS or 1)",
    )
    processes.add_argument(
        "--process-id",
        type=int,
        default=None,
        help="this process's id, from 0 (default: KERAS_DISTRIBUTION_PROCESS_ID, SLURM_PROCID "
        "or 0)",
    )
    processes.add_argument(
        "--process-timeout",
        type=int,
        default=None,
        help="seconds to wait for every process to connect, before a silent process ends the "
        "run, and at the end (default: 100)",
    )


def run_command(args: argparse.Namespace, *, started: float | None = None) -> dict[str, Any]:
    """Carry out a parsed command line: :func:`dlnotes.training.train`, or print the resolved
    configuration with ``--dry-run``.

    Args:
        args: From :func:`parse_args`.
        started: ``time.perf_counter()`` value the wall time counts from (default: now).

    Returns:
        The metrics (``{}`` for a dry run).

    Raises:
        ValueError, OSError: As :func:`dlnotes.training.train`.
    """
    config = make_config(args)  # every setting is checked before the run folder is touched
    options = RunOptions.from_args(args)
    if args.dry_run:
        check_options(options)
        data_dir = args.data_dir if args.data_dir is not None else paths.data_dir()
        print(json.dumps({**asdict(config), "data_dir": str(data_dir)}, indent=2))
        return {}
    return train(
        config, out_dir=args.out_dir, data_dir=args.data_dir, options=options, started=started
    )


def main(argv: list[str] | None = None, *, started: float | None = None) -> int:
    """Entry point of ``python -m dlnotes.train`` and ``dlnotes-train``; returns the exit status.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        started: ``time.perf_counter()`` value the run's wall time counts from (default: now).

    Returns:
        0 on success, 1 after an error (printed as one line), 2 for bad arguments (argparse).
    """
    args = parse_args(argv)
    try:
        run_command(args, started=started)
    except (ValueError, OSError) as error:  # FileNotFoundError and FolderInUse included
        print(f"error: {error}", file=sys.stderr)
        if isinstance(error, multihost.LostContact):  # the others will not come to say goodbye
            multihost.leave(1)
        return 1
    return 0
