"""The training layer: configuration, compiling, callbacks, sanity checks and the trainer.

Importing it imports Keras. The trainer is :func:`train` (:mod:`dlnotes.training.trainer`),
made of :mod:`~dlnotes.training.datasets` (the data), :mod:`~dlnotes.training.run_folder` (the
folder it resumes and writes), :mod:`~dlnotes.training.fit` (the models and Keras' ``fit``) and
:mod:`~dlnotes.training.backup` (the checkpoints' commit). The command line is
:mod:`dlnotes.training.cli` (``python -m dlnotes.train``); recorded GPU runs are read with
:mod:`dlnotes.training.records`.
"""

from __future__ import annotations

from dlnotes.training.backup import (
    BACKUP_METADATA,
    BACKUP_WEIGHTS,
    COMMIT_POINTS,
    PENDING_METADATA,
    STAGED_BEST,
    STAGED_MANIFEST,
    STAGED_WEIGHTS,
    RunBackup,
    recover_backup,
    resumed_epoch,
)
from dlnotes.training.callbacks import (
    FreeSpaceCheck,
    StopOnNonFiniteLoss,
    Throughput,
    TrainingDiverged,
    read_log,
    training_callbacks,
    truncate_log,
)
from dlnotes.training.cli import (
    main,
    parse_args,
)
from dlnotes.training.config import (
    DISTRIBUTE_CHOICES,
    PROFILE_DEFAULTS,
    RunOptions,
    TrainConfig,
    changed_settings,
    config_record,
    make_config,
    upgrade_record,
)
from dlnotes.training.datasets import (
    DataFiles,
    Dataset,
    DataSource,
    TinyImageNet,
    dataset_files,
    load_dataset,
    training_batches,
    validation_batches,
)
from dlnotes.training.fit import (
    BuildBackbone,
    build_models,
    distribution,
    fit,
    learning_rates,
    load_trained_model,
    resnet_backbone,
)
from dlnotes.training.lr_range import (
    RangeTest,
    learning_rate_range_test,
)
from dlnotes.training.manifest import (
    MANIFEST,
    RunFolderDamaged,
    check_run_folder_files,
)
from dlnotes.training.optimization import (
    PEAK_FLOPS,
    compile_classifier,
    learning_rate_schedule,
    make_optimizer,
    one_hot,
    peak_flops,
    precision_policy,
)
from dlnotes.training.run_folder import (
    check_devices,
    check_resumable,
    check_run_folder,
    record_run,
)
from dlnotes.training.sanity import (
    SanityReport,
    initial_sanity,
    overfit_one_batch,
)
from dlnotes.training.trainer import (
    check_options,
    train,
)

__all__ = [
    "BACKUP_METADATA",
    "BACKUP_WEIGHTS",
    "COMMIT_POINTS",
    "DISTRIBUTE_CHOICES",
    "MANIFEST",
    "PEAK_FLOPS",
    "PENDING_METADATA",
    "PROFILE_DEFAULTS",
    "STAGED_BEST",
    "STAGED_MANIFEST",
    "STAGED_WEIGHTS",
    "BuildBackbone",
    "DataFiles",
    "DataSource",
    "Dataset",
    "FreeSpaceCheck",
    "RangeTest",
    "RunBackup",
    "RunFolderDamaged",
    "RunOptions",
    "SanityReport",
    "StopOnNonFiniteLoss",
    "Throughput",
    "TinyImageNet",
    "TrainConfig",
    "TrainingDiverged",
    "build_models",
    "changed_settings",
    "check_devices",
    "check_options",
    "check_resumable",
    "check_run_folder",
    "check_run_folder_files",
    "compile_classifier",
    "config_record",
    "dataset_files",
    "distribution",
    "fit",
    "initial_sanity",
    "learning_rate_range_test",
    "learning_rate_schedule",
    "learning_rates",
    "load_dataset",
    "load_trained_model",
    "main",
    "make_config",
    "make_optimizer",
    "one_hot",
    "overfit_one_batch",
    "parse_args",
    "peak_flops",
    "precision_policy",
    "read_log",
    "record_run",
    "recover_backup",
    "resnet_backbone",
    "resumed_epoch",
    "train",
    "training_batches",
    "training_callbacks",
    "truncate_log",
    "upgrade_record",
    "validation_batches",
]
