"""Learning-rate schedules, optimizer choice, mixed-precision resolution, loop plumbing."""

from __future__ import annotations

import math

import pytest
import torch

from autoprune.config import TrainConfig, config_key
from autoprune.data import load_dataset
from autoprune.errors import ConfigError
from autoprune.models import create_model
from autoprune.train import LRSchedule, Trainer, finetune, resolve_precision, train
from autoprune.train.loops import steps_per_epoch

DATA = load_dataset("digits", max_train=64)


@pytest.mark.parametrize(
    ("step", "factor"),
    [
        (0, 1.0),
        (25, (1 + math.cos(math.pi / 4)) / 2),
        (50, 0.5),
        (75, (1 + math.cos(0.75 * math.pi)) / 2),
        (99, (1 + math.cos(0.99 * math.pi)) / 2),
    ],
)
def test_cosine_factor(step: int, factor: float) -> None:
    assert LRSchedule("cosine", 100).factor(step) == pytest.approx(factor, abs=1e-12)


@pytest.mark.parametrize(
    ("step", "factor"), [(0, 1.0), (49, 1.0), (50, 0.1), (74, 0.1), (75, 0.01), (99, 0.01)]
)
def test_step_factor_decays_at_half_and_three_quarters(step: int, factor: float) -> None:
    assert LRSchedule("step", 100).factor(step) == pytest.approx(factor)


def test_warmup_is_linear_then_the_schedule_covers_the_rest() -> None:
    schedule = LRSchedule("cosine", 110, warmup_steps=10)
    assert [schedule.factor(t) for t in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert schedule.factor(10) == 1.0 and schedule.factor(60) == pytest.approx(0.5)
    stepped = LRSchedule("step", 110, warmup_steps=10)
    assert stepped.factor(59) == 1.0 and stepped.factor(60) == pytest.approx(0.1)
    assert stepped.factor(85) == pytest.approx(0.01)


def test_cosine_matches_torch_cosine_annealing() -> None:
    """The closed form equals torch's CosineAnnealingLR, the schedule used before."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=5e-3)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=37)
    schedule = LRSchedule("cosine", 37)
    for step in range(37):
        assert 5e-3 * schedule.factor(step) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()


def _trainer(**options) -> Trainer:
    torch.manual_seed(0)
    model = create_model("tiny_cnn", bits=2, in_channels=1)
    return Trainer(model, DATA, total_steps=8, batch_size=16, lr=0.1, **options)


def test_optimizer_selection() -> None:
    adam = _trainer().optimizer
    assert isinstance(adam, torch.optim.Adam)
    sgd = _trainer(optimizer="sgd", weight_decay=1e-4).optimizer
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] and group["weight_decay"] == 1e-4


def test_trainer_sets_the_scheduled_lr_on_every_step() -> None:
    trainer = _trainer(schedule="step")
    seen = []
    trainer.run(
        8, progress=lambda done, total: seen.append(trainer.optimizer.param_groups[0]["lr"])
    )
    assert seen == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    assert trainer.step == 8
    assert trainer.run(5) == []  # never past total_steps


def test_run_epoch_is_one_pass_with_the_mean_loss() -> None:
    trainer = _trainer()
    loss = trainer.run_epoch()
    assert trainer.step == steps_per_epoch(DATA, 16) == 4
    assert 0 < loss < 10


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == torch.float32
    assert resolve_precision("off", cpu) == torch.float32
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_precision("on", cpu)
    with pytest.raises(ConfigError, match="unknown amp setting"):
        resolve_precision("fp8", cpu)


def test_train_and_finetune_keep_their_signatures_and_learn() -> None:
    torch.manual_seed(0)
    model = create_model("tiny_cnn", bits=2, in_channels=1)
    first = train(model, DATA, epochs=3, batch_size=16, lr=5e-3)
    later = finetune(model, DATA, steps=12, batch_size=16, lr=1e-3)
    assert math.isfinite(first) and later < first
    assert math.isnan(finetune(model, DATA, steps=0, batch_size=16, lr=1e-3))


def test_new_train_fields_keep_old_keys_and_read_old_dicts() -> None:
    old = {"epochs": 15, "batch_size": 128, "lr": 5e-3, "weight_decay": 0.0, "seed": 0}
    assert TrainConfig().key_dict() == old  # cache keys unchanged
    assert TrainConfig().to_dict() == {
        **old,
        "optimizer": "adam",
        "schedule": "cosine",
        "warmup_epochs": 0.0,
        "amp": "auto",
    }  # every default
    assert config_key(TrainConfig()) == config_key(TrainConfig.from_dict(old))
    sgd = TrainConfig(optimizer="sgd", schedule="step", warmup_epochs=1.0, amp="off")
    assert TrainConfig.from_dict(sgd.to_dict()) == sgd
    assert config_key(sgd) != config_key(TrainConfig())


def _interrupt_at(step: int):
    def progress(done: int, total: int) -> None:
        if done == step:
            raise KeyboardInterrupt

    return progress


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixed_precision_on_cuda(tmp_path) -> None:
    """CUDA trains under autocast, interrupts and resumes; the weights stay float32."""
    from autoprune.config import DataConfig, ModelConfig
    from autoprune.models import load
    from autoprune.train import TrainingInterrupted, train_checkpoint

    cuda = torch.device("cuda")
    data = load_dataset("digits", max_train=256, device=cuda)
    model_config = ModelConfig.for_data("tiny_resnet", 2, data)
    data_config = DataConfig("digits", max_train=256)
    config = TrainConfig(epochs=3, batch_size=64)
    path = tmp_path / "amp.pt"
    with pytest.raises(TrainingInterrupted):
        train_checkpoint(
            path, model_config, data_config, config, data, device=cuda, progress=_interrupt_at(6)
        )
    result = train_checkpoint(path, model_config, data_config, config, data, device=cuda)
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert result.precision == expected and result.epochs_resumed == 1
    assert all(math.isfinite(r.train_loss) for r in result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss
    model = load(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())


class _EmptyTrainSplit:
    """An ``ImageData`` whose training split yields nothing."""

    name, num_classes, in_channels, image_size, classes = "empty", 10, 1, 8, ()

    def num_examples(self, split: str) -> int:
        return 0

    def batches(self, split, batch_size, *, train=False, generator=None):
        return iter(())


def test_an_empty_training_split_is_an_error_not_a_hang() -> None:
    model = create_model("tiny_cnn", bits=2, in_channels=1)
    with pytest.raises(ConfigError, match="training split is empty"):
        finetune(model, _EmptyTrainSplit(), steps=3, batch_size=8, lr=1e-3)
