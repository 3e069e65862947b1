"""The search-space YAML schema: every deviation is refused, naming the key and the fix."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
import torch

from autoprune.errors import ConfigError
from autoprune.models import create_model
from autoprune.search import load_search_space, parse_search_space
from autoprune.search.space import bundled_search_space_file

EXAMPLE = torch.zeros(1, 3, 8, 8)
GROUPS = "groups: [layers.0.0.conv1]\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # unknown keys, with the closest allowed one
        ("ratio: {low: 0.0, hihg: 0.5}\n" + GROUPS, ["'hihg' in ratio", "did you mean 'high'"]),
        ("ratios: {high: 0.5}\n" + GROUPS, ["'ratios'", "did you mean 'ratio'"]),
        ("group: [a]\n", ["'group'", "did you mean 'groups'"]),
        ("groups: [{name: a, hgh: 0.5}]\n", ["'hgh' in group a", "did you mean 'high'"]),
        ("colour: red\n" + GROUPS, ["unknown key 'colour'", "model, ratio, groups, residual"]),
        # wrong types
        ("ratio: 5\n" + GROUPS, ["ratio must be a mapping", "got 5"]),
        ("ratio: {high: abc}\n" + GROUPS, ["ratio: high must be a finite number", "'abc'"]),
        ("ratio: {high: true}\n" + GROUPS, ["ratio: high must be a finite number", "True"]),
        ("ratio: {high: .nan}\n" + GROUPS, ["ratio: high must be a finite number", "nan"]),
        ("ratio: {step: [0.1]}\n" + GROUPS, ["ratio: step must be a finite number"]),
        ("model: [resnet20]\n" + GROUPS, ["model must be a model name"]),
        ("groups: layers.0.0.conv1\n", ["groups must be a list"]),
        ("groups: [[a]]\n", ["each group must be a name or a mapping"]),
        ("groups: [{name: 3}]\n", ["group name 3"]),
        ("residual: 1\n" + GROUPS, ["'residual' must be true or false"]),
        # bounds
        ("ratio: {high: 5}\n" + GROUPS, ["ratio: high must lie in [0, 1)", "got 5"]),
        ("ratio: {high: 1.0}\n" + GROUPS, ["ratio: high must lie in [0, 1)"]),
        ("ratio: {low: -0.1}\n" + GROUPS, ["ratio: low must lie in [0, 1)"]),
        ("ratio: {low: 0.5, high: 0.3}\n" + GROUPS, ["low 0.5 is above high 0.3", "swap"]),
        ("ratio: {step: 0}\n" + GROUPS, ["ratio: step must be > 0"]),
        ("ratio: {step: -0.05}\n" + GROUPS, ["ratio: step must be > 0"]),
        ("groups: [{name: a, high: 1.5}]\n", ["group a: high must lie in [0, 1)"]),
        # steps that do not fit the range (Optuna would shrink it with only a warning)
        ("ratio: {high: 0.3, step: 0.5}\n" + GROUPS, ["ratio: step 0.5 does not fit", "step: 0.1"]),
        ("ratio: {high: 0.33}\n" + GROUPS, ["step 0.05 does not fit", "high: 0.3 or step: 0.01"]),
        ("groups: [{name: a, high: 0.8, step: 0.3}]\n", ["group a: step 0.3", "high: 0.6"]),
        # keys given twice (PyYAML would keep the last silently)
        ("ratio: {high: 0.5, high: 0.4}\n" + GROUPS, ["key 'high' appears twice", "line 1"]),
        ("model: a\nmodel: b\n" + GROUPS, ["key 'model' appears twice at line 2"]),
    ],
)
def test_schema_violations_name_the_key_and_the_fix(text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_search_space(text, "space.yaml")
    message = str(info.value)
    assert message.startswith("space.yaml") and "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "text",
    [
        "ratio: {low: 0.1, high: 0.3, step: 0.05}\n" + GROUPS,  # 0.3 - 0.1 is inexact in binary
        "ratio: {high: 0.7, step: 0.1}\n" + GROUPS,
        "ratio: {step: 5e-2}\n" + GROUPS,  # PyYAML reads 5e-2 as a string
        "ratio: {low: 0.2, high: 0.2}\n" + GROUPS,  # a fixed ratio
        "model: m\nratio:\n" + GROUPS,  # an empty ratio mapping: the defaults
        "groups: [{name: a, low: 0.1, high: 0.4, step: 0.1}, b]\n",
    ],
)
def test_valid_spaces_give_optuna_distributions_without_warnings(text: str) -> None:
    space = parse_search_space(text, "space.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when it has to shrink a range
        for group in space.groups:
            distribution = group.distribution()
            assert distribution.high == group.high and distribution.low == group.low


def test_a_step_that_fits_gives_every_ratio_of_the_range() -> None:
    space = parse_search_space("ratio: {low: 0.1, high: 0.3, step: 0.05}\n" + GROUPS)
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    study.optimize(lambda trial: sum(space.suggest(trial).values()), n_trials=10)
    seen = sorted({round(t.params["layers.0.0.conv1"], 10) for t in study.trials})
    assert seen == [0.1, 0.15, 0.2, 0.25, 0.3]


def test_a_model_line_for_another_model_is_refused(tmp_path: Path) -> None:
    bundled = bundled_search_space_file("resnet18")
    assert bundled is not None
    with pytest.raises(ConfigError, match=r"for model resnet18, not resnet20.*model: line"):
        load_search_space("resnet20", create_model("resnet20", bits=2), EXAMPLE, bundled)
    own = tmp_path / "s.yaml"
    own.write_text("model: ResNet20\n" + GROUPS)  # model names are case-insensitive
    space = load_search_space("resnet20", create_model("resnet20", bits=2), EXAMPLE, own)
    assert space.names == ["layers.0.0.conv1"]


def test_a_misspelt_group_gets_its_closest_match(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: resnet20\ngroups: [layers.0.0.conv]\n")
    with pytest.raises(ConfigError, match=r"\(layers.0.0.conv\) \(did you mean layers.0.0.conv1"):
        load_search_space("resnet20", create_model("resnet20", bits=2), EXAMPLE, path)


@pytest.mark.parametrize("name", ["resnet18", "resnet20"])
def test_bundled_files_pass_the_schema(name: str) -> None:
    path = bundled_search_space_file(name)
    assert path is not None
    space = parse_search_space(path.read_text(), str(path))
    assert space.model == name and space.groups
