"""One candidate of the search: prune a copy of the baseline, fine-tune, evaluate, measure."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from autoprune.config import ModelConfig, require_number
from autoprune.data import DataSplits
from autoprune.metrics import measure
from autoprune.prune import CRITERIA, prune_
from autoprune.train import (
    Distillation,
    Progress,
    evaluate,
    finetune,
    recalibrate_batchnorm,
)


@dataclass(frozen=True)
class FinetuneConfig:
    """How each candidate is recovered before it is scored: a short fixed budget.

    - ``bn_batches``: training batches on which every BatchNorm's statistics are re-estimated
      right after pruning (0: off), see ``autoprune.train.recalibrate_batchnorm``.
    - ``steps`` Adam steps at peak ``lr``, reached after a linear warmup over ``warmup`` (a
      fraction of the steps), then cosine decay to 0.
    - ``distill``: weight of knowledge distillation from the unpruned network at
      ``temperature`` (0: plain cross-entropy), see ``autoprune.train.Distillation``.
    """

    steps: int = 40
    lr: float = 1e-3
    batch_size: int = 128
    warmup: float = 0.0
    distill: float = 0.0
    temperature: float = 4.0
    bn_batches: int = 0

    def __post_init__(self) -> None:
        require_number("finetune steps", self.steps, low=0, integer=True)
        require_number("finetune lr", self.lr, low=0.0, strict=True)
        require_number("finetune batch_size", self.batch_size, low=1, integer=True)
        require_number("finetune warmup", self.warmup, low=0.0, below=1.0)
        require_number("finetune distill", self.distill, low=0.0, below=1.0 + 1e-12)
        require_number("finetune temperature", self.temperature, low=0.0, strict=True)
        require_number("finetune bn_batches", self.bn_batches, low=0, integer=True)

    def to_dict(self) -> dict[str, float]:
        return {
            "steps": self.steps,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "warmup": self.warmup,
            "distill": self.distill,
            "temperature": self.temperature,
            "bn_batches": self.bn_batches,
        }

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> FinetuneConfig:
        """Stored configs from before a field existed get the value that reproduces them."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def recover(
        self,
        model: nn.Module,
        data: DataSplits,
        *,
        teacher: nn.Module | None,
        seed: int,
        progress: Progress | None = None,
    ) -> None:
        """Recover a freshly pruned ``model`` in place as configured."""
        recalibrate_batchnorm(
            model, data, batches=self.bn_batches, batch_size=self.batch_size, seed=seed
        )
        distillation = (
            Distillation(teacher, weight=self.distill, temperature=self.temperature)
            if self.distill > 0 and teacher is not None
            else None
        )
        torch.manual_seed(seed)
        finetune(
            model,
            data,
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=round(self.warmup * self.steps),
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


CALIBRATION_BATCHES = 4  # batches a data-driven criterion scores on (a few: taylor converges fast)


def draw_calibration_batches(
    data: DataSplits, *, count: int, batch_size: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` training batches, shuffled (and augmented, as in training) with ``seed``.

    What data-driven criteria (``taylor``) score channels on; the same seed gives the same
    batches, so a candidate can be rebuilt exactly.
    """
    generator = torch.Generator().manual_seed(seed)  # CPU generator: same batches on any device
    batches = []
    for batch in data.batches("train", batch_size, train=True, generator=generator):
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


@dataclass
class CandidateEvaluator:
    """Scores pruning ratios against one fixed baseline; the baseline is never modified."""

    baseline: nn.Module
    data: DataSplits
    model_config: ModelConfig
    criterion: str
    finetune_config: FinetuneConfig
    calibration_batches: int = CALIBRATION_BATCHES
    """Training batches (of ``finetune_config.batch_size``) a data-driven criterion scores on;
    drawn once with ``calibration_seed``, so every candidate is scored on the same batches."""
    calibration_seed: int = 0
    _calibration: list[tuple[torch.Tensor, torch.Tensor]] | None = field(
        default=None, init=False, repr=False
    )

    def calibration(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The calibration batches if the criterion needs data, else None (nothing drawn)."""
        if not CRITERIA.get(self.criterion).needs_data:
            return None
        if self._calibration is None:
            self._calibration = draw_calibration_batches(
                self.data,
                count=self.calibration_batches,
                batch_size=self.finetune_config.batch_size,
                seed=self.calibration_seed,
            )
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
        self.finetune_config.recover(
            model, self.data, teacher=self.baseline, seed=seed, progress=progress
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
