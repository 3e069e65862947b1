"""Recorded, resumable training: exact resume after Ctrl-C, history, refusals, equivalences."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import autoprune
import autoprune.checkpoint
from autoprune.config import DataConfig, ModelConfig, TrainConfig
from autoprune.data import load_dataset
from autoprune.errors import CheckpointError, ConfigError
from autoprune.models import build_model
from autoprune.train import (
    TrainingInterrupted,
    make_trainer,
    obtain_baseline,
    train_checkpoint,
)
from autoprune.train.loops import steps_per_epoch

CPU = torch.device("cpu")
DATA_CONFIG = DataConfig("digits", max_train=96)
DATA = load_dataset("digits", max_train=96)
MODEL = ModelConfig.for_data("tiny_cnn", 2, DATA)
ADAM = TrainConfig(epochs=3, batch_size=32, lr=5e-3)
SGD = TrainConfig(
    epochs=3,
    batch_size=32,
    lr=0.05,
    optimizer="sgd",
    schedule="step",
    warmup_epochs=1,
    weight_decay=1e-4,
)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return autoprune.load(path).state_dict()


def _interrupt_at(step: int):
    def progress(done: int, total: int) -> None:
        if done == step:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize("config", [ADAM, SGD], ids=["adam-cosine", "sgd-step-warmup"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, config: TrainConfig) -> None:
    straight = train_checkpoint(tmp_path / "a.pt", MODEL, DATA_CONFIG, config, DATA, device=CPU)
    per_epoch = steps_per_epoch(DATA, config.batch_size)
    path = tmp_path / "b.pt"
    with pytest.raises(TrainingInterrupted) as interrupted:
        train_checkpoint(
            path,
            MODEL,
            DATA_CONFIG,
            config,
            DATA,
            device=CPU,
            progress=_interrupt_at(per_epoch + 2),  # mid-way through epoch 2
        )
    assert interrupted.value.epochs_saved == 1 and isinstance(interrupted.value, KeyboardInterrupt)
    assert not path.with_name("b.pt.partial").exists()
    saved = torch.load(path, weights_only=True)  # the epoch-1 state is plain data
    assert saved["training"]["epochs_done"] == 1 and not saved["training"]["complete"]
    assert [r["epoch"] for r in saved["metadata"]["history"]] == [1]
    autoprune.load(path)  # usable as a model already

    resumed = train_checkpoint(path, MODEL, DATA_CONFIG, config, DATA, device=CPU)
    assert resumed.epochs_resumed == 1
    expected, got = _weights(tmp_path / "a.pt"), _weights(path)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.test_accuracy == straight.test_accuracy
    # the resumed history continues the saved one: epoch 1 as recorded, 2 and 3 equal
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in straight.history]
    assert [r.val_accuracy for r in resumed.history] == [r.val_accuracy for r in straight.history]


def test_final_checkpoint_records_history_and_drops_resume_state(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    seen = []
    result = train_checkpoint(
        path, MODEL, DATA_CONFIG, ADAM, DATA, device=CPU, on_epoch=seen.append
    )
    assert [r.epoch for r in seen] == [1, 2, 3] and tuple(seen) == result.history
    payload = torch.load(path, weights_only=True)
    assert payload["training"] == {"epochs_done": 3, "complete": True}
    metadata = payload["metadata"]
    assert metadata["train"] == ADAM.to_dict() and metadata["data"] == DATA_CONFIG.to_dict()
    assert metadata["test_accuracy"] == result.test_accuracy
    assert metadata["val_accuracy"] == result.history[-1].val_accuracy == result.val_accuracy
    assert metadata["precision"] == "float32"
    assert [r["epoch"] for r in metadata["history"]] == [1, 2, 3]
    assert all(r["seconds"] > 0 and r["train_loss"] > 0 for r in metadata["history"])
    # cosine: the learning rate of each epoch's last step falls
    lrs = [r["lr"] for r in metadata["history"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < ADAM.lr
    assert result.seconds == pytest.approx(sum(r.seconds for r in result.history))

    # rerunning the finished command trains nothing and reports the same results
    again = train_checkpoint(path, MODEL, DATA_CONFIG, ADAM, DATA, device=CPU)
    assert again.epochs_resumed == 3 and again.history == result.history
    assert again.test_accuracy == result.test_accuracy and again.size_bits == result.size_bits


def test_same_weights_as_the_cached_baseline(tmp_path: Path) -> None:
    """Per-epoch validation and saving do not perturb training: both paths train alike."""
    result = train_checkpoint(tmp_path / "a.pt", MODEL, DATA_CONFIG, SGD, DATA, device=CPU)
    baseline = obtain_baseline(MODEL, DATA_CONFIG, SGD, DATA, cache_dir=tmp_path, device=CPU)
    expected = _weights(result.path)
    assert all(torch.equal(v, baseline.model.state_dict()[k]) for k, v in expected.items())
    assert baseline.val_accuracy == result.val_accuracy


def test_a_different_config_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    one_epoch = replace(ADAM, epochs=1)
    train_checkpoint(path, MODEL, DATA_CONFIG, one_epoch, DATA, device=CPU)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as refused:
        train_checkpoint(path, MODEL, DATA_CONFIG, replace(one_epoch, lr=0.1), DATA, device=CPU)
    message = str(refused.value)
    assert "train.lr 0.005 -> 0.1" in message and "`resume='restart'`" in message
    assert "another `path`" in message
    assert "\n" not in message
    other_model = ModelConfig.for_data("tiny_cnn", 1, DATA)
    with pytest.raises(ConfigError, match=r"model\.quant\.wbits 2 -> 1"):
        train_checkpoint(path, other_model, DATA_CONFIG, one_epoch, DATA, device=CPU)
    with pytest.raises(ConfigError, match=r"data\.max_train 96 -> 64"):
        train_checkpoint(
            path, MODEL, replace(DATA_CONFIG, max_train=64), one_epoch, DATA, device=CPU
        )
    assert path.read_bytes() == before  # refused before touching the file
    restarted = train_checkpoint(
        path, MODEL, DATA_CONFIG, replace(one_epoch, lr=0.1), DATA, device=CPU, resume="restart"
    )
    assert restarted.epochs_resumed == 0
    assert torch.load(path, weights_only=True)["metadata"]["train"]["lr"] == 0.1


def test_unresumable_files_are_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"corrupt.*resume='restart'"):
        train_checkpoint(corrupt, MODEL, DATA_CONFIG, ADAM, DATA, device=CPU)
    plain = autoprune.checkpoint.save_checkpoint(tmp_path / "plain.pt", build_model(MODEL), MODEL)
    with pytest.raises(CheckpointError, match=r"no resumable training run.*resume='restart'"):
        train_checkpoint(plain, MODEL, DATA_CONFIG, ADAM, DATA, device=CPU)
    with pytest.raises(CheckpointError, match=r"nothing to resume.*resume='auto'"):
        train_checkpoint(
            tmp_path / "new.pt", MODEL, DATA_CONFIG, ADAM, DATA, device=CPU, resume="require"
        )


def test_invalid_training_options_fail_before_training() -> None:
    model = build_model(MODEL)
    with pytest.raises(ConfigError, match="did you mean sgd"):
        make_trainer(model, DATA, replace(ADAM, optimizer="sdg"), CPU)
    with pytest.raises(ConfigError, match="did you mean cosine"):
        make_trainer(model, DATA, replace(ADAM, schedule="cosin"), CPU)
    with pytest.raises(ConfigError, match="lower `warmup_epochs`"):
        make_trainer(model, DATA, replace(ADAM, warmup_epochs=5), CPU)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        make_trainer(model, DATA, replace(ADAM, amp="on"), CPU)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        make_trainer(model, DATA, replace(ADAM, epochs=0), CPU)
