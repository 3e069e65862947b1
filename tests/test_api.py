"""The public API: every name resolves, none is shadowed by a subpackage, and a notebook can
search its own in-memory network on in-memory data and get the pruned network back."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

import autoprune
from autoprune import FinetuneConfig, QuantSpec, TrainConfig
from autoprune.data import DataSplits, load_dataset
from autoprune.errors import CheckpointError, ConfigError
from autoprune.metrics import BITS_PER_MB
from autoprune.progress import LoggingObserver
from autoprune.quant import QuantConv2d
from autoprune.train import evaluate

SPEC = QuantSpec.from_bits(2)


class SmallNet(nn.Module):
    """A user's own network for 8x8 grey digits (float: the search quantizes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_every_public_name_resolves_and_none_is_a_subpackage() -> None:
    assert set(autoprune.__all__) >= {
        "create_model",
        "quantize_",
        "prune_",
        "load",
        "inspect",
        "measure",
        "QuantSpec",
        "FinetuneConfig",
        "TrainConfig",
        "DataConfig",
        "train_baseline",
        "run_search",
        "export_trial",
        "SearchResult",
    }
    for name in autoprune.__all__:
        assert getattr(autoprune, name) is not None, name
        # a function named like a subpackage would be replaced by it once that is imported
        assert importlib.util.find_spec(f"autoprune.{name}") is None, name
    for package in ("export", "search", "train"):
        importlib.import_module(f"autoprune.{package}")
    assert callable(autoprune.run_search) and callable(autoprune.export_trial)


def test_quantize_and_prune_in_place_give_a_smaller_working_network() -> None:
    model = SmallNet()
    assert autoprune.quantize_(model, SPEC) is model
    assert sum(isinstance(m, QuantConv2d) for m in model.modules()) == 3
    before = autoprune.measure(model, (1, 8, 8))
    kept = autoprune.prune_(model, {"features.0": 0.5}, input_shape=(1, 8, 8))
    assert kept["features.0"] == 4 and model.features[0].out_channels == 4
    after = autoprune.inspect(model, input_shape=(1, 8, 8))
    assert after.size_bits < before.size_bits
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)

    uniform = autoprune.prune_(model, 0.5, input_shape=(1, 8, 8), residual=False)
    assert uniform["features.3"] == 8 and uniform["features.0"] == 2  # ratios of what is left
    with pytest.raises(ConfigError, match="no channel group"):
        autoprune.prune_(model, {"nope": 0.5}, input_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="input_shape"):
        autoprune.inspect(model)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A trained in-memory network searched on in-memory data, in an in-memory study."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOPRUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
        torch.manual_seed(0)
        data = load_dataset("digits", max_train=300)
        assert isinstance(data, DataSplits)
        model = SmallNet()
        autoprune.train_baseline(
            model, data, quant=SPEC, config=TrainConfig(epochs=3, batch_size=16, lr=0.01)
        )
        result = autoprune.run_search(
            model,
            data,
            quant=SPEC,
            train=None,  # the trained network as it is
            trials=4,
            finetune=FinetuneConfig(steps=2, batch_size=16),
            device="cpu",
        )
        yield {"data": data, "model": model, "result": result}


def test_search_of_an_in_memory_network_and_data(searched: dict) -> None:
    result, data = searched["result"], searched["data"]
    assert isinstance(result.session.storage, optuna.storages.InMemoryStorage)  # storage None
    assert result.study.study_name.startswith(f"{SmallNet.__module__}:SmallNet@")
    complete = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    # the caller's network is the baseline as it is: its accuracy is the unpruned trial's
    assert result.session.baseline_val_accuracy == evaluate(searched["model"], data, "val").accuracy
    assert result.session.baseline_val_accuracy > 0.3  # trained, so accuracies mean something

    frame = result.pareto(all_trials=True)
    assert frame.attrs["groups"] == ["features.0", "features.3", "features.6"]
    assert list(frame.columns[-3:]) == frame.attrs["groups"]
    assert sorted(frame["trial"]) == [t.number for t in complete]
    assert set(frame.loc[frame["trial"] == 1, "features.3"]) == {0.2}  # uniform 0.2 probe


def test_build_replays_a_trial_to_its_stored_accuracy(searched: dict) -> None:
    result, data = searched["result"], searched["data"]
    for number in (1, 3):
        trial = result.trial(number)
        network = result.build(trial)
        assert evaluate(network, data, "val").accuracy == trial.values[0]
        size = autoprune.measure(network, (1, 8, 8)).size_bits
        assert size == trial.user_attrs["size_bits"]
    assert not network.training


def test_best_under_a_target_size(searched: dict) -> None:
    result = searched["result"]
    quantized = result.session.reference.quantized_size_bits
    trials = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    fitting = [t for t in trials if t.user_attrs["size_bits"] <= quantized / 2]
    assert fitting and len(fitting) < len(trials)  # the limit really excludes some trials
    best = result.best(target_size="50%")
    assert best.values[0] == max(t.values[0] for t in fitting)
    assert best.user_attrs["size_bits"] <= quantized / 2
    in_mb = result.best(target_size=best.user_attrs["size_bits"] / BITS_PER_MB)
    assert in_mb.values[0] == best.values[0]
    assert result.best().values[0] == max(t.values[0] for t in trials)
    with pytest.raises(ConfigError, match="larger target_size"):
        result.best(target_size=1e-9)


def test_export_of_in_memory_data_reloads_as_searched(searched: dict, tmp_path: Path) -> None:
    result, data = searched["result"], searched["data"]
    exported = result.export(3, tmp_path / "small.pt", finetune=None)  # the trial's replayed
    assert exported.val_accuracy == exported.searched_val_accuracy == result.trial(3).values[0]
    network = autoprune.load(tmp_path / "small.pt", model=searched["model"])
    assert evaluate(network, data, "val").accuracy == exported.val_accuracy
    assert autoprune.inspect(tmp_path / "small.pt", model=searched["model"]).kept_channels == (
        exported.kept_channels
    )


def test_a_float_module_is_quantized_on_a_copy_and_trained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_dataset("digits", max_train=64)
    model = SmallNet()
    with caplog.at_level(logging.INFO, logger="autoprune.progress"):
        result = autoprune.run_search(
            model,
            data,
            quant=SPEC,
            storage=str(tmp_path / "s.db"),
            train=TrainConfig(epochs=1, batch_size=32),
            trials=1,
            finetune=FinetuneConfig(steps=1),
            device="cpu",
            observer=LoggingObserver(),
        )
    assert capsys.readouterr().out == ""  # the library prints nothing
    assert [r.getMessage() for r in caplog.records] == [
        "trial 0: val acc "
        + (f"{100 * result.trial(0).values[0]:.2f} %, {result.trial(0).values[1]:.4f} MB")
    ]
    assert not any(isinstance(m, QuantConv2d) for m in model.modules())  # the caller's: float
    assert any(isinstance(m, QuantConv2d) for m in result.session.baseline.modules())
    again = autoprune.load_search(str(tmp_path / "s.db"), model=model)
    assert again.pareto(all_trials=True)["val_accuracy"].tolist() == [result.trial(0).values[0]]


def test_library_errors_name_parameters() -> None:
    with pytest.raises(ConfigError, match="quant"):
        autoprune.run_search(autoprune.quantize_(SmallNet(), SPEC), "digits", trials=1)
    with pytest.raises(ConfigError, match="storage is None"):
        autoprune.load_search(None)


def test_one_module_quantized_two_ways_keeps_two_baselines(
    searched: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each study's export reloads its own baseline: the cached file of a caller's network is
    named by its quantization too, so a second search does not overwrite the first's."""
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path))
    torch.manual_seed(0)
    network, paths, results = SmallNet(), [], []
    for spec in (SPEC, QuantSpec.from_bits(4)):
        result = autoprune.run_search(
            network,
            searched["data"],
            quant=spec,
            train=None,
            trials=1,
            finetune=FinetuneConfig(steps=1, batch_size=16),
            device="cpu",
        )
        paths.append(result.session.baseline_path)
        results.append(result)
    assert paths[0] != paths[1]
    for path, bits in zip(paths, (2, 4), strict=True):  # the first study's is still its own
        stored = autoprune.inspect(path, model=network)
        assert stored.quant_label == f"w{bits}a{bits}"
    # were it overwritten all the same, export refuses to prune another network
    from autoprune.search.export import export_trial as export_study_trial

    Path(paths[0]).write_bytes(Path(paths[1]).read_bytes())
    with pytest.raises(CheckpointError, match=r"holds quantization w4a4 where .* searched"):
        export_study_trial(  # the baseline is read from its file, as `autoprune export` does
            results[0].study,
            0,
            tmp_path / "x.pt",
            model=network,
            data=searched["data"],
            finetune=None,
            device="cpu",
        )


def test_a_dry_run_measures_a_float_network_as_the_search_would_hold_it(searched: dict) -> None:
    """Quantized, on a copy: the caller's float module stays as it was (its mode too)."""
    from autoprune.search import SearchRequest
    from autoprune.search.dryrun import plan_search

    network = SmallNet().train()
    before = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    plan = plan_search(
        SearchRequest(
            model=network,
            dataset=searched["data"],
            quant=SPEC,
            train=None,
            storage=None,
            finetune=FinetuneConfig(steps=1, batch_size=16),
            device="cpu",
        )
    )
    float_bits = autoprune.measure(network, (1, 8, 8)).size_bits
    assert plan.quantized_size_bits < float_bits / 4  # 2-bit inner layers, not 32-bit ones
    assert network.training and not any(isinstance(m, QuantConv2d) for m in network.modules())
    after = network.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
