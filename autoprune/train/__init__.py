"""Training, fine-tuning, evaluation, checkpoints, the cached baseline and inspection."""

from autoprune.train.baseline import Baseline, baseline_path, obtain_baseline
from autoprune.train.checkpoint import build_model, load, read_checkpoint, save_checkpoint
from autoprune.train.loops import (
    OPTIMIZERS,
    SCHEDULES,
    Evaluation,
    LRSchedule,
    Progress,
    Trainer,
    evaluate,
    finetune,
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
    "EpochRecord",
    "Evaluation",
    "LRSchedule",
    "Progress",
    "TrainedCheckpoint",
    "Trainer",
    "TrainingInterrupted",
    "baseline_path",
    "build_model",
    "describe_checkpoint",
    "evaluate",
    "finetune",
    "load",
    "make_trainer",
    "obtain_baseline",
    "read_checkpoint",
    "resolve_precision",
    "save_checkpoint",
    "train",
    "train_checkpoint",
]
