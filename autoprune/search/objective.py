"""One candidate of the search: prune a copy of the baseline, fine-tune, evaluate, measure.

``FinetuneConfig`` lives in ``autoprune.config`` (part of the run config); it is re-exported
here for existing imports.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from autoprune.config import (
    CalibrationConfig,
    FinetuneConfig,
    HalvingConfig,
    ModelConfig,
    RunConfig,
)
from autoprune.data import DataSplits, calibration_batches, validation_subset
from autoprune.errors import ConfigError
from autoprune.metrics import measure
from autoprune.prune import CRITERIA, prune_
from autoprune.quant import set_layer_bits_
from autoprune.search.space import split_params
from autoprune.train import (
    Distillation,
    Evaluation,
    Progress,
    evaluate,
    evaluate_batches,
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
    """Recover a freshly pruned ``model`` in place as ``config`` says.

    ``progress(done, steps)`` is called with ``done = 0`` once BatchNorm is re-estimated, then
    after every fine-tuning step; it may raise to stop the recovery there.
    """
    recalibrate_batchnorm(
        model, data, batches=config.bn_batches, batch_size=config.batch_size, seed=seed
    )
    if progress is not None:
        progress(0, config.steps)
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


Rung = Callable[[int, float], bool]
"""``(steps, accuracy) -> go on``: a candidate's score at a rung of successive halving, on the
validation subset; False stops it there (``autoprune.search.halving``)."""


@dataclass(frozen=True)
class CandidateResult:
    """A scored candidate; ``stopped_at`` set: halving stopped it at that rung, and its scores
    are the rung's, on the validation subset."""

    val_accuracy: float
    val_loss: float
    size_bits: int
    params: int
    macs: int
    bops: int
    kept_channels: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    stopped_at: int | None = None


class _StoppedAtRung(Exception):
    def __init__(self, steps: int, score: Evaluation) -> None:
        super().__init__(f"stopped after {steps} fine-tuning steps")
        self.steps, self.score = steps, score


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
    halving: HalvingConfig | None = None
    """Successive halving (``RunConfig.search.halving``): the rungs a ``rung`` callback of
    ``__call__`` is asked at, and the validation subset scored there."""
    _calibration: list[tuple[torch.Tensor, torch.Tensor]] | None = field(
        default=None, init=False, repr=False
    )
    _rung_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = field(
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
            halving=run.search.halving,
        )

    def calibration(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The calibration batches if the criterion needs data, else None (nothing drawn)."""
        if not CRITERIA.get(self.criterion).needs_data:
            return None
        if self._calibration is None:
            self._calibration = calibration_batches(self.data, **self.calibration_config.to_dict())
        return self._calibration

    def prune(self, ratios: dict[str, float], *, seed: int) -> tuple[nn.Module, dict[str, int]]:
        """A pruned copy of the baseline (not recovered) and its kept channels per group.

        ``ratios`` may also hold searched bit-widths (``bits:<layer>``, see
        ``autoprune.search.space.split_params``): those layers are re-quantized first, so the
        criterion scores the filters at the precision they will have."""
        ratios, bits = split_params(ratios)
        device = next(self.baseline.parameters()).device
        model = set_layer_bits_(copy.deepcopy(self.baseline), bits)
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
        return model, kept

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
        started = time.perf_counter()
        model, kept = self.prune(ratios, seed=seed)
        pruned = time.perf_counter()
        self._recover(model, seed=seed, progress=progress)
        if seconds is not None:
            seconds.update(prune=pruned - started, finetune=time.perf_counter() - pruned)
        return model, kept

    def rescore(self, ratios: dict[str, float], *, seed: int, finetune_seed: int) -> float:
        """Validation accuracy of the candidate pruned as with ``seed`` (so the random
        criterion keeps the same channels) and recovered with ``finetune_seed`` instead: one
        more draw of the same network's score (``autoprune.search.confirm``)."""
        model, _ = self.prune(ratios, seed=seed)
        self._recover(model, seed=finetune_seed, progress=None)
        return evaluate(model, self.data, "val").accuracy

    def _recover(self, model: nn.Module, *, seed: int, progress: Progress | None) -> None:
        recover(
            self.finetune_config,
            model,
            self.data,
            teacher=self.baseline,
            seed=seed,
            progress=progress,
        )

    def rung_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The validation subset rungs score on, drawn once (``HalvingConfig.subset``)."""
        if self._rung_batches is None:
            images = self.halving.subset if self.halving is not None else 0
            self._rung_batches = validation_subset(self.data, images=images)
        return self._rung_batches

    def __call__(
        self,
        ratios: dict[str, float],
        *,
        seed: int,
        progress: Progress | None = None,
        rung: Rung | None = None,
    ) -> CandidateResult:
        """Prune, recover and score a candidate; with ``halving`` and a ``rung`` callback, the
        candidate is scored at each rung and stops where ``rung`` says so. The fine-tuning
        does not depend on the rungs: a candidate that goes on ends exactly as without them.
        """
        started = time.perf_counter()
        model, kept = self.prune(ratios, seed=seed)
        pruned = time.perf_counter()
        rungs = set(self.halving.rungs) if self.halving is not None and rung else set()
        scoring = 0.0  # seconds spent scoring rungs
        watched = progress
        if rungs:

            def watched(done: int, total: int) -> None:
                nonlocal scoring
                if progress is not None:
                    progress(done, total)
                if done in rungs:
                    began = time.perf_counter()
                    score = evaluate_batches(model, self.rung_batches())
                    scoring += time.perf_counter() - began
                    if not rung(done, score.accuracy):
                        raise _StoppedAtRung(done, score)

        stopped: _StoppedAtRung | None = None
        try:
            self._recover(model, seed=seed, progress=watched)
        except _StoppedAtRung as stop:
            stopped = stop
        recovered = time.perf_counter()
        val = evaluate(model, self.data, "val") if stopped is None else stopped.score
        seconds = {
            "prune": pruned - started,
            "finetune": recovered - pruned - scoring,
            "evaluate": time.perf_counter() - recovered + scoring,
        }
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
            stopped_at=None if stopped is None else stopped.steps,
        )
