"""Export rebuilds a trial from the study's baseline, so it must be the network searched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoprune.config import DataConfig, ModelConfig, TrainConfig
from autoprune.data import load_dataset
from autoprune.errors import CheckpointError
from autoprune.quant import QuantSpec
from autoprune.search import FinetuneConfig, SearchRequest, SearchSession
from autoprune.search.export import export_trial
from autoprune.train import train_checkpoint


def _train(path: Path, seed: int) -> None:
    data = load_dataset("digits", max_train=64)
    torch.manual_seed(seed)
    train_checkpoint(
        path,
        ModelConfig.for_data("tiny_resnet", 2, data),
        DataConfig("digits", max_train=64),
        TrainConfig(epochs=1, batch_size=32, seed=seed),
        data,
        device=torch.device("cpu"),
    )


def test_export_refuses_a_checkpoint_rewritten_since_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "cache"))
    checkpoint = tmp_path / "base.pt"
    _train(checkpoint, seed=0)
    request = SearchRequest(
        quant=QuantSpec.from_bits(2),
        trials=2,
        storage=str(tmp_path / "study.db"),
        study_name="s",
        finetune=FinetuneConfig(steps=1),
        checkpoint=str(checkpoint),
        device="cpu",
        max_train=64,
    )
    session = SearchSession(request)
    session.run()
    exported = export_trial(session.study, 1, tmp_path / "a.pt", device="cpu", finetune=None)
    assert exported.val_accuracy == exported.searched_val_accuracy

    _train(tmp_path / "other.pt", seed=1)
    (tmp_path / "other.pt").replace(checkpoint)  # retrained: the trials' ratios are not for it
    with pytest.raises(CheckpointError, match="has changed since study 's' searched it"):
        export_trial(session.study, 1, tmp_path / "b.pt", device="cpu", finetune=None)
    assert not (tmp_path / "b.pt").exists()
