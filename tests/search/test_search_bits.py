"""Searching per-layer bit-widths with the ratios: the reference points keep the network's own
width, every trial is costed exactly at its widths and rebuilt and exported at them, a budget
search's trials meet the budget at their widths, the study's identity holds the choices, and
the searches that cannot take them refuse in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import autoprune
from autoprune import FinetuneConfig, QuantSpec, TrainConfig
from autoprune.checkpoint import read_checkpoint
from autoprune.data import DataSplits, load_dataset
from autoprune.errors import ConfigError
from autoprune.models import create_model
from autoprune.quant import layer_bits
from autoprune.search.record import trial_ratios
from autoprune.search.space import BITS_PREFIX, split_params
from autoprune.search.study import run_config_of
from autoprune.train import evaluate

SPEC = QuantSpec.from_bits(2)
LAYERS = ("features.3", "features.6")  # tiny_cnn's inner layers: the stem and fc keep theirs
QUEUED = {"features.0": 0.25, "features.3": 0.5, "features.6": 0.0}
QUEUED_BITS = {"features.3": 8, "features.6": 4}


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A trained tiny W2A2 network searched with widths 2, 4, 8, one point queued at 8/4 bits."""
    folder = tmp_path_factory.mktemp("bits")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOPRUNE_CACHE", str(folder / "cache"))
        torch.manual_seed(0)
        data = load_dataset("digits", max_train=300)
        assert isinstance(data, DataSplits)
        model = create_model("tiny_cnn", spec=SPEC, num_classes=10, in_channels=1)
        autoprune.train_baseline(
            model, data, quant=SPEC, config=TrainConfig(epochs=3, batch_size=16, lr=0.01)
        )
        options = dict(
            quant=SPEC,
            train=None,
            trials=6,
            finetune=FinetuneConfig(steps=2, batch_size=16),
            device="cpu",
            storage=str(folder / "study.db"),
            study_name="bits",
            search_bits="2,4,8",
        )
        result = autoprune.run_search(model, data, run=False, **options)
        params = {**QUEUED, **{BITS_PREFIX + k: v for k, v in QUEUED_BITS.items()}}
        result.study.enqueue_trial(params)
        result.run()
        yield {"data": data, "model": model, "result": result, "options": options}


def _complete(result: autoprune.SearchResult) -> list:
    return [t for t in result.study.trials if t.state.name == "COMPLETE"]


def test_the_study_records_the_choices_and_references_keep_the_own_width(searched: dict) -> None:
    result = searched["result"]
    assert run_config_of(result.study).search.search_bits == (2, 4, 8)
    trials = _complete(result)
    assert len(trials) == 6
    references = [t for t in trials if t.user_attrs.get("reference")]
    assert references and all(
        split_params(t.params)[1] == dict.fromkeys(LAYERS, 2) for t in references
    )
    unpruned = next(t for t in references if t.user_attrs["reference"] == "unpruned")
    assert unpruned.user_attrs["size_bits"] == result.session.reference.quantized_size_bits
    frame = result.pareto(all_trials=True)
    assert frame.attrs["groups"] == ["features.0", "features.3", "features.6"]  # ratios only
    assert set(frame["bits"]) >= {"2 2", "8 4"}  # the queued point's widths, layer order


def test_every_trial_is_costed_and_rebuilt_at_its_widths(searched: dict) -> None:
    result, data = searched["result"], searched["data"]
    queued = next(t for t in _complete(result) if split_params(t.params)[1] == QUEUED_BITS)
    for trial in (queued, _complete(result)[-1]):
        network = result.build(trial)
        assert layer_bits(network, SPEC) == {
            k: v for k, v in split_params(trial.params)[1].items() if v != 2
        }
        cost = autoprune.measure(network, (1, 8, 8))
        assert (cost.size_bits, cost.bops) == (
            trial.user_attrs["size_bits"],
            trial.user_attrs["bops"],
        )
        assert evaluate(network, data, "val").accuracy == trial.values[0]
    # the same pruning at the network's own 2 bits costs less, by the widths' arithmetic
    two_bit, _ = result.session.evaluator.prune(QUEUED, seed=0)
    cost = autoprune.measure(two_bit, (1, 8, 8))
    by_layer = {layer.name: layer for layer in cost.layers}
    extra_bits = sum(by_layer[k].params * (v - 2) for k, v in QUEUED_BITS.items())
    extra_bops = sum(by_layer[k].macs * (v * v - 4) for k, v in QUEUED_BITS.items())
    assert queued.user_attrs["size_bits"] - cost.size_bits == extra_bits
    assert queued.user_attrs["bops"] - cost.bops == extra_bops


def test_export_stores_the_widths_and_reloads_the_same_network(
    searched: dict, tmp_path: Path
) -> None:
    result, data = searched["result"], searched["data"]
    queued = next(t for t in _complete(result) if split_params(t.params)[1] == QUEUED_BITS)
    exported = result.export(queued.number, tmp_path / "mixed.pt", finetune=None)
    payload = read_checkpoint(tmp_path / "mixed.pt")
    assert payload["version"] == 2 and payload["layer_bits"] == QUEUED_BITS
    assert payload["metadata"]["layer_bits"] == QUEUED_BITS
    assert set(payload["metadata"]["ratios"]) == set(QUEUED)
    network = autoprune.load(tmp_path / "mixed.pt", model=searched["model"])
    assert evaluate(network, data, "val").accuracy == exported.val_accuracy == queued.values[0]
    assert autoprune.measure(network, (1, 8, 8)).size_bits == queued.user_attrs["size_bits"]
    report = autoprune.inspect(tmp_path / "mixed.pt", model=searched["model"])
    assert report.layer_bits == QUEUED_BITS
    assert report.quant_label == "w2a2, 2 layers at other widths"
    assert report.to_dict()["layer_bits"] == QUEUED_BITS


def test_resuming_needs_the_same_choices(searched: dict) -> None:
    result, data, options = searched["result"], searched["data"], searched["options"]
    resumed = autoprune.run_search(searched["model"], data, **options)  # complete: no new trial
    assert len(_complete(resumed)) == 6
    with pytest.raises(ConfigError, match=r"another configuration.*search_bits"):
        autoprune.run_search(searched["model"], data, **{**options, "search_bits": "2,4"})
    with pytest.raises(ConfigError, match=r"another configuration.*search_bits"):
        autoprune.run_search(searched["model"], data, **{**options, "search_bits": None})
    assert len(_complete(result)) == 6  # nothing stored was lost


def test_a_budget_search_meets_the_budget_at_each_trials_widths(searched: dict) -> None:
    options = {**searched["options"], "storage": None, "study_name": None, "trials": 5}
    result = autoprune.run_search(
        searched["model"], searched["data"], **options, target_size="60%", confirm=0
    )
    limit = 0.6 * result.session.reference.quantized_size_bits
    trials = _complete(result)
    assert len(trials) == 5
    applied = [split_params(trial_ratios(t))[1] for t in trials]
    assert applied[0] == dict.fromkeys(LAYERS, 2)  # the uniform reference keeps its widths
    assert any(set(widths.values()) != {2} for widths in applied)  # others choose theirs
    for trial in trials:
        network = result.build(trial)
        size = autoprune.measure(network, (1, 8, 8)).size_bits
        assert size == trial.user_attrs["size_bits"] <= limit
        assert layer_bits(network, SPEC) == {
            k: v for k, v in split_params(trial_ratios(trial))[1].items() if v != 2
        }


def test_a_parent_above_the_lowest_width_gets_a_reference_at_it() -> None:
    """A W4A4 parent searched among 2 and 4 bits: the unpruned network at 2 bits is queued
    (two objectives), and in a budget search the uniform reference at 2 bits, which needs
    less pruning than the one at 4 bits for the same budget."""
    spec = QuantSpec.from_bits(4)
    torch.manual_seed(0)
    data = load_dataset("digits", max_train=200)
    assert isinstance(data, DataSplits)
    model = create_model("tiny_cnn", spec=spec, num_classes=10, in_channels=1)
    autoprune.train_baseline(
        model, data, quant=spec, config=TrainConfig(epochs=1, batch_size=16, lr=0.01)
    )
    options = dict(
        quant=spec,
        train=None,
        finetune=FinetuneConfig(steps=1, batch_size=16),
        device="cpu",
        search_bits="2,4",
    )
    front = autoprune.run_search(model, data, trials=5, **options)
    lowered = {
        t.user_attrs["reference"]: t for t in _complete(front) if t.user_attrs.get("reference")
    }["unpruned, 2 bits"]
    ratios, widths = split_params(lowered.params)
    assert set(ratios.values()) == {0.0} and widths == dict.fromkeys(LAYERS, 2)

    budget = autoprune.run_search(model, data, trials=2, target_size="60%", confirm=0, **options)
    own, low = _complete(budget)
    assert own.user_attrs["reference"] == "uniform at budget"
    assert low.user_attrs["reference"] == "uniform at budget, 2 bits"
    own_ratios, own_widths = split_params(trial_ratios(own))
    low_ratios, low_widths = split_params(trial_ratios(low))
    assert own_widths == dict.fromkeys(LAYERS, 4) and low_widths == dict.fromkeys(LAYERS, 2)
    assert sum(low_ratios.values()) < sum(own_ratios.values())
    limit = 0.6 * budget.session.reference.quantized_size_bits
    assert low.user_attrs["size_bits"] <= limit


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"method": "layerwise"}, "`search_bits` applies to the joint search only"),
        ({"search_bits": "4,8"}, "leave out the network's own 2 bits"),
        ({"quant": QuantSpec.from_bits(1)}, "need a DoReFa network"),
    ],
)
def test_searches_that_cannot_take_widths_refuse(searched: dict, extra: dict, message: str) -> None:
    options = {**searched["options"], "storage": None, "study_name": None, **extra}
    model = create_model("tiny_cnn", spec=options["quant"], num_classes=10, in_channels=1)
    with pytest.raises(ConfigError, match=message):
        autoprune.run_search(model, searched["data"], run=False, **options)
