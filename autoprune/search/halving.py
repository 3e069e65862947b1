"""Successive halving of a budget search's candidates (``autoprune.config.HalvingConfig``).

A candidate reports its accuracy on a fixed validation subset at each rung (a number of
fine-tuning steps); ``RungPruner`` stops it unless it ranks in the best ``1 / reduction`` of
every candidate that reported at that rung, whatever became of them since (asynchronous
successive halving: no candidate waits for others, and several workers share one study).
Optuna's ``SuccessiveHalvingPruner`` places its rungs at geometric steps; these are the
rungs the run config names.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprune.config import HalvingConfig
from autoprune.search.record import REFERENCE_KEY

# every trial that ever reported at a rung: finished, stopped or still running
_SCORED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


class RungPruner(optuna.pruners.BasePruner):
    """Stops a trial at a rung where it is not in the best ``1 / reduction`` (maximising)."""

    def __init__(self, config: HalvingConfig) -> None:
        self.config = config

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step not in self.config.rungs or REFERENCE_KEY in trial.user_attrs:
            return False
        score = trial.intermediate_values[step]
        peers = [
            other.intermediate_values[step]
            for other in study.get_trials(deepcopy=False, states=_SCORED)
            if other.number != trial.number and step in other.intermediate_values
        ]
        reached = len(peers) + 1
        if reached < self.config.min_trials:
            return False
        kept = math.ceil(reached / self.config.reduction)
        better = sum(peer > score for peer in peers)
        return better >= kept
