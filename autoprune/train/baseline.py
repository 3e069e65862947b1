"""The unpruned quantized baseline: trained once per full config, then reused from a cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from autoprune.checkpoint import save_checkpoint
from autoprune.config import DataConfig, ModelConfig, TrainConfig, config_key
from autoprune.data import ImageData
from autoprune.errors import CheckpointError
from autoprune.models import build_model, load_checkpoint
from autoprune.paths import check_output
from autoprune.preprocess import preprocess_of
from autoprune.train.loops import Progress, evaluate
from autoprune.train.run import make_trainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Baseline:
    model: nn.Module
    path: Path
    val_accuracy: float
    reused: bool


def baseline_path(
    cache_dir: Path, model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig
) -> Path:
    key = config_key(model_config, data_config, train_config)
    label = f"{model_config.name}-{model_config.spec.label}-{data_config.name}"
    return cache_dir / "baselines" / f"{label}-{key}.pt"


def _train_fresh(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: ImageData,
    device: torch.device,
    progress: Progress | None,
) -> nn.Module:
    """The same steps as ``train_checkpoint`` (same weights), without per-epoch checkpoints."""
    torch.manual_seed(train_config.seed)
    model = build_model(model_config).to(device)
    trainer = make_trainer(model, data, train_config, device)
    trainer.run(trainer.total_steps, progress)
    return model


def _load_cached(path: Path, model_config: ModelConfig, device: torch.device) -> nn.Module | None:
    """The cached baseline, or None if there is none or it is unusable (then it is retrained)."""
    if not path.is_file():
        return None
    try:
        cached = load_checkpoint(
            path, model=model_config.source, device=device, what=f"cached baseline {path}"
        )
    except CheckpointError as error:
        logger.warning("ignoring unusable cached baseline (%s); training a new one", error)
        return None
    if cached.config != model_config or cached.kept_channels:
        logger.warning("ignoring cached baseline %s made for another model; retraining", path)
        return None
    return cached.model


def obtain_baseline(
    model_config: ModelConfig,
    data_config: DataConfig,
    train_config: TrainConfig,
    data: ImageData,
    *,
    cache_dir: Path,
    device: torch.device,
    progress: Progress | None = None,
) -> Baseline:
    """Load the cached baseline for this exact config, or train and cache it."""
    path = baseline_path(cache_dir, model_config, data_config, train_config)
    model = _load_cached(path, model_config, device)
    reused = model is not None
    if model is None:
        check_output(path, what="baseline cache file")  # before the training, not after it
        model = _train_fresh(model_config, train_config, data, device, progress)
    val = evaluate(model, data, "val")
    if not reused:
        metadata = {
            "data": data_config.to_dict(),
            "train": train_config.to_dict(),
            "val_accuracy": val.accuracy,
        }
        save_checkpoint(
            path, model, model_config, metadata=metadata, preprocess=preprocess_of(data)
        )
    return Baseline(model=model.eval(), path=path, val_accuracy=val.accuracy, reused=reused)
