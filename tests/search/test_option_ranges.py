"""Numeric parameters of the configs a search is made of are range-checked when built, so
library callers get the same one-line errors as the command line, before any work."""

from __future__ import annotations

import math

import pytest

from autoprune.config import DataConfig, TrainConfig, config_key
from autoprune.errors import ConfigError
from autoprune.search import FinetuneConfig
from autoprune.train import check_train_config

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FinetuneConfig(lr=NAN), "finetune lr must be a finite number > 0, got nan"),
        (lambda: FinetuneConfig(lr=0.0), "finetune lr must be a finite number > 0, got 0.0"),
        (lambda: FinetuneConfig(lr=INF), "finetune lr must be a finite number > 0, got inf"),
        (lambda: FinetuneConfig(steps=-1), "finetune steps must be >= 0, got -1"),
        (lambda: FinetuneConfig(batch_size=0), "finetune batch_size must be >= 1, got 0"),
        (lambda: TrainConfig(lr=-1), "train lr must be a finite number >= 0, got -1"),
        (lambda: TrainConfig(lr="fast"), "train lr must be a finite number >= 0, got 'fast'"),
        (lambda: TrainConfig(epochs=0), "train epochs must be >= 1, got 0"),
        (lambda: TrainConfig(epochs=2.5), "train epochs must be an integer >= 1, got 2.5"),
        (lambda: TrainConfig(epochs=True), "train epochs must be an integer >= 1, got True"),
        (lambda: TrainConfig(weight_decay=NAN), "train weight_decay must be a finite number"),
        (lambda: TrainConfig(warmup_epochs=-0.5), "train warmup_epochs must be a finite number"),
        (lambda: TrainConfig(seed=-1), "train seed must be in [0, 4294967296), got -1"),
        (lambda: TrainConfig(seed=2**32), "train seed must be in [0, 4294967296)"),
        (
            lambda: DataConfig(val_fraction=1.0),
            "data val_fraction must be a finite number in [0, 1)",
        ),
        (lambda: DataConfig(max_train=0), "data max_train must be >= 1, got 0"),
        (lambda: DataConfig(seed=10**400), "data seed must be in [0, 4294967296)"),  # no overflow
        (lambda: FinetuneConfig(distill=1.5), "finetune distill must be a finite number in [0, 1]"),
        (
            lambda: check_train_config(TrainConfig(optimizer="adamw")),
            "unknown optimizer 'adamw': did you mean adam?",
        ),
        (
            lambda: check_train_config(TrainConfig(schedule="linear")),
            "unknown learning-rate schedule 'linear'",
        ),
        (lambda: TrainConfig(amp="maybe"), "train amp must be one of auto, on, off"),
    ],
)
def test_out_of_range_parameters_are_one_line_config_errors(build, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_valid_edges_are_accepted_and_keys_unchanged() -> None:
    """lr 0 keeps a pretrained start's weights; the checks leave cache keys as they were."""
    TrainConfig(lr=0.0, seed=2**32 - 1, warmup_epochs=0)
    FinetuneConfig(steps=0, distill=1.0)
    DataConfig(val_fraction=0.0, max_train=1)
    # the key of the default configs, computed with the code before the checks (ba791ed)
    assert config_key(DataConfig(), TrainConfig()) == "5ca82d62aa8f8b99"


def test_a_search_refuses_an_unknown_optimizer_before_loading_data(monkeypatch) -> None:
    from autoprune.registry import UnknownNameError
    from autoprune.search import SearchRequest, SearchSession
    from autoprune.search import session as session_module

    def never(*args, **kwargs):
        raise AssertionError("data loaded before the request was checked")

    monkeypatch.setattr(session_module, "load_dataset", never)
    request = SearchRequest(model="tiny_cnn", train=TrainConfig(optimizer="adamw"), storage=None)
    with pytest.raises(UnknownNameError, match="did you mean adam"):
        SearchSession(request)
