"""Training, fine-tuning, evaluation, the cached baseline and checkpoint inspection.

Checkpoint files themselves live in ``autoprune.checkpoint`` (format, reading, writing) and
``autoprune.models.load_checkpoint`` (rebuilding the network a file describes).
"""

from autoprune.train.baseline import Baseline, baseline_path, obtain_baseline
from autoprune.train.loops import (
    OPTIMIZERS,
    SCHEDULES,
    Distillation,
    Evaluation,
    LRSchedule,
    Progress,
    Trainer,
    check_train_config,
    evaluate,
    evaluate_batches,
    finetune,
    recalibrate_batchnorm,
    resolve_precision,
    train,
)
from autoprune.train.report import CheckpointReport, describe_checkpoint
from autoprune.train.run import (
    EpochRecord,
    TrainedCheckpoint,
    TrainingInterrupted,
    make_trainer,
    train_checkpoint,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Baseline",
    "CheckpointReport",
    "Distillation",
    "EpochRecord",
    "Evaluation",
    "LRSchedule",
    "Progress",
    "TrainedCheckpoint",
    "Trainer",
    "TrainingInterrupted",
    "baseline_path",
    "check_train_config",
    "describe_checkpoint",
    "evaluate",
    "evaluate_batches",
    "finetune",
    "make_trainer",
    "obtain_baseline",
    "recalibrate_batchnorm",
    "resolve_precision",
    "train",
    "train_checkpoint",
]
