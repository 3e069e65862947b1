"""The accuracy/size Pareto front of a study, as a pandas DataFrame.

``confirmed_accuracy`` is the mean validation accuracy of a trial confirmed by
``autoprune.search.confirm`` (empty for trials not confirmed): promoted to
``frame.attrs["confirmed_steps"]`` steps of the export recipe, or (None) rescored with fresh
seeds at the search's own length; the longest confirmation stored is used. Besides the
compact ``ratios`` column (percent, in group order), each searched group has a
column ``ratio:<group>`` holding its pruning ratio (a fraction), so JSON and CSV name them;
``frame.attrs["groups"]`` lists the group names in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autoprune.errors import ConfigError
from autoprune.search.budget import parse_amount
from autoprune.search.confirm import difference_noise, preferred_confirmations, seed_variance
from autoprune.search.record import TrialRecord, trial_ratios
from autoprune.search.space import split_params
from autoprune.search.study import BUDGET_REFERENCE, REFERENCE_ATTR, run_config_of

COLUMNS = [
    "trial",
    "val_accuracy",
    "confirmed_accuracy",
    "size_mb",
    "size_pct_of_quantized",
    "compression_vs_fp32",
    "bops",
    "macs",
    "params",
    "reference",
    "ratios",
    "bits",
]
RATIO_PREFIX = "ratio:"


def group_names(study: optuna.Study) -> list[str]:
    """The searched groups in the space's order (else in the order trials name them)."""
    try:
        groups = run_config_of(study).search.space.get("groups") or []
    except ConfigError:  # no readable config: the table is still shown, from the trials
        groups = []
    names = [g["name"] for g in groups if isinstance(g, dict) and "name" in g]
    if names:
        return names
    seen: dict[str, None] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        seen.update(dict.fromkeys(trial.params))
    return list(seen)


def compact_ratios(params: dict[str, float]) -> str:
    """Ratios in percent, in group order, e.g. ``0 15 30 ...`` (searched widths left out)."""
    ratios, _ = split_params(params)
    return " ".join(f"{round(100 * value):d}" for value in ratios.values())


def compact_bits(params: dict[str, float]) -> str:
    """Searched widths in layer order, e.g. ``2 8 4 ...``; empty when none were searched."""
    _, bits = split_params(params)
    return " ".join(str(width) for width in bits.values())


def study_cost(study: optuna.Study) -> str:
    """The second objective of a two-objective study, ``"size"`` or ``"bops"``
    (``SearchConfig.cost``); ``"size"`` for a study without a readable config."""
    try:
        return run_config_of(study).search.cost
    except ConfigError:
        return "size"


def _is_budget_study(study: optuna.Study) -> bool:
    """A budget search's study (one objective: accuracy), not a layer-wise group's."""
    if len(study.directions) != 1:
        return False
    try:
        return run_config_of(study).search.budget is not None
    except ConfigError:  # no readable config: a layer-wise group's study, say
        return False


def _accuracy_size_front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials no other trial beats on both accuracy (higher) and size (smaller)."""
    points = [(t, t.values[0], TrialRecord.from_trial(t).size_bits) for t in trials]
    points = [(t, a, s) for t, a, s in points if s is not None]
    return [
        t
        for t, a, s in points
        if not any(a2 >= a and s2 <= s and (a2 > a or s2 < s) for _, a2, s2 in points)
    ]


def trials_frame(study: optuna.Study, *, pareto_only: bool = True) -> pd.DataFrame:
    """One row per complete trial (or per Pareto-optimal one, and in a budget search every
    confirmed one), sorted by size.

    The accuracy is the first objective; the size and the other measures come from the trial's
    record, so any number of objectives works.
    """
    reference = study.user_attrs.get(REFERENCE_ATTR, {})
    quantized_bits = reference.get("quantized_size_bits")
    float_bits = reference.get("float_size_bits")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    confirmed_steps, confirmed = preferred_confirmations(study)
    if not pareto_only:
        trials = complete
    elif _is_budget_study(study):
        # a budget search optimises accuracy alone; its front is still accuracy against size,
        # with the confirmed trials (the pick is among them) shown too
        front = _accuracy_size_front(complete)
        chosen = {t.number for t in front} | set(confirmed)
        trials = [t for t in complete if t.number in chosen]
    else:
        trials = study.best_trials
    groups = group_names(study)
    rows = []
    for trial in trials:
        record = TrialRecord.from_trial(trial)
        ratios = trial_ratios(trial)
        size_bits = record.size_bits
        known = size_bits is not None
        rescored = confirmed.get(trial.number)
        rows.append(
            {
                "trial": trial.number,
                "val_accuracy": trial.values[0],
                "confirmed_accuracy": sum(rescored) / len(rescored) if rescored else None,
                "size_mb": record.size_mb,
                "size_pct_of_quantized": 100 * size_bits / quantized_bits
                if quantized_bits and known
                else None,
                "compression_vs_fp32": float_bits / size_bits if float_bits and known else None,
                "bops": record.bops,
                "macs": record.macs,
                "params": record.params,
                "reference": record.reference or "",
                "ratios": compact_ratios({g: ratios.get(g, 0.0) for g in groups}),
                "bits": compact_bits(ratios),
                **{RATIO_PREFIX + g: ratios.get(g) for g in groups},
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS + [RATIO_PREFIX + g for g in groups])
    frame = frame.sort_values(["size_mb", "trial"]).reset_index(drop=True)
    frame.attrs["groups"] = groups
    frame.attrs["confirmed_steps"] = confirmed_steps
    return frame


def parse_size_limit(size: float | str) -> tuple[float, bool]:
    """``(value, is_percent)`` of a size limit: MB (``0.05``) or a percent of the unpruned
    quantized model (``"50%"``, at most 100); a ``ConfigError`` names the two forms otherwise."""
    return parse_amount(size, what=f"size limit {str(size).strip()!r}", unit="MB", example="0.05")


def best_under(source: optuna.Study | pd.DataFrame, size: float | str) -> pd.Series | None:
    """The complete trial with the highest validation accuracy whose size is at most ``size``
    (see ``parse_size_limit``; ties go to the smaller network), or None if no trial fits.
    Where trials that fit were confirmed (``autoprune.search.confirm``), the best of them by
    their confirmed score: the search's own best score is partly its luckiest seed, and at
    depth the short fine-tune ranks allocations otherwise than the export recipe.

    ``source`` is a study or a ``trials_frame`` of it (a Pareto-only frame gives the same
    answer: the best trial under a size limit is always Pareto-optimal).
    """
    limit, percent = parse_size_limit(size)
    frame = trials_frame(source, pareto_only=False) if isinstance(source, optuna.Study) else source
    column = "size_pct_of_quantized" if percent else "size_mb"
    if percent and frame[column].isna().any():
        raise ConfigError(
            "the study records no unpruned quantized size to take a percent of: give the "
            "size limit in MB"
        )
    fitting = frame[frame[column] <= limit + 1e-12]
    if fitting.empty:
        return None
    score = "val_accuracy"
    if "confirmed_accuracy" in fitting and fitting["confirmed_accuracy"].notna().any():
        fitting, score = fitting[fitting["confirmed_accuracy"].notna()], "confirmed_accuracy"
    order = fitting.sort_values([score, "size_mb", "trial"], ascending=[False, True, True])
    return order.iloc[0]


@dataclass(frozen=True)
class UniformLead:
    """A budget search's most accurate trial against its uniform reference (every group at
    the same position of its range, scaled to the same budget), both scored after the same
    fine-tune on the same validation images: the search's short one, or once promoted
    ``steps`` of the export recipe.

    ``rescored`` is 0 when the accuracies are the search's own single scores, else the number
    of confirming fine-tunes each is a mean of (``autoprune.search.confirm``), with
    ``seed_variance`` the pooled variance of one trial's score across them. ``noise`` is two
    standard errors of the difference: the validation images' part (binomial, independent
    errors) and, once confirmed, the seeds' part; None when neither is known. A smaller
    ``lead`` is within noise. Unconfirmed, the best of many single scores also overstates
    itself by its luckiest seed, which ``noise`` cannot show: confirm it.
    """

    best_trial: int
    best_accuracy: float
    uniform_trial: int
    uniform_accuracy: float
    val_images: int | None
    rescored: int = 0
    seed_variance: float | None = None
    steps: int | None = None  # confirmed after this many steps of the export recipe

    @property
    def lead(self) -> float:
        return self.best_accuracy - self.uniform_accuracy

    @property
    def noise(self) -> float | None:
        count = max(self.rescored, 1)
        return difference_noise(
            (self.best_accuracy,) * count,
            (self.uniform_accuracy,) * count,
            self.seed_variance if self.rescored else None,
            self.val_images,
        )

    @property
    def within_noise(self) -> bool | None:
        noise = self.noise
        return None if noise is None else self.lead <= noise


def uniform_lead(study: optuna.Study) -> UniformLead | None:
    """How far a budget search's best trial (``best_under`` at the largest size) leads its
    uniform reference trial; None for a study without a budget or whose reference has not
    completed yet. Once the reference and other trials are confirmed, both sides are their
    confirmed means (the best: the best confirmed trial; promoted, after the export recipe)."""
    if not _is_budget_study(study):
        return None
    frame = trials_frame(study, pareto_only=False)
    uniform = frame[frame["reference"] == BUDGET_REFERENCE]
    if uniform.empty:
        return None
    val_images = study.user_attrs.get(REFERENCE_ATTR, {}).get("val_images")
    images = int(val_images) if val_images else None
    uniform_row = uniform.iloc[0]
    steps, confirmed = preferred_confirmations(study)
    if int(uniform_row["trial"]) in confirmed and len(confirmed) > 1:
        best_number = max(confirmed, key=lambda n: (sum(confirmed[n]) / len(confirmed[n]), -n))
        rescored = min(len(v) for v in confirmed.values())
        return UniformLead(
            best_trial=best_number,
            best_accuracy=sum(confirmed[best_number]) / len(confirmed[best_number]),
            uniform_trial=int(uniform_row["trial"]),
            uniform_accuracy=float(uniform_row["confirmed_accuracy"]),
            val_images=images,
            rescored=rescored,
            seed_variance=seed_variance(list(confirmed.values())),
            steps=steps,
        )
    best = best_under(frame, float(frame["size_mb"].max()))
    assert best is not None  # the largest trial fits
    return UniformLead(
        best_trial=int(best["trial"]),
        best_accuracy=float(best["val_accuracy"]),
        uniform_trial=int(uniform_row["trial"]),
        uniform_accuracy=float(uniform_row["val_accuracy"]),
        val_images=images,
    )
