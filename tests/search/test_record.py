"""The per-trial record: one type for what autoprune stores as a trial's user attributes."""

from __future__ import annotations

from dataclasses import fields

import optuna
import pytest
from optuna.trial import TrialState

from autoprune.metrics import BITS_PER_MB
from autoprune.search.objective import CandidateResult
from autoprune.search.pareto import trials_frame
from autoprune.search.record import REFERENCE_KEY, TrialRecord
from autoprune.search.study import make_evaluation

FULL = TrialRecord(
    reference="uniform 0.20",
    val_loss=0.5,
    val_accuracy=0.875,
    size_bits=12_345,
    params=678,
    macs=9_000,
    bops=81_000,
    kept_channels={"features.3": 8},
    seconds={"prune": 0.1, "finetune": 1.5},
    checkpoint="/tmp/net.pt",
    probe=True,
    repeat_of=2,
    ratios={"features.3": 0.5},
    stopped_at=10,
)
DISTRIBUTIONS = {"g": optuna.distributions.FloatDistribution(0.0, 0.6)}


def _trial(values: list[float], attrs: dict) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        params={"g": 0.2}, distributions=DISTRIBUTIONS, values=values, user_attrs=attrs
    )


def test_every_field_is_set_in_the_full_example() -> None:
    assert all(getattr(FULL, f.name) is not None for f in fields(TrialRecord))
    assert REFERENCE_KEY in FULL.to_user_attrs()


def test_a_record_round_trips_through_a_stored_trial() -> None:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.add_trial(_trial([0.875], FULL.to_user_attrs()))
    assert TrialRecord.from_trial(study.trials[0]) == FULL


def test_a_live_trial_stores_the_record() -> None:
    study = optuna.create_study()
    study.optimize(lambda trial: (FULL.write(trial), 1.0)[1], n_trials=1)
    assert TrialRecord.from_trial(study.trials[0]) == FULL


def test_unset_fields_are_not_stored_and_old_trials_read_as_none() -> None:
    assert TrialRecord(reference="unpruned").to_user_attrs() == {"reference": "unpruned"}
    old = TrialRecord.from_trial(_trial([0.9], {"size_bits": 100, "unknown": 1}))
    assert old.size_bits == 100 and old.bops is None and old.kept_channels is None


def test_the_size_of_a_trial_from_before_size_bits_is_its_second_objective() -> None:
    record = TrialRecord.from_trial(_trial([0.9, 0.25], {}))
    assert record.size_bits == round(0.25 * BITS_PER_MB) and record.size_mb == pytest.approx(0.25)
    assert TrialRecord.from_trial(_trial([0.9], {})).size_bits is None  # one objective: unknown


def test_the_joint_search_writes_a_record() -> None:
    result = CandidateResult(
        val_accuracy=0.8,
        val_loss=0.6,
        size_bits=4_000,
        params=50,
        macs=60,
        bops=70,
        kept_channels={"g": 3},
        seconds={"prune": 0.12345},
    )
    evaluation = make_evaluation(lambda ratios, **_: result, seed=0)  # type: ignore[arg-type]
    values, attrs = evaluation(0, {"g": 0.2}, lambda done, total: None)
    assert values == (0.8, 4_000 / BITS_PER_MB)
    stored = TrialRecord.from_trial(_trial(list(values), attrs))
    assert (stored.size_bits, stored.bops, stored.kept_channels) == (4_000, 70, {"g": 3})
    assert stored.seconds == {"prune": 0.123} and stored.reference is None


def test_the_table_needs_no_second_objective() -> None:
    """A single-objective (budget) study: accuracy from the value, size from the record."""
    study = optuna.create_study(direction="maximize")
    for accuracy, bits in ((0.7, 2_000), (0.9, 8_000)):
        study.add_trial(_trial([accuracy], TrialRecord(size_bits=bits, bops=bits).to_user_attrs()))
    frame = trials_frame(study, pareto_only=False)
    assert frame["val_accuracy"].tolist() == [0.7, 0.9]
    assert frame["size_mb"].tolist() == pytest.approx([2_000 / BITS_PER_MB, 8_000 / BITS_PER_MB])
    assert frame["bops"].tolist() == [2_000, 8_000]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
