"""The paper's layer-wise method: probes, objective, greedy order, storage and resuming."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import autoprune
from autoprune.config import TrainConfig
from autoprune.errors import ConfigError
from autoprune.metrics import measure
from autoprune.quant import QuantSpec
from autoprune.search import SearchObserver, SearchRequest, SearchSession
from autoprune.search.layerwise import (
    GroupDecision,
    LayerwiseConfig,
    objective_value,
    probe_ratios,
)
from autoprune.search.space import GroupRange

CONFIG = LayerwiseConfig(evaluations=4, probes=2, retrain_steps=2, final_steps=2)


def test_probes_span_the_range_on_its_grid() -> None:
    assert probe_ratios(GroupRange("g", 0.0, 0.4, 0.05), 3) == [0.0, 0.2, 0.4]
    assert probe_ratios(GroupRange("g", 0.0, 0.6, 0.25), 3) == [0.0, 0.25, 0.5]
    assert probe_ratios(GroupRange("g", 0.1, 0.1, 0.05), 3) == [0.1]


def test_objective_follows_the_paper() -> None:
    # CE 0.5, params at 80 %, bits at 60 %, alpha 2: -(0.5 + 2 * 0.8 + 0.5 * 0.6)
    assert objective_value(0.5, 80, 60, 100, 100, alpha=2.0) == pytest.approx(-2.4)
    assert objective_value(math.nan, 80, 60, 100, 100, alpha=1.0) == -math.inf


def _request(storage: Path, **changes: object) -> SearchRequest:
    options: dict = dict(
        model="tiny_resnet",
        quant=QuantSpec.from_bits(2),
        storage=str(storage),
        study_name="lw",
        method="layerwise",
        layerwise=CONFIG,
        train=TrainConfig(epochs=1),
        device="cpu",
        max_train=200,
    )
    options.update(changes)
    return SearchRequest(**options)


class _Recorder(SearchObserver):
    def __init__(self, stop_after: int | None = None) -> None:
        self.groups: list[str] = []
        self.evaluations = 0
        self.stop_after = stop_after

    def group_started(self, position: int, total: int, group: str) -> None:
        self.groups.append(group)

    def trial_started(self, number: int, ratios: dict[str, float]) -> None:
        if self.stop_after is not None and self.evaluations == self.stop_after:
            raise KeyboardInterrupt
        self.evaluations += 1


def test_layerwise_runs_greedy_from_the_last_group(tmp_path: Path) -> None:
    session = SearchSession(_request(tmp_path / "s.db"))
    recorder = _Recorder()
    result = session.run_layerwise(recorder)

    names = session.space.names
    assert recorder.groups == names[::-1]
    assert recorder.evaluations == CONFIG.evaluations * len(names)
    assert [d.group for d in result.decisions] == names[::-1]
    for decision in result.decisions:
        assert decision.retrained == (decision.ratio >= CONFIG.retrain_threshold)

    # every evaluation is stored: one study per group, probes first
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    for position, group in enumerate(reversed(session.space.groups)):
        child = optuna.load_study(study_name=f"lw/{position:02d}-{group.name}", storage=storage)
        trials = child.get_trials(states=(TrialState.COMPLETE,))
        assert len(trials) == CONFIG.evaluations
        assert [t.params[group.name] for t in trials[:2]] == probe_ratios(group, 2)
        for trial in trials:
            expected = objective_value(
                trial.user_attrs["val_loss"],
                trial.user_attrs["params"],
                trial.user_attrs["size_bits"],
                result_base(session)[0],
                result_base(session)[1],
                CONFIG.alpha,
            )
            assert trial.value == pytest.approx(expected)

    # the parent holds the unpruned baseline and the result, and the result reloads exactly
    labels = {t.user_attrs["reference"]: t for t in session.study.trials}
    assert set(labels) == {"unpruned", "layer-wise result"}
    final = labels["layer-wise result"]
    assert final.params == {d.group: d.ratio for d in result.decisions}
    model = autoprune.load(final.user_attrs["checkpoint"])
    assert measure(model, session.model_config.input_shape).params == (final.user_attrs["params"])
    assert final.values[0] == pytest.approx(result.val_accuracy)


def result_base(session: SearchSession) -> tuple[int, int]:
    cost = measure(session.baseline, session.model_config.input_shape)
    return cost.params, cost.size_bits


def test_interrupted_layerwise_search_resumes(tmp_path: Path) -> None:
    storage = tmp_path / "s.db"
    session = SearchSession(_request(storage))
    stop = CONFIG.evaluations + 1  # inside the second group
    with pytest.raises(KeyboardInterrupt):
        session.run_layerwise(_Recorder(stop_after=stop))
    assert [GroupDecision(**session.study.user_attrs["layerwise_decision_00"]).position] == [0]
    assert "layerwise_decision_01" not in session.study.user_attrs

    resumed = SearchSession(_request(storage))
    assert not resumed.created
    recorder = _Recorder()
    result = resumed.run_layerwise(recorder)
    groups = len(resumed.space.groups)
    # the finished group is not searched again; the interrupted one keeps its evaluation
    assert recorder.groups == resumed.space.names[::-1][1:]
    assert recorder.evaluations == CONFIG.evaluations * (groups - 1) - 1
    assert len(result.decisions) == groups

    # a third run finds everything done and returns the stored result
    again = SearchSession(_request(storage)).run_layerwise(_Recorder(stop_after=0))
    assert again.kept_channels == result.kept_channels
    assert again.val_accuracy == pytest.approx(result.val_accuracy)


def test_a_lost_state_file_is_rebuilt_from_the_decisions(tmp_path: Path) -> None:
    storage = tmp_path / "s.db"
    session = SearchSession(_request(storage))
    with pytest.raises(KeyboardInterrupt):
        session.run_layerwise(_Recorder(stop_after=CONFIG.evaluations + 1))
    state = session.layerwise_dir / "after-00.pt"
    saved = torch.load(state, weights_only=True)["state_dict"]
    state.unlink()
    resumed = SearchSession(_request(storage))
    # the first group's network is replayed deterministically from the stored decision
    rebuilt = _restored_state(resumed)
    for key, value in saved.items():
        torch.testing.assert_close(rebuilt[key], value)


def _restored_state(session: SearchSession) -> dict[str, torch.Tensor]:
    from autoprune.search.layerwise import LayerwiseSearch

    search = LayerwiseSearch(
        parent=session.study,
        storage=session.storage,
        space=session.space,
        baseline=session.baseline,
        data=session.data,
        model_config=session.model_config,
        criterion=session.request.criterion,
        config=session.request.layerwise,
        sampler=session.request.sampler,
        seed=session.request.seed,
        state_dir=session.layerwise_dir,
    )
    model = search._restore(search.decisions(), SearchObserver())
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def test_changing_the_schedule_is_refused(tmp_path: Path) -> None:
    SearchSession(_request(tmp_path / "s.db"))
    with pytest.raises(ConfigError, match=r"layerwise\.alpha"):
        SearchSession(_request(tmp_path / "s.db", layerwise=LayerwiseConfig(alpha=2.0)))


def test_residual_groups_and_a_data_driven_criterion(tmp_path: Path) -> None:
    """A residual group pruned by the layer-wise method is stored in every state, so the states
    reload; taylor gets its calibration batches."""
    space = tmp_path / "space.yaml"
    space.write_text(
        "model: tiny_resnet\n"
        "ratio: {low: 0.0, high: 0.5, step: 0.25}\n"
        "groups:\n"
        "  - layers.1.0.conv1\n"
        '  - {name: "residual:layers.1.0", low: 0.5, high: 0.5}\n'
    )
    storage = tmp_path / "s.db"
    options = dict(search_space=str(space), criterion="taylor")
    result = SearchSession(_request(storage, **options)).run_layerwise(_Recorder())
    assert result.kept_channels["residual:layers.1.0"] == 8  # half of 16
    # the state after the residual group reloads as saved (it did not when its width was lost)
    session = SearchSession(_request(storage, **options))
    search_state = _restored_state(session)
    saved = torch.load(session.layerwise_dir / "after-01.pt", weights_only=True)
    assert saved["kept_channels"]["residual:layers.1.0"] == 8
    for key, value in saved["state_dict"].items():
        torch.testing.assert_close(search_state[key], value)
    again = session.run_layerwise(_Recorder(stop_after=0))
    assert again.kept_channels == result.kept_channels


def test_a_group_trial_left_running_by_an_interrupted_run_is_failed_and_its_probe_requeued(
    tmp_path: Path,
) -> None:
    """Through Optuna's public ``study.tell`` (no private trial ids)."""
    from autoprune.config import ModelConfig
    from autoprune.data import load_dataset
    from autoprune.models import build_model
    from autoprune.search.layerwise import LayerwiseSearch
    from autoprune.search.space import SearchSpace

    data = load_dataset("digits", max_train=64)
    model_config = ModelConfig.for_data("tiny_cnn", QuantSpec.from_bits(2), data)
    storage = optuna.storages.InMemoryStorage()
    group = GroupRange("features.3", 0.0, 0.5, 0.25)
    search = LayerwiseSearch(
        parent=optuna.create_study(storage=storage, study_name="p"),
        storage=storage,
        space=SearchSpace("tiny_cnn", (group,)),
        baseline=build_model(model_config).eval(),
        data=data,
        model_config=model_config,
        criterion="l1",
        config=CONFIG,
        sampler="random",
        seed=0,
        state_dir=tmp_path,
    )
    first = search._group_study(0, group)
    interrupted = first.ask()  # the first probe, left running by a killed run
    ratio = interrupted.suggest_float(group.name, group.low, group.high, step=group.step)
    assert first.trials[0].state == TrialState.RUNNING
    again = search._group_study(0, group)
    assert again.trials[interrupted.number].state == TrialState.FAIL
    assert len(again.get_trials(states=(TrialState.WAITING,))) == 2  # both probes queued
    queued = {
        again.ask().suggest_float(group.name, group.low, group.high, step=group.step)
        for _ in range(2)
    }
    assert ratio in queued and len(queued) == 2
