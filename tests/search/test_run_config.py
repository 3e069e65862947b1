"""The versioned run config: every default stored, exact round trip, legacy study dicts read
upgraded, newer versions refused; study identity on resume; one source of calibration batches."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import optuna
import pytest
import torch

import autoprune
from autoprune.checkpoint import save_checkpoint
from autoprune.config import (
    CONFIG_VERSION,
    BaselineConfig,
    CalibrationConfig,
    DataConfig,
    FinetuneConfig,
    LayerwiseConfig,
    ModelConfig,
    RunConfig,
    SearchConfig,
    TrainConfig,
)
from autoprune.data import calibration_batches, load_dataset
from autoprune.errors import ConfigError
from autoprune.export import pruning
from autoprune.export.pruning import calibration_from_checkpoint, prune_checkpoint
from autoprune.models import build_model
from autoprune.prune import prune_
from autoprune.quant import QuantSpec
from autoprune.search import objective
from autoprune.search.export import export_trial
from autoprune.search.layerwise import LayerwiseSearch
from autoprune.search.objective import CandidateEvaluator
from autoprune.search.pareto import trials_frame
from autoprune.search.space import GroupRange, SearchSpace
from autoprune.search.study import (
    CONFIG_ATTR,
    open_study,
    run_config_of,
    study_summaries,
)

MODEL = ModelConfig("tiny_cnn", QuantSpec.from_bits(2).to_dict(), 10, 1, 8)
# a spec stored before edge_bits existed
OLD_QUANT = {k: v for k, v in QuantSpec.from_bits(2).to_dict().items() if k != "edge_bits"}
SPACE = {
    "model": "tiny_cnn",
    "groups": [{"name": "features.3", "low": 0.0, "high": 0.6, "step": 0.05}],
}


def _joint(**finetune: object) -> RunConfig:
    return RunConfig(
        model=MODEL,
        data=DataConfig("digits", val_fraction=0.2, seed=3, max_train=500, augment="none"),
        baseline=BaselineConfig(train=TrainConfig(epochs=2, optimizer="sgd")),
        finetune=FinetuneConfig(**finetune),  # type: ignore[arg-type]
        search=SearchConfig(
            criterion="taylor",
            seed=3,
            sampler="tpe",
            space=SPACE,
            calibration=CalibrationConfig(batches=2, batch_size=32, seed=3),
        ),
    )


def _layerwise() -> RunConfig:
    return RunConfig(
        model=MODEL,
        data=DataConfig("digits"),
        baseline=BaselineConfig(checkpoint="0123456789abcdef"),
        finetune=None,
        search=SearchConfig(method="layerwise", layerwise=LayerwiseConfig(alpha=2.0), space=SPACE),
    )


@pytest.mark.parametrize("config", [_joint(steps=7, bn_batches=2), _layerwise()])
def test_the_run_config_round_trips_through_json_exactly(config: RunConfig) -> None:
    stored = json.loads(json.dumps(config.to_dict()))
    assert RunConfig.from_dict(stored) == config
    assert RunConfig.from_dict(stored).to_dict() == config.to_dict()
    assert stored["version"] == CONFIG_VERSION == 1


def test_every_default_is_stored_explicitly() -> None:
    stored = _joint().to_dict()
    assert set(stored["finetune"]) == {
        "steps", "lr", "batch_size", "warmup", "distill", "temperature", "bn_batches"
    }  # fmt: skip
    assert stored["data"]["content"] is None and stored["data"]["augment"] == "none"
    assert stored["baseline"]["train"]["warmup_epochs"] == 0.0  # a default kept out of cache keys
    assert stored["baseline"]["train"]["amp"] == "auto"
    assert stored["search"]["space"]["residual"] is False
    assert stored["model"]["quant"]["edge_bits"] == QuantSpec.from_bits(2).edge_bits
    assert _layerwise().to_dict()["finetune"] is None  # the layer-wise method has none


def test_a_newer_or_damaged_version_is_refused_in_one_line() -> None:
    newer = {**_joint().to_dict(), "version": 7}
    with pytest.raises(ConfigError) as raised:
        RunConfig.from_dict(newer, what="study config")
    assert str(raised.value) == (
        "study config version 7 is newer than this autoprune reads (1): upgrade autoprune"
    )
    with pytest.raises(ConfigError, match="unreadable version 'x'"):
        RunConfig.from_dict({**_joint().to_dict(), "version": "x"})
    with pytest.raises(ConfigError, match="malformed"):
        RunConfig.from_dict({"version": 1, "model": MODEL.to_dict()})


def _legacy_joint() -> dict:
    """What search/session.py stored as a study's config before version 1."""
    return {
        "model": {**MODEL.to_dict(), "quant": OLD_QUANT},
        "data": {"name": "digits", "val_fraction": 0.1, "seed": 0, "max_train": None},
        "baseline": {
            "train": {"epochs": 15, "batch_size": 128, "lr": 5e-3, "weight_decay": 0.0, "seed": 0}
        },
        "criterion": "taylor",
        "finetune": {"steps": 40, "lr": 1e-3, "batch_size": 64},
        "space": SPACE,
        "seed": 5,
    }


def test_a_legacy_study_config_reads_with_the_then_defaults() -> None:
    config = RunConfig.from_dict(_legacy_joint())
    assert config.finetune == FinetuneConfig(
        steps=40, lr=1e-3, batch_size=64, warmup=0.0, distill=0.0, temperature=4.0, bn_batches=0
    )
    assert config.baseline.train == TrainConfig()
    assert config.data == DataConfig("digits")
    assert config.model.quant == QuantSpec.from_bits(2).to_dict()  # edge_bits filled in
    search = config.search
    assert (search.criterion, search.seed, search.sampler, search.method) == (
        "taylor", 5, None, "joint"
    )  # fmt: skip
    # then: four batches of the fine-tuning batch size, drawn with seed 0
    assert search.calibration == CalibrationConfig(batches=4, batch_size=64, seed=0)
    # the upgraded form is a version-1 config like any other
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_legacy_layerwise_config_has_no_finetune() -> None:
    legacy = {**_legacy_joint(), "criterion": "angle-next", "method": "layerwise",
              "layerwise": LayerwiseConfig(evaluations=5).to_dict()}  # fmt: skip
    del legacy["finetune"]
    config = RunConfig.from_dict(legacy)
    assert config.finetune is None and config.search.method == "layerwise"
    assert config.search.layerwise == LayerwiseConfig(evaluations=5)
    assert config.search.calibration is None  # a data-free criterion draws none


def test_resuming_names_what_changed() -> None:
    storage = optuna.storages.InMemoryStorage()
    study, created = open_study(storage, "s", config=_joint(steps=40))
    assert created and run_config_of(study) == _joint(steps=40)
    assert open_study(storage, "s", config=_joint(steps=40))[1] is False
    with pytest.raises(ConfigError) as raised:
        open_study(storage, "s", config=_joint(steps=80))
    message = str(raised.value)
    assert "finetune.steps: 40 in the study vs 80 now" in message
    assert "--" not in message  # the library speaks of settings, not CLI flags


def _legacy_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    study = optuna.create_study(
        storage=storage, study_name="old", directions=["maximize", "minimize"]
    )
    study.set_user_attr(CONFIG_ATTR, _legacy_joint())
    return study


def test_a_legacy_study_resumes_on_its_upgraded_form() -> None:
    storage = optuna.storages.InMemoryStorage()
    _legacy_study(storage)
    same = RunConfig.from_dict(_legacy_joint())
    # any sampler may resume it (it recorded none); the same settings are accepted
    resumed = SearchConfig.from_dict({**same.search.to_dict(), "sampler": "tpe"})
    open_study(storage, "old", config=RunConfig(**{**same.__dict__, "search": resumed}))
    # a default that changed since (bn_batches now 8) is named
    changed = RunConfig(
        **{**same.__dict__, "finetune": FinetuneConfig(batch_size=64, bn_batches=8)}
    )
    with pytest.raises(ConfigError, match=r"finetune\.bn_batches: 0 in the study vs 8 now"):
        open_study(storage, "old", config=changed)


def test_old_and_newer_studies_stay_listed_and_tabulated() -> None:
    storage = optuna.storages.InMemoryStorage()
    old = _legacy_study(storage)
    old.add_trial(
        optuna.trial.create_trial(
            params={"features.3": 0.2},
            distributions={"features.3": optuna.distributions.FloatDistribution(0.0, 0.6)},
            values=[0.9, 0.01],  # an old trial: its size only in the second objective
        )
    )
    newer = optuna.create_study(storage=storage, study_name="newer", directions=["maximize"])
    newer.set_user_attr(CONFIG_ATTR, {**_joint().to_dict(), "version": 9})
    summaries = {s["study"]: s for s in study_summaries(storage)}
    assert summaries["old"]["model"] == "tiny_cnn" and summaries["old"]["method"] == "joint"
    assert summaries["newer"]["model"] == "?"  # listed, not refused
    frame = trials_frame(old, pareto_only=False)
    assert frame["size_mb"].tolist() == pytest.approx([0.01])
    assert list(frame.attrs["groups"]) == ["features.3"]
    assert trials_frame(newer, pareto_only=False).empty
    with pytest.raises(ConfigError, match="newer than this autoprune reads"):
        export_trial(newer, 0, "unused.pt")


# -- one source of calibration batches ---------------------------------------------------------


def test_search_layerwise_and_prune_score_the_same_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the prune call site loads the recorded dataset for real, once (loading digits is slow)
    loaded: dict[str, object] = {}

    def load_once(*args: object, **options: object) -> object:
        key = repr((args, sorted(options.items())))
        return loaded.setdefault(key, load_dataset(*args, **options))  # type: ignore[arg-type]

    monkeypatch.setattr(pruning, "load_dataset", load_once)
    data = load_dataset("digits", max_train=600)
    data_config = DataConfig.of(data, "digits", max_train=600)
    model_config = ModelConfig.for_data("tiny_cnn", QuantSpec.from_bits(2), data)
    torch.manual_seed(0)
    baseline = build_model(model_config).eval()
    path = tmp_path / "base.pt"
    save_checkpoint(path, baseline, model_config, metadata={"data": data_config.to_dict()})
    seed = 3
    calibration = CalibrationConfig(seed=seed)  # what a search with this seed records

    evaluator = CandidateEvaluator(
        baseline=baseline,
        data=data,
        model_config=model_config,
        criterion="taylor",
        finetune_config=FinetuneConfig(),
        calibration_config=calibration,
    )
    layerwise = LayerwiseSearch(
        parent=optuna.create_study(),
        storage=optuna.storages.InMemoryStorage(),
        space=SearchSpace("tiny_cnn", (GroupRange("features.3", 0.0, 0.5, 0.25),)),
        baseline=baseline,
        data=data,
        model_config=model_config,
        criterion="taylor",
        config=LayerwiseConfig(),
        sampler="random",
        seed=seed,
        state_dir=tmp_path / "lw",
        calibration_config=calibration,
    )
    payload = torch.load(path, weights_only=True)
    from_checkpoint = calibration_from_checkpoint(payload, path, calibration=calibration)
    searched = evaluator.calibration()
    assert searched is not None and len(searched) == calibration.batches
    for other in (layerwise.calibration, from_checkpoint):
        assert other is not None and len(other) == len(searched)
        for (x, y), (x2, y2) in zip(searched, other, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
    # another seed draws other batches: the comparison above can fail
    other_seed = calibration_batches(data, **CalibrationConfig(seed=4).to_dict())
    assert not torch.equal(other_seed[0][0], searched[0][0])
    assert len(loaded) == 1

    # `prune --criterion taylor --seed 3` removes the channels the search's candidate removes
    prune_checkpoint(path, tmp_path / "p.pt", ratios={"features.3": 0.5}, criterion="taylor",
                     seed=seed)  # fmt: skip
    pruned = autoprune.load(tmp_path / "p.pt")
    expected = copy.deepcopy(baseline)
    example = torch.zeros(1, *model_config.input_shape)
    with torch.enable_grad():
        prune_(expected, {"features.3": 0.5}, criterion="taylor", example_input=example,
               calibration=searched, seed=seed)  # fmt: skip
    for a, b in zip(expected.state_dict().values(), pruned.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_finetune_config_is_one_type_with_a_recover_function() -> None:
    assert objective.FinetuneConfig is FinetuneConfig  # re-exported, not a copy
    assert FinetuneConfig.from_dict(FinetuneConfig(steps=3).to_dict()) == FinetuneConfig(steps=3)
