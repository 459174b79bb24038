"""The training layer: configuration, compiling, callbacks, sanity checks and the trainer.

Importing it imports Keras. The command line is :mod:`dlnotes.training.cli`
(``python -m dlnotes.train``); recorded GPU runs are read with :mod:`dlnotes.training.records`.
"""

from __future__ import annotations

from dlnotes.training.callbacks import (
    BACKUP_METADATA,
    BACKUP_WEIGHTS,
    KILL_POINT_ENV,
    PENDING_METADATA,
    STAGED_BEST,
    STAGED_MANIFEST,
    STAGED_WEIGHTS,
    FreeSpaceCheck,
    RunBackup,
    StopOnNonFiniteLoss,
    Throughput,
    TrainingDiverged,
    read_log,
    recover_backup,
    resumed_epoch,
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
    TrainConfig,
    make_config,
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
from dlnotes.training.runner import (
    DataFiles,
    Dataset,
    build_models,
    check_devices,
    check_run_folder,
    check_run_options,
    dataset_files,
    distribution,
    learning_rates,
    load_dataset,
    load_trained_model,
    record_run,
    run,
    training_batches,
)
from dlnotes.training.sanity import (
    SanityReport,
    initial_sanity,
    overfit_one_batch,
)

__all__ = [
    "BACKUP_METADATA",
    "BACKUP_WEIGHTS",
    "DISTRIBUTE_CHOICES",
    "KILL_POINT_ENV",
    "MANIFEST",
    "PEAK_FLOPS",
    "PENDING_METADATA",
    "PROFILE_DEFAULTS",
    "STAGED_BEST",
    "STAGED_MANIFEST",
    "STAGED_WEIGHTS",
    "DataFiles",
    "Dataset",
    "FreeSpaceCheck",
    "RangeTest",
    "RunBackup",
    "RunFolderDamaged",
    "SanityReport",
    "StopOnNonFiniteLoss",
    "Throughput",
    "TrainConfig",
    "TrainingDiverged",
    "build_models",
    "check_devices",
    "check_run_folder",
    "check_run_folder_files",
    "check_run_options",
    "compile_classifier",
    "dataset_files",
    "distribution",
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
    "resumed_epoch",
    "run",
    "training_batches",
    "training_callbacks",
    "truncate_log",
]
