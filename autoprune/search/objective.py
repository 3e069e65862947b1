"""One candidate of the search: prune a copy of the baseline, fine-tune, evaluate, measure."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from autoprune.config import ModelConfig
from autoprune.data import DataSplits
from autoprune.metrics import measure
from autoprune.prune import prune_
from autoprune.train import Progress, evaluate, finetune


@dataclass(frozen=True)
class FinetuneConfig:
    """How each candidate is recovered before it is scored: a short fixed budget."""

    steps: int = 40
    lr: float = 1e-3
    batch_size: int = 128

    def to_dict(self) -> dict[str, float]:
        return {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size}


@dataclass(frozen=True)
class CandidateResult:
    val_accuracy: float
    val_loss: float
    size_bits: int
    params: int
    macs: int
    bops: int
    kept_channels: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class CandidateEvaluator:
    """Scores pruning ratios against one fixed baseline; the baseline is never modified."""

    baseline: nn.Module
    data: DataSplits
    model_config: ModelConfig
    criterion: str
    finetune_config: FinetuneConfig

    def __call__(
        self, ratios: dict[str, float], *, seed: int, progress: Progress | None = None
    ) -> CandidateResult:
        device = next(self.baseline.parameters()).device
        started = time.perf_counter()
        model = copy.deepcopy(self.baseline)
        example = torch.zeros(1, *self.model_config.input_shape, device=device)
        kept = prune_(model, ratios, criterion=self.criterion, example_input=example)
        pruned = time.perf_counter()
        torch.manual_seed(seed)
        finetune(
            model,
            self.data,
            steps=self.finetune_config.steps,
            batch_size=self.finetune_config.batch_size,
            lr=self.finetune_config.lr,
            seed=seed,
            progress=progress,
        )
        tuned = time.perf_counter()
        val = evaluate(model, self.data, "val")
        evaluated = time.perf_counter()
        cost = measure(model, self.model_config.input_shape)
        return CandidateResult(
            val_accuracy=val.accuracy,
            val_loss=val.loss,
            size_bits=cost.size_bits,
            params=cost.params,
            macs=cost.macs,
            bops=cost.bops,
            kept_channels=kept,
            seconds={
                "prune": pruned - started,
                "finetune": tuned - pruned,
                "evaluate": evaluated - tuned,
            },
        )
