"""Confirm a budget search's best trials before one is chosen: rescore them with fresh
fine-tunes, or promote them to the export recipe.

A trial's score is one short fine-tune, and the seed of that fine-tune (which batches, in what
order) moves the score about as much as allocations differ: on the W2A2 ResNet-20 at 30 % of
its size, one candidate's score varied by 0.6 pt (sd) across seeds against 1.2 pt across
candidates (``benchmarks/score_noise.py``). Worse, at depth the short score ranks allocations
otherwise than the export recipe does: the greedy allocation ranked 9th of 24 by it on the BNN
at 30 % and exported 1.35 pt above the uniform reference that outscored it.

Two lengths, one mechanism:

- at the search's own length (``SEARCH_LENGTH``), ``CONFIRM_SEEDS`` fresh seeds per trial
  give means that no selection has inflated;
- at ``steps`` of the export recipe (a *promotion*, the default), one fine-tune per trial
  with the seed ``autoprune export`` uses, so a promoted trial's score is the validation
  accuracy its export will have (the same network: the rebuild is deterministic).

The contenders are the ``top`` best trials by the search's score and every reference trial
the study queued (uniform at the budget; with the sensitivity warm start also the greedy and
half-greedy allocations), so the pick is never worse than those cheap answers on validation.
Measured (``benchmarks/search_quality.py``, methods ``*-promote``): at 30 % of the size the
promoted pick exported 86.71 % (W2A2) and 81.45 % (BNN) where the 3-best short confirmation
picked networks that exported 85.43 % and 80.09 %.

The pick (``pareto.best_under``) and the verdict against uniform pruning
(``pareto.uniform_lead``) use the longest confirmation stored (``preferred_confirmations``).
Scores are stored on the study, one attribute per trial and length (``CONFIRM_ATTR:<number>``
at the search's length, ``CONFIRM_ATTR:<number>:<steps>`` promoted; one accuracy per seed),
each as soon as it is measured, so an interrupted confirmation resumes, a rerun with more
seeds only adds the missing ones, and workers confirming different trials never overwrite each
other's (studies of before 2026-12 hold one dict under ``CONFIRM_ATTR``; it is still read).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprune.checkpoint import file_digest
from autoprune.config import EXPORT_FINETUNE, SEED_LIMIT
from autoprune.errors import ConfigError
from autoprune.search.record import TrialRecord
from autoprune.search.study import run_config_of
from autoprune.search.worker import StopControl

CONFIRM_ATTR = "autoprune:confirmations"
# A promoted trial's network, saved so its export need not fine-tune it again:
# ``PROMOTED_ATTR:<number>:<steps>`` -> {"path": ..., "digest": ...} (``promoted_network``).
PROMOTED_ATTR = "autoprune:promoted"
# A budget search promotes its 2 best trials (and its references) to the export recipe unless
# told otherwise: the rule measured in benchmarks/README.md (`*-promote`).
DEFAULT_TOP = 2
# Confirm at the search's own fine-tune length with fresh seeds instead of promoting.
SEARCH_LENGTH = "search"
CONFIRM_SEEDS = 2  # fresh seeds per trial at the search's length
PROMOTE_SEEDS = 1  # promoted: the export's own seed, so the score is its export's
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


def confirm_steps(requested: int | str | None) -> int | None:
    """The fine-tune length of a confirmation: None (the default) -> the export recipe's
    steps; ``"search"`` -> None, the search's own fine-tune; a positive number -> the export
    recipe cut or stretched to that many steps."""
    if requested is None:
        return EXPORT_FINETUNE.steps
    if requested == SEARCH_LENGTH:
        return None
    if isinstance(requested, str) and requested.strip().isdigit():
        requested = int(requested)
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise ConfigError(
            f"confirm at a number of fine-tuning steps >= 1 or at {SEARCH_LENGTH!r} (the "
            f"search's own fine-tune), not {requested!r}"
        )
    return requested


def default_seeds(steps: int | None) -> int:
    """Seeds per confirmed trial: ``CONFIRM_SEEDS`` at the search's length, else one."""
    return CONFIRM_SEEDS if steps is None else PROMOTE_SEEDS


def fresh_seed(search_seed: int, trial_number: int, round_: int) -> int:
    """The fine-tune seed of trial ``trial_number``'s ``round_``-th confirmation (from 0),
    different from every trial's own seed and from its other rounds."""
    return (search_seed + (round_ + 1) * _FRESH_SEED_STRIDE + trial_number) % SEED_LIMIT


@dataclass(frozen=True)
class Confirmation:
    """A trial rescored: ``searched`` is the score the search saw (the best of many draws, so
    biased upwards when it was chosen for it), ``rescored`` one validation accuracy per seed,
    after the search's fine-tune (``steps`` None) or ``steps`` of the export recipe."""

    trial: int
    searched: float
    rescored: tuple[float, ...]
    reference: str | None = None  # the label of a reference trial (``TrialRecord.reference``)
    steps: int | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.rescored)


def _attr(trial: int, steps: int | None) -> str:
    return f"{CONFIRM_ATTR}:{trial}" if steps is None else f"{CONFIRM_ATTR}:{trial}:{steps}"


def _scores(values: object) -> tuple[float, ...]:
    if not isinstance(values, list):
        return ()
    return tuple(
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0
    )


def _all_confirmations(attrs: dict) -> dict[int | None, dict[int, tuple[float, ...]]]:
    """Every confirmation in a study's attributes, read once: length (None: the search's own)
    -> trial number -> accuracies (entries that are not numbers in [0, 1] are ignored: the
    attribute is data, never trusted)."""
    legacy = attrs.get(CONFIRM_ATTR)
    raw: dict[tuple[str, str | None], object] = {
        (str(key), None): value
        for key, value in (legacy.items() if isinstance(legacy, dict) else ())
    }
    prefix = f"{CONFIRM_ATTR}:"
    for key, value in attrs.items():
        if key.startswith(prefix):
            trial, _, steps = key[len(prefix) :].partition(":")
            raw[trial, steps or None] = value
    found: dict[int | None, dict[int, tuple[float, ...]]] = {}
    for (trial, steps), values in raw.items():
        scores = _scores(values)
        if trial.isdigit() and (steps is None or steps.isdigit()) and scores:
            length = None if steps is None else int(steps)
            found.setdefault(length, {})[int(trial)] = scores
    return found


def stored_confirmations(
    study: optuna.Study, steps: int | None = None
) -> dict[int, tuple[float, ...]]:
    """What ``confirm`` stored at one length (None: the search's own): trial number ->
    accuracies, one per seed (``_all_confirmations``)."""
    return _all_confirmations(study.user_attrs).get(steps, {})


def promoted_network(study: optuna.Study, trial: int, steps: int) -> Path | None:
    """The saved network of ``trial`` promoted at ``steps`` steps of the export recipe, if its
    file is still there with the bytes that were saved (else None: rebuild it)."""
    entry = study.user_attrs.get(f"{PROMOTED_ATTR}:{trial}:{steps}")
    if not isinstance(entry, dict):
        return None
    path, digest = entry.get("path"), entry.get("digest")
    if not (isinstance(path, str) and isinstance(digest, str) and Path(path).is_file()):
        return None
    return Path(path) if file_digest(path) == digest else None


def remember_promoted(study: optuna.Study, trial: int, steps: int, path: Path) -> None:
    """Record where ``trial``'s network promoted at ``steps`` was saved (``promoted_network``)."""
    study.set_user_attr(
        f"{PROMOTED_ATTR}:{trial}:{steps}", {"path": str(path), "digest": file_digest(path)}
    )


def preferred_confirmations(study: optuna.Study) -> tuple[int | None, dict[int, tuple[float, ...]]]:
    """The confirmation the pick uses: the longest fine-tune stored (a promotion over fresh
    seeds at the search's length), as ``(steps, stored_confirmations(study, steps))``;
    ``(None, {})`` when nothing was confirmed."""
    found = _all_confirmations(study.user_attrs)
    promoted = [steps for steps in found if steps is not None]
    steps = max(promoted) if promoted else None
    return steps, found.get(steps, {})


def contenders(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` most accurate complete trials of a budget search (ties: the earlier), and
    every reference trial it queued that is not among them (uniform at the budget; the warm
    start's greedy and half-greedy allocations)."""
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
    chosen += [t for t in complete if TrialRecord.from_trial(t).reference and t not in chosen]
    return chosen


def confirm(
    study: optuna.Study,
    rescore: Callable[[FrozenTrial, int], float],
    *,
    top: int = DEFAULT_TOP,
    seeds: int = CONFIRM_SEEDS,
    steps: int | None = None,
    on_score: Callable[[int, int, float], None] | None = None,
    control: StopControl | None = None,
) -> list[Confirmation]:
    """Rescore ``contenders(study, top)`` until each has ``seeds`` accuracies at ``steps`` of
    the export recipe (None: the search's own fine-tune); ``rescore(trial, round)`` prunes
    the trial's network as the search did and fine-tunes it at that length with the round's
    seed (the caller's choice: ``fresh_seed``, or the export's for a promotion's first). Each
    score is stored at once (``CONFIRM_ATTR``), never cut in half by a stop of ``control``;
    ``on_score(trial, round, accuracy)`` reports it. Returns the confirmations, best first."""
    control = control or StopControl()
    if seeds < 1:
        raise ConfigError(f"confirm with at least one fresh seed, not {seeds}")
    chosen = contenders(study, top)
    for trial in chosen:
        # read before and after each fine-tune: other workers of the study confirm it too,
        # and a round's seed is fixed, so a round someone else stored is kept, not redone
        while (round_ := len(stored_confirmations(study, steps).get(trial.number, ()))) < seeds:
            control.check()  # a wall-clock limit ends it between fine-tunes
            accuracy = float(rescore(trial, round_))
            scores = stored_confirmations(study, steps).get(trial.number, ())
            if len(scores) == round_:  # else another worker stored this round meanwhile
                with control.deferred():
                    study.set_user_attr(_attr(trial.number, steps), [*scores, accuracy])
            if on_score is not None:
                on_score(trial.number, round_, accuracy)
    stored = stored_confirmations(study, steps)
    return sorted(
        (
            Confirmation(
                t.number,
                t.values[0],
                stored[t.number][:seeds],
                TrialRecord.from_trial(t).reference,
                steps,
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
