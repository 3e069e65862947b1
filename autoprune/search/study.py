"""The joint search: an Optuna study over per-group ratios, with two objectives.

Objectives: validation accuracy (maximise) and model size in MB (minimise). A study records
the full configuration that defines it; resuming with a different one is refused, because its
trials would not be comparable. Trial 0 is the unpruned baseline and a few uniform ratios are
enqueued next, so every Pareto front shows the reference points.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from autoprune.config import SEARCH_COSTS, RunConfig
from autoprune.errors import ConfigError
from autoprune.metrics import BITS_PER_MB
from autoprune.search.budget import BudgetAllocator
from autoprune.search.objective import CandidateEvaluator
from autoprune.search.record import TrialRecord
from autoprune.search.space import SearchSpace
from autoprune.search.worker import (
    FINISHED,
    Evaluate,
    TrialFailed,
    TrialStopped,
    accounted,
    enqueue_once,
)

logger = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")
# The second objective's name per ``SearchConfig.cost`` (``config.SEARCH_COSTS``).
COST_OBJECTIVES = {"size": "size_mb", "bops": "gbops"}
assert set(COST_OBJECTIVES) == set(SEARCH_COSTS), "name the objective of every search cost"
BOPS_PER_GBOPS = 1e9
# A budget search (``autoprune.search.budget``): every trial fits, accuracy is all that is left.
BUDGET_DIRECTIONS = ("maximize",)
BUDGET_OBJECTIVE_NAMES = ("val_accuracy",)
BUDGET_REFERENCE = "uniform at budget"
# The per-group sensitivity scan of a warm-started search (``Sensitivity.to_dict()``).
SENSITIVITY_ATTR = "autoprune_sensitivity"
UNIFORM_PROBES = (0.2, 0.4, 0.6)
CONFIG_ATTR = "autoprune_config"  # RunConfig.to_dict(): the study's identity
REFERENCE_ATTR = "autoprune_reference"
# Where the baseline checkpoint lives; not part of the identity, so a moved file can be re-pointed.
BASELINE_PATH_ATTR = "autoprune_baseline_path"
# Marks the study of one group of a layer-wise search (its value: the parent study's name).
LAYERWISE_PARENT_ATTR = "layerwise_parent"


@dataclass(frozen=True)
class Reference:
    """Sizes the front is compared with (the unpruned quantized and 32-bit models), and the
    validation images behind every score (studies before 2026-11-30 did not record them)."""

    quantized_size_bits: int
    float_size_bits: int
    baseline_val_accuracy: float
    val_images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        found = {
            "quantized_size_bits": self.quantized_size_bits,
            "float_size_bits": self.float_size_bits,
            "baseline_val_accuracy": self.baseline_val_accuracy,
        }
        return found if self.val_images is None else {**found, "val_images": self.val_images}


class SearchObserver:
    """Hooks the caller (e.g. the CLI) uses to show progress; every method is optional."""

    def trial_started(self, number: int, ratios: dict[str, float]) -> None:
        """A trial begins with these ratios."""

    def finetune_step(self, done: int, total: int) -> None:
        """One fine-tuning step of the running trial finished."""

    def trial_finished(self, trial: FrozenTrial) -> None:
        """A trial ended (any state)."""

    def phase(self, name: str) -> None:
        """The worker entered a phase: waiting, sampling, finetune or storage."""

    # the layer-wise method (search/layerwise.py) reports per group
    def group_started(self, position: int, total: int, group: str) -> None:
        """The layer-wise search starts choosing the ratio of ``group``."""

    def evaluation_finished(self, group: str, trial: FrozenTrial) -> None:
        """One evaluation of a group's ratio ended (any state)."""

    def group_finished(self, decision: Any) -> None:
        """A group's ratio was chosen (a ``GroupDecision``) and applied."""


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {json.dumps(a)} in the study vs {json.dumps(b)} now")
    return found


def run_config_of(study: optuna.Study) -> RunConfig:
    """The run config a study was made with, read (and upgraded, for a study made before
    configs had versions) from its attributes; ``ConfigError`` if autoprune made none or a
    newer autoprune wrote it."""
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        raise ConfigError(f"study {study.study_name!r} was not made by autoprune search")
    return RunConfig.from_dict(stored, what=f"study {study.study_name!r}'s config")


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    config: RunConfig,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study, or resume it if its stored config equals ``config``.

    A study stored by an older autoprune is compared on its upgraded form (``RunConfig``), so
    resuming it is refused exactly when a setting that defines it, a default included, changed.
    Returns the study and whether it was created now.
    """
    budget = config.search.budget is not None
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler,
        directions=list(BUDGET_DIRECTIONS if budget else DIRECTIONS),
        load_if_exists=True,
    )
    if CONFIG_ATTR not in study.user_attrs:
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        study.set_metric_names(
            list(BUDGET_OBJECTIVE_NAMES if budget else objective_names(config.search.cost))
        )
        return study, True
    stored = run_config_of(study)
    if stored.search.sampler is None:  # made before the sampler was recorded: any may resume
        stored = replace(stored, search=replace(stored.search, sampler=config.search.sampler))
    differences = _differences(stored.to_dict(), config.to_dict())
    if differences:
        raise ConfigError(
            f"study {name!r} was created with another configuration ({'; '.join(differences[:3])}):"
            " rerun with the study's settings or choose a new study name"
        )
    return study, False


def objective_names(cost: str = "size") -> tuple[str, str]:
    """The two objectives of a search whose second objective is ``cost`` (``SearchConfig``)."""
    return ("val_accuracy", COST_OBJECTIVES[cost])


def enqueue_reference_trials(
    study: optuna.Study, space: SearchSpace, storage: optuna.storages.BaseStorage
) -> None:
    """Trial 0: no pruning; then uniform ratios, so the front always has reference points.
    With searched widths below the network's own, also the unpruned network at the lowest
    width: random start-up points rarely put every layer there, and it is the corner a user
    would otherwise try by hand.

    Idempotent and safe with many workers: a point is queued only if no complete, running or
    waiting trial holds it (an interrupted or killed one failed and must be redone), and a
    copy queued by two workers at once is dropped again (``worker.enqueue_once``).
    """
    distributions = space.distributions()
    seen: list[dict[str, float]] = []
    for ratio in (0.0, *UNIFORM_PROBES):
        params = space.uniform(ratio)
        if params in seen:
            continue
        seen.append(params)
        label = "unpruned" if ratio == 0.0 else f"uniform {ratio:.2f}"
        enqueue_labelled(study, storage, params, distributions, label)
    bits = space.bits
    if bits is not None and bits.can_lower():
        params = {**space.uniform(0.0), **bits.at(bits.lowest)}
        enqueue_labelled(study, storage, params, distributions, f"unpruned, {bits.lowest} bits")


def enqueue_budget_reference(
    study: optuna.Study, allocator: BudgetAllocator, storage: optuna.storages.BaseStorage
) -> None:
    """A budget search's reference point: every group at the same position of its range,
    scaled to the budget (uniform pruning at exactly that cost). With searched widths below
    the network's own, a second one with every layer at the lowest width (less pruning for
    the same cost; measured on a W4A4 parent at 30 %, it beat uniform pruning by 1.2 test
    points, and 24 trials of the search never found that corner alone). Idempotent like
    ``enqueue_reference_trials``."""
    distributions = allocator.distributions()
    reference = allocator.reference_point()
    enqueue_labelled(study, storage, reference, distributions, BUDGET_REFERENCE)
    bits = allocator.space.bits
    if bits is not None and bits.can_lower():
        label = f"{BUDGET_REFERENCE}, {bits.lowest} bits"
        params = {**reference, **bits.at(bits.lowest)}
        enqueue_labelled(study, storage, params, distributions, label)


def enqueue_labelled(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    params: dict[str, float],
    distributions: dict[str, optuna.distributions.BaseDistribution],
    label: str,
) -> None:
    """Queue one labelled point (a reference or a warm start), once (``enqueue_once``)."""
    record = TrialRecord(reference=label)
    enqueue_once(study, storage, params, distributions, user_attrs=record.to_user_attrs())


def finished_trials(study: optuna.Study) -> int:
    """The trials that count towards a search's total: complete, or stopped by halving."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def make_evaluation(
    evaluate: CandidateEvaluator, *, seed: int, budget: bool = False, cost: str = "size"
) -> Evaluate:
    """``(number, ratios, progress, rung) -> (objective values, user attributes)`` of a trial
    (``worker.Evaluate``); ``TrialFailed`` when the fine-tuned candidate's loss is not finite,
    ``TrialStopped`` with its record when halving stopped it at a rung. A ``budget`` search
    has one objective, and its records keep the ratios (its parameters are a shape); else the
    second objective is the ``cost``: size in MB or GBOPs (``objective_names``)."""
    if cost not in SEARCH_COSTS:
        raise ConfigError(f"unknown search cost {cost!r}: use one of {', '.join(SEARCH_COSTS)}")

    def evaluation(
        number: int,
        ratios: dict[str, float],
        progress: Callable[[int, int], None],
        rung: Callable[[int, float], bool] | None = None,
    ) -> tuple[tuple[float, ...], dict]:
        result = evaluate(ratios, seed=seed + number, progress=progress, rung=rung)
        if not (math.isfinite(result.val_loss) and math.isfinite(result.val_accuracy)):
            raise TrialFailed(f"fine-tuning diverged (validation loss {result.val_loss})")
        record = TrialRecord(
            val_loss=result.val_loss,
            size_bits=result.size_bits,
            params=result.params,
            macs=result.macs,
            bops=result.bops,
            kept_channels=result.kept_channels,
            seconds={k: round(v, 3) for k, v in result.seconds.items()},
            ratios=dict(ratios) if budget else None,
            stopped_at=result.stopped_at,
        )
        if result.stopped_at is not None:
            raise TrialStopped(record.to_user_attrs())
        if budget:
            return (result.val_accuracy,), record.to_user_attrs()
        second = result.bops / BOPS_PER_GBOPS if cost == "bops" else result.size_bits / BITS_PER_MB
        return (result.val_accuracy, second), record.to_user_attrs()

    return evaluation


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(optuna.study.get_all_study_names(storage=storage))


def load_existing_study(storage: optuna.storages.BaseStorage, name: str | None) -> optuna.Study:
    """The study called ``name``; with no name, the storage's only study."""
    names = study_names(storage)
    if name is None:
        if len(names) != 1:
            listed = ", ".join(names) if names else "none"
            raise ConfigError(f"choose a study by name (studies in this storage: {listed})")
        name = names[0]
    if name not in names:
        listed = ", ".join(names) if names else "none"
        raise ConfigError(
            f"no study named {name!r} in this storage (studies: {listed}): "
            "check the study name and the storage"
        )
    return optuna.load_study(study_name=name, storage=storage)


def study_summaries(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """One dict per study: name, what it prunes, and its trial counts by state."""
    summaries = []
    for name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        if LAYERWISE_PARENT_ATTR in study.user_attrs:
            continue  # one group of a layer-wise search: its parent study is listed
        try:
            config: RunConfig | None = run_config_of(study)
        except ConfigError:  # listed all the same: made by another tool or a newer autoprune
            config = None
        counts = {state: 0 for state in ("COMPLETE", "RUNNING", "WAITING", "FAIL")}
        for trial in study.get_trials(deepcopy=False):
            if accounted(trial):  # not the trials dropped unevaluated (surplus, duplicates)
                counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        summaries.append(
            {
                "study": name,
                "model": config.model.name if config else "?",
                "quant": config.model.spec.label if config else "?",
                "dataset": config.data.name if config else "?",
                "method": config.search.method if config else "?",
                "complete": counts["COMPLETE"],
                "stopped": counts.get("PRUNED", 0),  # by successive halving
                "running": counts["RUNNING"],
                "failed": counts["FAIL"],
            }
        )
    return summaries


def delete_study(storage: optuna.storages.BaseStorage, name: str) -> list[str]:
    """Delete the study ``name`` with the per-group studies of its layer-wise search, if any;
    returns the names deleted. Other studies are left alone."""
    names = study_names(storage)
    if name not in names:
        raise ConfigError(f"no study named {name!r} in this storage: check the study name")
    groups = []
    for other in names:
        parent = optuna.load_study(study_name=other, storage=storage).user_attrs.get(
            LAYERWISE_PARENT_ATTR
        )
        if other == name and parent is not None:
            raise ConfigError(
                f"study {name!r} is one group of the layer-wise study {parent!r}: delete that"
            )
        if parent == name:
            groups.append(other)
    for doomed in (*groups, name):
        optuna.delete_study(study_name=doomed, storage=storage)
    return [name, *groups]
