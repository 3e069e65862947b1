"""Config defaults that depend on the data: the baseline recipe measured per dataset."""

from __future__ import annotations

import pytest

from autoprune.config import DATASET_TRAINING, TrainConfig
from autoprune.data import DATASETS


def test_every_dataset_recipe_names_a_dataset_and_valid_fields() -> None:
    for name, recipe in DATASET_TRAINING.items():
        assert name in DATASETS
        assert TrainConfig.recommended(name) == TrainConfig(**recipe)


def test_a_dataset_without_a_recipe_trains_with_the_defaults() -> None:
    assert TrainConfig.recommended("fashion-mnist") == TrainConfig()
    assert TrainConfig.recommended(None, epochs=3) == TrainConfig(epochs=3)


def test_what_the_user_asks_for_wins_and_a_shorter_run_keeps_the_warmup_share() -> None:
    recipe = DATASET_TRAINING["digits"]
    assert TrainConfig.recommended("digits", lr=None).lr == recipe["lr"]  # None: not asked
    assert TrainConfig.recommended("Digits", lr=0.01).lr == 0.01
    half = TrainConfig.recommended("digits", epochs=recipe["epochs"] // 2)
    assert half.warmup_epochs == pytest.approx(recipe["warmup_epochs"] / 2)
    assert TrainConfig.recommended("digits", epochs=4, warmup_epochs=0.0).warmup_epochs == 0.0
