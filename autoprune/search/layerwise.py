"""The paper's layer-wise method: greedy 1-D Bayesian optimisation, one group at a time.

Guerra et al. (2020) prune the groups from the last to the first. For each group a 1-D
Bayesian optimisation chooses its ratio ``r``: fixed probes at the low end, the middle and the
high end of the group's range, then random points, then guided ones (13 evaluations in all
by default). An evaluation prunes the current network at ``r`` *without* fine-tuning and scores

    objective = -( CE_val + alpha * P / 100 + (alpha / 4) * B / 100 )      (maximised)

with ``P`` the parameter count and ``B`` the size in bits, both in percent of the unpruned
network. The best ratio is applied; when it is at least ``retrain_threshold`` the network is
retrained briefly before the next group, and after the last group it is fine-tuned once more.

Storage: every group is its own Optuna study named ``<study>/<position>-<group>`` (a 1-D
sampler needs trials over one parameter only), in the same storage as the parent study. The
parent records each decision, and when done one trial for the unpruned baseline and one for
the result, so ``autoprune pareto`` and ``autoprune export`` treat both methods alike.
Interrupted runs resume: finished groups are skipped (their network reloaded from the state
checkpoint, or rebuilt from the stored decisions when that file is gone), a group's completed
evaluations are kept. The method is sequential by nature: run one worker per study.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from autoprune.checkpoint import save_checkpoint
from autoprune.config import SEED_LIMIT, CalibrationConfig, LayerwiseConfig, ModelConfig
from autoprune.data import DataSplits, calibration_batches
from autoprune.metrics import BITS_PER_MB, measure
from autoprune.models import load_checkpoint
from autoprune.preprocess import preprocess_of
from autoprune.prune import CRITERIA, prune_
from autoprune.prune.groups import RESIDUAL_PREFIX
from autoprune.search.record import TrialRecord
from autoprune.search.samplers import create_sampler
from autoprune.search.space import GroupRange, SearchSpace
from autoprune.search.study import BASELINE_PATH_ATTR, LAYERWISE_PARENT_ATTR, SearchObserver
from autoprune.train import evaluate, finetune

DECISION_ATTR = "layerwise_decision_{position:02d}"
RESULT_ATTR = "layerwise_result"

__all__ = ["GroupDecision", "LayerwiseConfig", "LayerwiseResult", "LayerwiseSearch"]


@dataclass(frozen=True)
class GroupDecision:
    """The ratio chosen for one group and what it cost."""

    position: int
    group: str
    ratio: float
    objective: float
    val_loss: float
    val_accuracy: float
    retrained: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerwiseResult:
    decisions: list[GroupDecision]
    kept_channels: dict[str, int]
    val_accuracy: float
    test_accuracy: float
    size_bits: int
    params: int
    checkpoint: Path


def probe_ratios(group: GroupRange, count: int) -> list[float]:
    """``count`` evenly spaced ratios from the group's low to its high end, on its step grid."""
    if count == 1:
        points = [group.low]
    else:
        points = [group.low + i * (group.high - group.low) / (count - 1) for i in range(count)]
    snapped = [group.low + round((p - group.low) / group.step) * group.step for p in points]
    return list(dict.fromkeys(round(min(p, group.high), 10) for p in snapped))


def objective_value(
    val_loss: float, params: int, size_bits: int, base_params: int, base_bits: int, alpha: float
) -> float:
    """``-(CE + alpha * P% / 100 + alpha / 4 * B% / 100)``; a diverged network scores -inf."""
    if not math.isfinite(val_loss):
        return -math.inf
    return -(val_loss + alpha * params / base_params + alpha / 4 * size_bits / base_bits)


@dataclass
class LayerwiseSearch:
    """Runs (or resumes) the layer-wise method for one parent study."""

    parent: optuna.Study
    storage: optuna.storages.BaseStorage
    space: SearchSpace
    baseline: nn.Module
    data: DataSplits
    model_config: ModelConfig
    criterion: str
    config: LayerwiseConfig
    sampler: str
    seed: int
    state_dir: Path  # the network after each group and the result; one folder per study
    # the batches a data-driven criterion scores on (RunConfig.search.calibration); None: the
    # defaults with this search's seed
    calibration_config: CalibrationConfig | None = None

    def __post_init__(self) -> None:
        self.device = next(self.baseline.parameters()).device
        self.example = torch.zeros(1, *self.model_config.input_shape, device=self.device)
        base = measure(self.baseline, self.model_config.input_shape)
        self.base_params, self.base_bits = base.params, base.size_bits
        # greedy from the last group to the first, as in the paper
        self.order = list(reversed(self.space.groups))
        # kept channels must list the residual groups too once any may be pruned, or a stored
        # state could not be rebuilt
        self.residual = self.space.residual or any(
            group.name.startswith(RESIDUAL_PREFIX) for group in self.space.groups
        )
        # data-driven criteria (taylor) score every candidate on the same seeded batches
        self.calibration = None
        if CRITERIA.get(self.criterion).needs_data:
            calibration = self.calibration_config or CalibrationConfig(seed=self.seed)
            self.calibration = calibration_batches(self.data, **calibration.to_dict())

    def _prune(self, model: nn.Module, ratios: dict[str, float]) -> dict[str, int]:
        """``prune_`` with this search's criterion, calibration and residual setting; with no
        ratios it only reads the kept channels."""
        return prune_(
            model,
            ratios,
            criterion=self.criterion,
            example_input=self.example,
            calibration=self.calibration,
            seed=self.seed,
            residual=self.residual,
        )

    # -- storage names -------------------------------------------------------------------
    def group_study_name(self, position: int, group: GroupRange) -> str:
        return f"{self.parent.study_name}/{position:02d}-{group.name}"

    def _state_path(self, position: int) -> Path:
        return self.state_dir / f"after-{position:02d}.pt"

    def decisions(self) -> list[GroupDecision]:
        """The decisions already stored in the parent study, in greedy order."""
        found = []
        for position in range(len(self.order)):
            stored = self.parent.user_attrs.get(DECISION_ATTR.format(position=position))
            if stored is None:
                break
            found.append(GroupDecision(**stored))
        return found

    # -- one evaluation ------------------------------------------------------------------
    def _prune_copy(self, model: nn.Module, group: str, ratio: float) -> tuple[nn.Module, dict]:
        candidate = copy.deepcopy(model)
        return candidate, self._prune(candidate, {group: ratio})

    def _evaluate(self, model: nn.Module, group: str, ratio: float) -> tuple[float, TrialRecord]:
        """The objective of pruning ``group`` of ``model`` at ``ratio``, and its record."""
        candidate, kept = self._prune_copy(model, group, ratio)
        val = evaluate(candidate, self.data, "val")
        cost = measure(candidate, self.model_config.input_shape)
        objective = objective_value(
            val.loss,
            cost.params,
            cost.size_bits,
            self.base_params,
            self.base_bits,
            self.config.alpha,
        )
        record = TrialRecord(
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            params=cost.params,
            size_bits=cost.size_bits,
            kept_channels=kept,
        )
        return objective, record

    # -- one group -----------------------------------------------------------------------
    def _group_study(self, position: int, group: GroupRange) -> optuna.Study:
        name = self.group_study_name(position, group)
        study = optuna.create_study(
            storage=self.storage, study_name=name, direction="maximize", load_if_exists=True
        )
        study.set_user_attr(LAYERWISE_PARENT_ATTR, self.parent.study_name)
        # the seed is offset by the trials already there, so a resumed group does not replay
        # the random points it has already evaluated
        study.sampler = create_sampler(
            self.sampler,
            seed=(self.seed + 1000 * position + len(study.trials)) % SEED_LIMIT,
            n_startup_trials=self.config.probes + self.config.random_points,
        )
        # the method runs one worker per study, so a trial still RUNNING here belongs to an
        # interrupted run: fail it, so its probe is enqueued again
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        alive = (TrialState.COMPLETE, TrialState.WAITING)
        # a waiting trial's parameters are still the fixed ones enqueue_trial recorded
        present = {
            (t.params or t.system_attrs.get("fixed_params", {})).get(group.name)
            for t in study.get_trials(deepcopy=False, states=alive)
        }
        for ratio in probe_ratios(group, self.config.probes):
            if ratio not in present:
                study.enqueue_trial(
                    {group.name: ratio}, user_attrs=TrialRecord(probe=True).to_user_attrs()
                )
        return study

    def _search_group(
        self, position: int, group: GroupRange, model: nn.Module, observer: SearchObserver
    ) -> FrozenTrial:
        study = self._group_study(position, group)

        def objective(trial: optuna.Trial) -> float:
            ratio = trial.suggest_float(group.name, group.low, group.high, step=group.step)
            observer.trial_started(trial.number, {group.name: ratio})
            # an evaluation is deterministic: a ratio the sampler proposes again is not re-run
            done = [
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.params[group.name] == ratio
            ]
            if done:
                copied = TrialRecord.from_trial(done[0])
                replace(copied, probe=None, repeat_of=done[0].number).write(trial)
                return float(done[0].value)
            objective, record = self._evaluate(model, group.name, ratio)
            record.write(trial)
            return objective

        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if complete < self.config.evaluations:
            study.optimize(
                objective,
                n_trials=self.config.evaluations - complete,
                callbacks=[
                    optuna.study.MaxTrialsCallback(
                        self.config.evaluations, states=(TrialState.COMPLETE,)
                    ),
                    lambda _study, trial: observer.evaluation_finished(group.name, trial),
                ],
                gc_after_trial=False,
                show_progress_bar=False,
            )
        best = study.best_trial
        # among equally good ratios prefer the largest (the smaller network); ties are common
        # when a group's channels hardly matter
        ties = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value == best.value
        ]
        return max(ties, key=lambda t: t.params[group.name])

    def _retrain(self, model: nn.Module, steps: int, seed: int, observer: SearchObserver) -> None:
        torch.manual_seed(seed)
        finetune(
            model,
            self.data,
            steps=steps,
            batch_size=self.config.batch_size,
            lr=self.config.lr,
            seed=seed,
            progress=observer.finetune_step,
        )

    def _apply(self, model: nn.Module, decision: GroupDecision, observer: SearchObserver) -> None:
        self._prune(model, {decision.group: decision.ratio})
        if decision.retrained:
            self._retrain(
                model, self.config.retrain_steps, self.seed + 1000 * decision.position, observer
            )

    # -- resuming ------------------------------------------------------------------------
    def _save_state(self, model: nn.Module, position: int, kept: dict[str, int]) -> None:
        save_checkpoint(
            self._state_path(position),
            model,
            self.model_config,
            kept_channels=kept,
            metadata={"study": self.parent.study_name, "position": position},
        )

    def _load(self, path: Path, what: str) -> nn.Module:
        """A network this method saved, rebuilt as the search's own model config allows."""
        return load_checkpoint(
            path, model=self.model_config.source, device=self.device, what=f"{what} {path}"
        ).model

    def _restore(self, decisions: list[GroupDecision], observer: SearchObserver) -> nn.Module:
        """The network after the stored decisions: from the last state file, else replayed."""
        if decisions:
            path = self._state_path(decisions[-1].position)
            if path.is_file():
                return self._load(path, "layer-wise state").train(self.baseline.training)
        model = copy.deepcopy(self.baseline)
        for decision in decisions:  # deterministic for a seed on one device
            self._apply(model, decision, observer)
        return model

    # -- the whole method ----------------------------------------------------------------
    def run(self, observer: SearchObserver | None = None) -> LayerwiseResult:
        observer = observer or SearchObserver()
        decisions = self.decisions()
        model = self._restore(decisions, observer)
        for position in range(len(decisions), len(self.order)):
            group = self.order[position]
            observer.group_started(position, len(self.order), group.name)
            best = self._search_group(position, group, model, observer)
            ratio = best.params[group.name]
            scores = TrialRecord.from_trial(best)
            decision = GroupDecision(
                position=position,
                group=group.name,
                ratio=ratio,
                objective=float(best.value),
                val_loss=scores.val_loss,
                val_accuracy=scores.val_accuracy,
                retrained=ratio >= self.config.retrain_threshold,
            )
            self._apply(model, decision, observer)
            self._save_state(model, position, self._prune(model, {}))
            self.parent.set_user_attr(DECISION_ATTR.format(position=position), decision.to_dict())
            decisions.append(decision)
            observer.group_finished(decision)
        return self._finish(model, decisions, observer)

    def _finish(
        self, model: nn.Module, decisions: list[GroupDecision], observer: SearchObserver
    ) -> LayerwiseResult:
        final_path = self._state_path(len(self.order)).with_name("final.pt")
        stored = self.parent.user_attrs.get(RESULT_ATTR)
        kept = self._prune(model, {})
        if stored is not None and final_path.is_file():
            model = self._load(final_path, "layer-wise result")
        else:
            self._retrain(model, self.config.final_steps, self.seed + 999_999, observer)
        val, test = evaluate(model, self.data, "val"), evaluate(model, self.data, "test")
        cost = measure(model, self.model_config.input_shape)
        ratios = {d.group: d.ratio for d in sorted(decisions, key=lambda d: -d.position)}
        ratios = {g.name: ratios[g.name] for g in self.space.groups}
        if stored is None or not final_path.is_file():
            save_checkpoint(
                final_path,
                model,
                self.model_config,
                kept_channels=kept,
                metadata={
                    "study": self.parent.study_name,
                    "method": "layerwise",
                    "ratios": ratios,
                    "val_accuracy": val.accuracy,
                    "test_accuracy": test.accuracy,
                },
                preprocess=preprocess_of(self.data),
            )
            self._record_trials(model, ratios, kept, val, cost, final_path)
            self.parent.set_user_attr(RESULT_ATTR, {"checkpoint": str(final_path.resolve())})
        return LayerwiseResult(
            decisions=decisions,
            kept_channels=kept,
            val_accuracy=val.accuracy,
            test_accuracy=test.accuracy,
            size_bits=cost.size_bits,
            params=cost.params,
            checkpoint=final_path,
        )

    def _record_trials(self, model, ratios, kept, val, cost, final_path: Path) -> None:
        """The unpruned baseline and the result as trials of the parent (once each)."""
        labels = {
            TrialRecord.from_trial(t).reference for t in self.parent.get_trials(deepcopy=False)
        }
        # one range from 0 for every group: the unpruned trial has ratio 0 even where the
        # searched range starts above it
        distributions = {
            g.name: optuna.distributions.FloatDistribution(0.0, g.high) for g in self.space.groups
        }
        entries = []
        if "unpruned" not in labels:
            base_val = evaluate(self.baseline, self.data, "val")
            base_cost = measure(self.baseline, self.model_config.input_shape)
            entries.append(
                (
                    "unpruned",
                    {g.name: 0.0 for g in self.space.groups},
                    base_val,
                    base_cost,
                    self.parent.user_attrs.get(BASELINE_PATH_ATTR),
                    {},
                )
            )
        if "layer-wise result" not in labels:
            entries.append(
                ("layer-wise result", ratios, val, cost, str(final_path.resolve()), kept)
            )
        for label, params, evaluation, measured, checkpoint, kept_channels in entries:
            self.parent.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    values=[evaluation.accuracy, measured.size_bits / BITS_PER_MB],
                    user_attrs=TrialRecord(
                        reference=label,
                        val_loss=evaluation.loss,
                        val_accuracy=evaluation.accuracy,
                        size_bits=measured.size_bits,
                        params=measured.params,
                        macs=measured.macs,
                        bops=measured.bops,
                        kept_channels=kept_channels,
                        checkpoint=checkpoint,
                    ).to_user_attrs(),
                )
            )
