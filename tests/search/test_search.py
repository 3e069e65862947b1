"""Search spaces, storages and the study lifecycle (resume after an interruption)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from autoprune.config import TrainConfig
from autoprune.errors import ConfigError, StorageError
from autoprune.models import MODELS, create_model
from autoprune.quant import QuantSpec
from autoprune.search import (
    FinetuneConfig,
    SearchObserver,
    SearchRequest,
    SearchSession,
    load_search_space,
    open_storage,
    parse_search_space,
)
from autoprune.search.space import bundled_search_space_file

EXAMPLE = torch.zeros(1, 3, 8, 8)


def test_parse_defaults_and_overrides() -> None:
    space = parse_search_space(
        "model: m\nratio: {high: 0.5}\ngroups:\n  - a\n  - {name: b, high: 0.8, step: 0.1}\n"
    )
    assert space.names == ["a", "b"]
    assert (space.groups[0].low, space.groups[0].high, space.groups[0].step) == (0.0, 0.5, 0.05)
    assert (space.groups[1].high, space.groups[1].step) == (0.8, 0.1)
    assert space.uniform(0.6) == {"a": 0.5, "b": 0.6}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups: [a, b\n", "not valid YAML at line"),
        ("model: m\n", "non-empty 'groups'"),
        ("groups: [{name: a, high: 1.5}]\n", "0 <= low <= high < 1"),
        ("groups: [{high: 0.5}]\n", "'name'"),
    ],
)
def test_malformed_spaces_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_search_space(text, "space.yaml")


def test_space_naming_missing_groups_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: resnet20\ngroups: [layers.9.0.conv1]\n")
    with pytest.raises(ConfigError, match=r"does not have \(layers.9.0.conv1\)"):
        load_search_space("resnet20", create_model("resnet20", bits=2), EXAMPLE, path)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_has_a_valid_space(name: str) -> None:
    """Bundled files must match their model; the others get a generated space."""
    space = load_search_space(name, create_model(name, bits=2), EXAMPLE)
    assert space.groups
    assert (bundled_search_space_file(name) is not None) == (name in ("resnet18", "resnet20"))


def test_storages(tmp_path: Path) -> None:
    journal = open_storage(str(tmp_path / "studies.log"))
    optuna.create_study(storage=journal, study_name="j")
    assert optuna.study.get_all_study_names(journal) == ["j"]
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(str(tmp_path / "missing" / "x.db"))
    with pytest.raises(StorageError, match="cannot open storage"):
        open_storage("notadb+nodriver://host/db")


class _InterruptAt(SearchObserver):
    def __init__(self, trial: int) -> None:
        self.trial = trial
        self.current = -1

    def trial_started(self, number: int, ratios: dict[str, float]) -> None:
        self.current = number

    def finetune_step(self, done: int, total: int) -> None:
        if self.current == self.trial:
            raise KeyboardInterrupt


def _request(storage: Path, trials: int) -> SearchRequest:
    return SearchRequest(
        model="tiny_cnn",
        quant=QuantSpec.from_bits(1),
        trials=trials,
        storage=str(storage),
        study_name="s",
        finetune=FinetuneConfig(steps=2),
        train=TrainConfig(epochs=1),
        device="cpu",
        max_train=200,
    )


def test_interrupted_search_keeps_complete_trials_and_resumes(tmp_path: Path) -> None:
    storage = tmp_path / "s.db"
    session = SearchSession(_request(storage, 4))
    with pytest.raises(KeyboardInterrupt):
        session.run(_InterruptAt(2))
    states = [t.state.name for t in session.study.trials]
    assert states[:3] == ["COMPLETE", "COMPLETE", "FAIL"]

    resumed = SearchSession(_request(storage, 4))
    assert not resumed.created
    resumed.run()
    complete = [t for t in resumed.study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    # the interrupted reference trial (uniform 0.40) was enqueued again and completed
    assert "uniform 0.40" in {t.user_attrs.get("reference") for t in complete}
