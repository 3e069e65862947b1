"""``cost="bops"``: a two-objective search of accuracy against BOPs instead of size.

The second objective is the trial's measured BOPs in billions, the front is the study's own
(accuracy, BOPs) front, the cost is part of the study's identity, and configs stored before
the cost existed read as ``"size"``.
"""

from __future__ import annotations

import pytest

from autoprune.config import SearchConfig, TrainConfig
from autoprune.errors import ConfigError
from autoprune.search.objective import FinetuneConfig
from autoprune.search.pareto import study_cost, trials_frame
from autoprune.search.plot import BOPS_LABEL, scatter_text
from autoprune.search.record import TrialRecord
from autoprune.search.session import SearchRequest, SearchSession
from autoprune.search.study import BOPS_PER_GBOPS, objective_names


def _request(**overrides) -> SearchRequest:
    options = dict(
        model="tiny_cnn",
        dataset="digits",
        max_train=200,
        trials=5,
        criterion="l1",
        finetune=FinetuneConfig(steps=2),
        train=TrainConfig(epochs=1),
        cost="bops",
    )
    return SearchRequest(**{**options, **overrides})


def test_a_bops_search_minimises_measured_bops(tmp_path) -> None:
    storage = str(tmp_path / "s.db")
    session = SearchSession(_request(storage=storage))
    session.run()
    study = session.study
    assert study.metric_names == list(objective_names("bops")) == ["val_accuracy", "gbops"]
    assert study_cost(study) == "bops"
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 5
    bops = {t.number: TrialRecord.from_trial(t).bops for t in complete}
    for trial in complete:
        assert trial.values[1] == pytest.approx(bops[trial.number] / BOPS_PER_GBOPS, rel=1e-12)
    # the front is the (accuracy, BOPs) one: no complete trial dominates a front member
    front = trials_frame(study)
    assert set(front["trial"]) == {t.number for t in study.best_trials}
    for number in front["trial"]:
        mine = next(t for t in complete if t.number == number)
        assert not any(
            o.values[0] >= mine.values[0]
            and bops[o.number] <= bops[number]
            and (o.values[0] > mine.values[0] or bops[o.number] < bops[number])
            for o in complete
        )
    assert BOPS_LABEL in scatter_text(study)
    # the cost is part of the study's identity
    with pytest.raises(ConfigError, match="cost"):
        SearchSession(_request(storage=storage, cost="size"))


def test_costs_that_cannot_apply_are_refused_before_any_work() -> None:
    with pytest.raises(ConfigError, match="unknown search cost 'latency'"):
        SearchSession(_request(cost="latency"))
    with pytest.raises(ConfigError, match="two-objective joint search only"):
        SearchSession(_request(target_size="60%"))
    with pytest.raises(ConfigError, match="two-objective joint search only"):
        SearchSession(_request(method="layerwise"))


def test_a_config_stored_before_the_cost_existed_reads_as_size() -> None:
    stored = SearchConfig(space={"groups": []}).to_dict()
    assert stored.pop("cost") == "size"
    assert SearchConfig.from_dict(stored).cost == "size"
    bops = SearchConfig(cost="bops")
    assert SearchConfig.from_dict(bops.to_dict()) == bops
