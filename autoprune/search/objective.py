"""One candidate of the search: prune a copy of the baseline, fine-tune, evaluate, measure.

``FinetuneConfig`` lives in ``autoprune.config`` (part of the run config); it is re-exported
here for existing imports.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from autoprune.config import CalibrationConfig, FinetuneConfig, ModelConfig, RunConfig
from autoprune.data import DataSplits, calibration_batches
from autoprune.errors import ConfigError
from autoprune.metrics import measure
from autoprune.prune import CRITERIA, prune_
from autoprune.train import (
    Distillation,
    Progress,
    evaluate,
    finetune,
    recalibrate_batchnorm,
)


def recover(
    config: FinetuneConfig,
    model: nn.Module,
    data: DataSplits,
    *,
    teacher: nn.Module | None,
    seed: int,
    progress: Progress | None = None,
) -> None:
    """Recover a freshly pruned ``model`` in place as ``config`` says."""
    recalibrate_batchnorm(
        model, data, batches=config.bn_batches, batch_size=config.batch_size, seed=seed
    )
    distillation = (
        Distillation(teacher, weight=config.distill, temperature=config.temperature)
        if config.distill > 0 and teacher is not None
        else None
    )
    torch.manual_seed(seed)
    finetune(
        model,
        data,
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=round(config.warmup * config.steps),
        distillation=distillation,
        seed=seed,
        progress=progress,
    )


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
    calibration_config: CalibrationConfig = field(default_factory=CalibrationConfig)
    """The training batches a data-driven criterion scores on; drawn once, so every candidate
    is scored on the same batches (``RunConfig.search.calibration``)."""
    _calibration: list[tuple[torch.Tensor, torch.Tensor]] | None = field(
        default=None, init=False, repr=False
    )

    @classmethod
    def for_run(
        cls, run: RunConfig, baseline: nn.Module, data: DataSplits, *, model_config: ModelConfig
    ) -> CandidateEvaluator:
        """The evaluator of a ``joint`` run: its criterion, fine-tuning and calibration.

        ``model_config`` is ``run.model`` as the caller resolved it (its ``source``).
        """
        if run.finetune is None:
            raise ConfigError(
                f"a {run.search.method} run does not fine-tune candidates: it has no evaluator"
            )
        return cls(
            baseline=baseline,
            data=data,
            model_config=model_config,
            criterion=run.search.criterion,
            finetune_config=run.finetune,
            calibration_config=run.search.calibration or CalibrationConfig(seed=run.search.seed),
        )

    def calibration(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The calibration batches if the criterion needs data, else None (nothing drawn)."""
        if not CRITERIA.get(self.criterion).needs_data:
            return None
        if self._calibration is None:
            self._calibration = calibration_batches(self.data, **self.calibration_config.to_dict())
        return self._calibration

    def build(
        self,
        ratios: dict[str, float],
        *,
        seed: int,
        progress: Progress | None = None,
        seconds: dict[str, float] | None = None,
    ) -> tuple[nn.Module, dict[str, int]]:
        """The pruned and fine-tuned candidate and its kept channels per group.

        Deterministic for a given ``seed`` on one device, so a trial can be rebuilt to export.
        """
        device = next(self.baseline.parameters()).device
        started = time.perf_counter()
        model = copy.deepcopy(self.baseline)
        example = torch.zeros(1, *self.model_config.input_shape, device=device)
        # ``seed`` also drives the random criterion: a rebuilt trial prunes the same channels
        kept = prune_(
            model,
            ratios,
            criterion=self.criterion,
            example_input=example,
            calibration=self.calibration(),
            seed=seed,
        )
        pruned = time.perf_counter()
        recover(
            self.finetune_config,
            model,
            self.data,
            teacher=self.baseline,
            seed=seed,
            progress=progress,
        )
        if seconds is not None:
            seconds.update(prune=pruned - started, finetune=time.perf_counter() - pruned)
        return model, kept

    def __call__(
        self, ratios: dict[str, float], *, seed: int, progress: Progress | None = None
    ) -> CandidateResult:
        seconds: dict[str, float] = {}
        model, kept = self.build(ratios, seed=seed, progress=progress, seconds=seconds)
        started = time.perf_counter()
        val = evaluate(model, self.data, "val")
        seconds["evaluate"] = time.perf_counter() - started
        cost = measure(model, self.model_config.input_shape)
        return CandidateResult(
            val_accuracy=val.accuracy,
            val_loss=val.loss,
            size_bits=cost.size_bits,
            params=cost.params,
            macs=cost.macs,
            bops=cost.bops,
            kept_channels=kept,
            seconds=seconds,
        )
