"""Confirm a budget search's best trials with fresh fine-tunes before one is chosen.

A trial's score is one short fine-tune, and the seed of that fine-tune (which batches, in what
order) moves the score about as much as allocations differ: on the W2A2 ResNet-20 at 30 % of
its size, one candidate's score varied by 0.6 pt (sd) across seeds against 1.2 pt across
candidates (``benchmarks/score_noise.py``). The most accurate of 24 such scores is partly the
luckiest seed, and the uniform reference it is compared with had one draw only. Rescoring the
top trials and the reference with seeds no trial used gives means that no selection has
inflated; the pick (``pareto.best_under``) and the verdict against uniform pruning
(``pareto.uniform_lead``) use them once they exist.

Confirmations are stored on the study, one attribute per trial (``CONFIRM_ATTR:<number>``:
one validation accuracy per fresh seed), each as soon as it is measured, so an interrupted
confirmation resumes, a rerun with more seeds only adds the missing ones, and workers
confirming different trials never overwrite each other's (studies of before 2026-12 hold one
dict under ``CONFIRM_ATTR``; it is still read).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprune.config import SEED_LIMIT
from autoprune.errors import ConfigError
from autoprune.search.record import TrialRecord
from autoprune.search.study import BUDGET_REFERENCE, run_config_of
from autoprune.search.worker import StopControl

CONFIRM_ATTR = "autoprune:confirmations"
# A budget search confirms its 3 best trials unless told otherwise: 8 more short fine-tunes
# (with the reference, 2 seeds each), a third of a 24-trial search, against a pick and a
# verdict that one seed's luck decided (benchmarks/README.md, `score_noise.py`).
DEFAULT_TOP = 3
CONFIRM_SEEDS = 2  # fresh seeds per confirmed trial
# Fresh seeds lie this far beyond every trial's own (search seed + trial number).
_FRESH_SEED_STRIDE = 1_000_000


def confirm_count(requested: int | None, *, budget: bool) -> int:
    """How many best trials a search confirms: ``requested``, or (None) ``DEFAULT_TOP`` for a
    budget search and none for a two-objective one, whose front has no single best trial."""
    if requested is None:
        return DEFAULT_TOP if budget else 0
    if requested < 0 or isinstance(requested, bool):
        raise ConfigError(f"confirm a number of trials >= 0, not {requested!r}")
    if requested and not budget:
        raise ConfigError(
            "confirmation rescores the best trials of a budget search: give a target size or "
            "BOPs, or confirm none (a front has no single best trial)"
        )
    return requested


def fresh_seed(search_seed: int, trial_number: int, round_: int) -> int:
    """The fine-tune seed of trial ``trial_number``'s ``round_``-th confirmation (from 0),
    different from every trial's own seed and from its other rounds."""
    return (search_seed + (round_ + 1) * _FRESH_SEED_STRIDE + trial_number) % SEED_LIMIT


@dataclass(frozen=True)
class Confirmation:
    """A trial rescored with fresh fine-tune seeds: ``searched`` is the score the search saw
    (the best of many draws, so biased upwards when it was chosen for it), ``rescored`` one
    validation accuracy per fresh seed."""

    trial: int
    searched: float
    rescored: tuple[float, ...]
    reference: bool = False  # the budget's uniform reference trial

    @property
    def mean(self) -> float:
        return statistics.fmean(self.rescored)


def stored_confirmations(study: optuna.Study) -> dict[int, tuple[float, ...]]:
    """What ``confirm`` stored: trial number -> fresh-seed accuracies (entries that are not
    numbers in [0, 1] are ignored: the attribute is data, never trusted)."""
    attrs = study.user_attrs
    legacy = attrs.get(CONFIRM_ATTR)
    raw = dict(legacy) if isinstance(legacy, dict) else {}
    prefix = f"{CONFIRM_ATTR}:"
    raw.update(
        {key[len(prefix) :]: value for key, value in attrs.items() if key.startswith(prefix)}
    )
    stored: dict[int, tuple[float, ...]] = {}
    for key, values in raw.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(values, list)):
            continue
        scores = tuple(
            float(v)
            for v in values
            if isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0
        )
        if scores:
            stored[int(key)] = scores
    return stored


def contenders(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` most accurate complete trials of a budget search (ties: the earlier), and
    its uniform reference trial if it is not among them."""
    if top < 1:
        raise ConfigError(f"confirm at least one trial, not {top}")
    try:
        budget = run_config_of(study).search.budget
    except ConfigError:
        budget = None
    if budget is None or len(study.directions) != 1:
        raise ConfigError(
            f"study {study.study_name!r} is not a budget search: confirmation rescores the best "
            "trials of a search with a target size or BOPs (a front has no single best trial)"
        )
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: (-t.values[0], t.number))
    chosen = ranked[:top]
    chosen += [
        t
        for t in complete
        if TrialRecord.from_trial(t).reference == BUDGET_REFERENCE and t not in chosen
    ]
    return chosen


def confirm(
    study: optuna.Study,
    rescore: Callable[[FrozenTrial, int], float],
    *,
    top: int = DEFAULT_TOP,
    seeds: int = CONFIRM_SEEDS,
    on_score: Callable[[int, int, float], None] | None = None,
    control: StopControl | None = None,
) -> list[Confirmation]:
    """Rescore ``contenders(study, top)`` until each has ``seeds`` fresh-seed accuracies;
    ``rescore(trial, round)`` prunes the trial's network as the search did and fine-tunes it
    with ``fresh_seed(..., round)``. Each score is stored at once (``CONFIRM_ATTR``), never
    cut in half by a stop of ``control``; ``on_score(trial, round, accuracy)`` reports it.
    Returns the confirmations, best first."""
    control = control or StopControl()
    if seeds < 1:
        raise ConfigError(f"confirm with at least one fresh seed, not {seeds}")
    chosen = contenders(study, top)
    for trial in chosen:
        # read before and after each fine-tune: other workers of the study confirm it too,
        # and a round's seed is fixed, so a round someone else stored is kept, not redone
        while (round_ := len(stored_confirmations(study).get(trial.number, ()))) < seeds:
            control.check()  # a wall-clock limit ends it between fine-tunes
            accuracy = float(rescore(trial, round_))
            scores = stored_confirmations(study).get(trial.number, ())
            if len(scores) == round_:  # else another worker stored this round meanwhile
                with control.deferred():
                    study.set_user_attr(f"{CONFIRM_ATTR}:{trial.number}", [*scores, accuracy])
            if on_score is not None:
                on_score(trial.number, round_, accuracy)
    stored = stored_confirmations(study)
    return sorted(
        (
            Confirmation(
                t.number,
                t.values[0],
                stored[t.number][:seeds],
                TrialRecord.from_trial(t).reference == BUDGET_REFERENCE,
            )
            for t in chosen
        ),
        key=lambda c: (-c.mean, c.trial),
    )


def seed_variance(rescored: list[tuple[float, ...]]) -> float | None:
    """Pooled variance of one trial's accuracy across fresh seeds (None below two seeds)."""
    parts = [(len(s) - 1, statistics.variance(s)) for s in rescored if len(s) >= 2]
    freedom = sum(n for n, _ in parts)
    return sum(n * v for n, v in parts) / freedom if freedom else None


def difference_noise(
    first: tuple[float, ...], second: tuple[float, ...], pooled: float | None, images: int | None
) -> float | None:
    """Two standard errors of ``mean(first) - mean(second)``: the fine-tune seeds' part
    (``pooled`` variance over each mean's seeds) and the validation images' (binomial, as if
    the two were scored on independent images). None when neither part is known."""
    parts = []
    if pooled is not None:
        parts.append(pooled * (1 / len(first) + 1 / len(second)))
    if images:
        p = (statistics.fmean(first) + statistics.fmean(second)) / 2
        parts.append(2 * p * (1 - p) / images)
    return 2 * math.sqrt(sum(parts)) if parts else None
