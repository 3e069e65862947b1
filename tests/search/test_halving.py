"""Successive halving of a budget search: the rung rule, its config, and a search end to end.

A candidate that goes on must end exactly as without halving (the rungs only look), stopped
trials count towards the total and keep their record, and halving is part of the study's
identity.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from autoprune.config import HalvingConfig, RunConfig, SearchConfig, TrainConfig
from autoprune.data import load_dataset, validation_subset
from autoprune.errors import ConfigError
from autoprune.progress import trial_summary
from autoprune.search.halving import RungPruner
from autoprune.search.objective import FinetuneConfig
from autoprune.search.record import REFERENCE_KEY, TrialRecord, trial_ratios
from autoprune.search.session import SearchRequest, SearchSession
from autoprune.search.study import finished_trials
from autoprune.train import evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _scored(study: optuna.Study, score: float, state: TrialState, step: int = 10) -> None:
    trial = study.ask()
    trial.report(score, step)
    study.tell(trial, score if state == TrialState.COMPLETE else None, state=state)


def _pruner_verdict(
    peers: list[float], score: float, *, reference: bool = False, step: int = 10, **config
) -> bool:
    """Whether a running trial scoring ``score`` at ``step`` is stopped, after ``peers``."""
    pruner = RungPruner(HalvingConfig(**{"rungs": (0, 10), "min_trials": 4, **config}))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for index, peer in enumerate(peers):  # finished either way: both count at the rung
        _scored(study, peer, TrialState.COMPLETE if index % 2 else TrialState.PRUNED)
    trial = study.ask()
    if reference:
        trial.set_user_attr(REFERENCE_KEY, "uniform at budget")
    trial.report(score, step)
    return trial.should_prune()


def test_a_candidate_goes_on_only_in_the_best_fraction_of_its_rung() -> None:
    peers = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # with the candidate: 7 reached, ceil(7/3) = 3 kept
    assert not _pruner_verdict(peers, 0.75)  # third
    assert _pruner_verdict(peers, 0.65)  # fourth
    assert not _pruner_verdict(peers, 0.65, reduction=2)  # ceil(7/2) = 4 kept
    assert not _pruner_verdict(peers, 0.95)
    # ties go the candidate's way: only strictly better peers count
    assert not _pruner_verdict([0.7, 0.7, 0.7, 0.7, 0.7, 0.7], 0.7)


def test_nothing_stops_before_enough_candidates_reached_the_rung_nor_off_a_rung() -> None:
    assert not _pruner_verdict([0.9, 0.8], 0.1)  # 3 reached, min_trials 4
    assert _pruner_verdict([0.9, 0.8, 0.7], 0.1)
    assert not _pruner_verdict([0.9, 0.8, 0.7], 0.1, step=5)  # 5 is no rung
    assert not _pruner_verdict([0.9, 0.8, 0.7], 0.1, reference=True)  # references finish


def test_the_halving_config_reads_its_rungs_and_refuses_what_cannot_work() -> None:
    assert HalvingConfig.parse("10").rungs == (10,)
    assert HalvingConfig.parse("0, 10,20").rungs == (0, 10, 20)
    assert HalvingConfig.from_dict(HalvingConfig((0, 5)).to_dict()) == HalvingConfig((0, 5))
    with pytest.raises(ConfigError, match="give the rungs as fine-tuning steps"):
        HalvingConfig.parse("ten")
    with pytest.raises(ConfigError, match="must increase"):
        HalvingConfig(rungs=(10, 5))
    with pytest.raises(ConfigError, match="at least one rung"):
        HalvingConfig(rungs=())
    with pytest.raises(ConfigError, match="reduction"):
        HalvingConfig(reduction=1)


def test_halving_is_stored_with_the_search_and_older_configs_have_none() -> None:
    budget = {"metric": "size", "limit": 100}
    config = SearchConfig(budget=budget, halving=HalvingConfig(rungs=(0, 10)))
    assert SearchConfig.from_dict(config.to_dict()) == config
    stored = SearchConfig(budget=budget).to_dict()
    assert stored.pop("halving") is None
    assert SearchConfig.from_dict(stored).halving is None
    with pytest.raises(ConfigError, match="needs a budget search"):
        SearchConfig(halving=HalvingConfig())


def test_a_rung_must_come_before_the_end_of_a_trials_fine_tune() -> None:
    request = _request(halving=HalvingConfig(rungs=(4,)), finetune=FinetuneConfig(steps=4))
    with pytest.raises(ConfigError, match="rung 4 is not below the 4 fine-tuning steps"):
        SearchSession(request)
    with pytest.raises(ConfigError, match="needs a budget search"):
        SearchSession(_request(target_size=None))
    with pytest.raises(ConfigError, match="needs a budget search"):
        RunConfig.from_dict(
            {
                **_a_run_config().to_dict(),
                "search": {**_a_run_config().search.to_dict(), "budget": None},
            }
        )


def _a_run_config() -> RunConfig:
    session = SearchSession(_request())
    return session.run_config


def test_the_validation_subset_is_class_balanced_and_fixed() -> None:
    data = load_dataset("digits")
    batches = validation_subset(data, images=50, batch_size=16)
    labels = [int(label) for _, batch in batches for label in batch]
    assert len(labels) == 50  # 10 classes x 5
    assert all(labels.count(digit) == 5 for digit in range(10))
    assert [len(batch) for _, batch in batches] == [16, 16, 16, 2]
    again = validation_subset(data, images=50, batch_size=16)
    assert all(
        (a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(batches, again, strict=True)
    )
    everything = validation_subset(data, images=10**6)
    assert sum(len(batch) for _, batch in everything) == data.num_examples("val")


def _request(**overrides) -> SearchRequest:
    options = dict(
        model="tiny_cnn",
        dataset="digits",
        max_train=200,
        trials=8,
        criterion="l1",
        # plain cross-entropy: with the distilled default none of these 8 candidates of a
        # one-epoch network stopped; this test is about the rungs, not the recipe
        finetune=FinetuneConfig(steps=4, warmup=0.0, distill=0.0, bn_batches=0),
        train=TrainConfig(epochs=1),
        target_size="60%",
        halving=HalvingConfig(rungs=(0, 2), reduction=2, min_trials=2, subset=60),
    )
    return SearchRequest(**{**options, **overrides})


def test_a_halving_search_stops_weak_candidates_and_the_rest_end_as_without_it(
    tmp_path,
) -> None:
    storage = str(tmp_path / "s.db")
    session = SearchSession(_request(storage=storage))
    session.run()
    study = session.study
    trials = study.trials
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert finished_trials(study) == len(stopped) + len(complete) == 8
    assert stopped, "with half kept at each rung, some of 8 candidates stop"
    assert TrialRecord.from_trial(complete[0]).reference is not None  # references finish
    limit = session.allocator.budget.limit
    for trial in stopped:
        record = TrialRecord.from_trial(trial)
        assert record.stopped_at in (0, 2)
        assert set(trial.intermediate_values) <= {0, 2}
        assert record.size_bits <= limit and record.kept_channels
        assert trial_summary(trial).startswith(f"trial {trial.number}: stopped after")
    for trial in complete:
        assert set(trial.intermediate_values) == {0, 2}
    # a complete trial's fine-tune is the plain one: rebuilt without rungs, same accuracy
    last = complete[-1]
    network, _ = session.evaluator.build(
        trial_ratios(last), seed=session.request.seed + last.number
    )
    assert evaluate(network, session.data, "val").accuracy == last.values[0]

    # resuming adds trials under the same halving; another halving is another study
    SearchSession(_request(storage=storage, trials=10)).run()
    assert (
        finished_trials(optuna.load_study(study_name=study.study_name, storage=study._storage))
        == 10
    )
    with pytest.raises(ConfigError, match="halving"):
        SearchSession(_request(storage=storage, halving=HalvingConfig(rungs=(1,))))
