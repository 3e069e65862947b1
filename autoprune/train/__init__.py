"""Training, fine-tuning, evaluation, checkpoints and the cached baseline."""

from autoprune.train.baseline import (
    Baseline,
    TrainedCheckpoint,
    baseline_path,
    obtain_baseline,
    train_checkpoint,
)
from autoprune.train.checkpoint import build_model, load, read_checkpoint, save_checkpoint
from autoprune.train.loops import Evaluation, Progress, evaluate, finetune, train

__all__ = [
    "Baseline",
    "Evaluation",
    "Progress",
    "TrainedCheckpoint",
    "baseline_path",
    "build_model",
    "evaluate",
    "finetune",
    "load",
    "obtain_baseline",
    "read_checkpoint",
    "save_checkpoint",
    "train",
    "train_checkpoint",
]
