"""A budget search end to end: one objective, every trial within the budget, the budget part
of the study's identity, and a trial rebuilt from its stored ratios."""

from __future__ import annotations

import pytest

from autoprune.config import TrainConfig
from autoprune.errors import ConfigError
from autoprune.progress import trial_summary
from autoprune.search.objective import FinetuneConfig
from autoprune.search.record import TrialRecord, trial_ratios
from autoprune.search.session import SearchRequest, SearchSession
from autoprune.search.study import BUDGET_REFERENCE, SENSITIVITY_ATTR
from autoprune.train import evaluate


def _request(**overrides) -> SearchRequest:
    options = dict(
        model="tiny_cnn",
        dataset="digits",
        max_train=200,
        trials=3,
        criterion="l1",
        finetune=FinetuneConfig(steps=2),
        train=TrainConfig(epochs=1),
        target_size="60%",
    )
    return SearchRequest(**{**options, **overrides})


def test_every_trial_meets_the_budget_and_rebuilds_from_its_ratios(tmp_path) -> None:
    storage = str(tmp_path / "s.db")
    session = SearchSession(_request(storage=storage))
    assert [d.name for d in session.study.directions] == ["MAXIMIZE"]
    session.run()
    trials = [t for t in session.study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 3
    limit = session.allocator.budget.limit
    assert session.run_config.search.budget == {"metric": "size", "limit": limit}
    assert TrialRecord.from_trial(trials[0]).reference == BUDGET_REFERENCE
    for trial in trials:
        record = TrialRecord.from_trial(trial)
        assert record.size_bits <= limit  # measured on the pruned network itself
        assert set(trial_ratios(trial)) == set(session.space.names)
        assert trial_ratios(trial) != trial.params  # parameters are the shape
    # the trial's network, rebuilt from its stored ratios, is the one that was scored
    last = trials[-1]
    network, kept = session.evaluator.build(
        trial_ratios(last), seed=session.request.seed + last.number
    )
    assert kept == TrialRecord.from_trial(last).kept_channels
    assert evaluate(network, session.data, "val").accuracy == last.values[0]
    # progress lines read the size from the record: a budget study has one objective
    assert trial_summary(last).endswith(" MB")

    # another budget is another study
    with pytest.raises(ConfigError, match="budget"):
        SearchSession(_request(storage=storage, target_size="50%"))


def test_budget_requests_that_cannot_run_are_refused() -> None:
    with pytest.raises(ConfigError, match="not both"):
        SearchSession(_request(target_bops="50%"))
    with pytest.raises(ConfigError, match="layerwise method has no budget"):
        SearchSession(_request(method="layerwise"))
    with pytest.raises(ConfigError, match="layerwise method has no warm start"):
        SearchSession(_request(method="layerwise", target_size=None, warm_start="sensitivity"))
    with pytest.raises(ConfigError, match="below what the search space can reach"):
        SearchSession(_request(target_size="1%"))
    with pytest.raises(ConfigError, match="`target_size`"):
        SearchSession(_request(target_size="half"))


@pytest.mark.parametrize("target", ["60%", None])
def test_sensitivity_warm_start_queues_labelled_points_once(tmp_path, target) -> None:
    storage = str(tmp_path / "w.db")
    # every queued point runs: the references (1 in a budget search, 4 without) come first
    trials = 4 if target else 8
    request = _request(storage=storage, target_size=target, warm_start="sensitivity", trials=trials)
    session = SearchSession(request)
    labels = [TrialRecord.from_trial(t).reference for t in session.study.trials]
    warm = [label for label in labels if label and label.startswith("sensitivity")]
    assert warm, labels
    assert SENSITIVITY_ATTR in session.study.user_attrs
    session.run()
    complete = [t for t in session.study.trials if t.state.name == "COMPLETE"]
    done = {TrialRecord.from_trial(t).reference for t in complete}
    assert set(warm) <= done  # queued points run before the sampler's own
    # a resumed run reuses the stored scan and queues nothing again
    again = SearchSession(request)
    assert len(again.study.trials) == len(session.study.trials)
    with pytest.raises(ConfigError, match="unknown warm start"):
        SearchSession(_request(warm_start="sensitive"))


def test_the_front_of_a_budget_search_is_accuracy_against_size(tmp_path) -> None:
    from autoprune.search.pareto import trials_frame

    session = SearchSession(_request(storage=str(tmp_path / "f.db"), trials=4))
    session.run()
    every = trials_frame(session.study, pareto_only=False)
    front = trials_frame(session.study)
    assert len(every) == 4 and 1 <= len(front) <= 4
    best = every["val_accuracy"].max()
    assert best in set(front["val_accuracy"])
    for _, row in every.iterrows():  # every trial off the front is beaten on both counts
        if row["trial"] not in set(front["trial"]):
            assert any(
                f["val_accuracy"] >= row["val_accuracy"] and f["size_mb"] <= row["size_mb"]
                for _, f in front.iterrows()
            )


def test_the_best_trial_is_compared_with_uniform_pruning_at_the_budget(tmp_path) -> None:
    from autoprune.search.pareto import trials_frame, uniform_lead

    session = SearchSession(_request(storage=str(tmp_path / "u.db"), trials=4))
    session.run()
    lead = uniform_lead(session.study)
    every = trials_frame(session.study, pareto_only=False)
    uniform = every[every["reference"] == BUDGET_REFERENCE].iloc[0]
    assert lead.uniform_trial == uniform["trial"]
    assert lead.uniform_accuracy == uniform["val_accuracy"]
    assert lead.best_accuracy == every["val_accuracy"].max()
    assert lead.val_images == session.data.num_examples("val")
    # a study without a budget has no uniform reference at the budget
    free = SearchSession(_request(storage=str(tmp_path / "free.db"), target_size=None, trials=1))
    free.run()
    assert uniform_lead(free.study) is None


def test_a_lead_is_noise_below_two_standard_errors_of_a_difference() -> None:
    from autoprune.search.pareto import UniformLead

    # at 85 % on 6,000 images one difference's standard error is 0.65 pt
    lead = UniformLead(3, 0.862, 0, 0.850, val_images=6000)
    assert abs(lead.noise - 2 * (2 * 0.856 * 0.144 / 6000) ** 0.5) < 1e-12
    assert round(100 * lead.noise, 2) == 1.28 and lead.within_noise
    assert not UniformLead(3, 0.88, 0, 0.85, val_images=6000).within_noise
    unknown = UniformLead(3, 0.88, 0, 0.85, val_images=None)
    assert unknown.noise is None and unknown.within_noise is None
