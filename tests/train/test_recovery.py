"""Recovery of pruned candidates: BatchNorm re-estimation and distillation from the parent."""

from __future__ import annotations

import copy

import torch
from torch import nn

from autoprune.data import load_dataset
from autoprune.models import create_model
from autoprune.prune import prune_
from autoprune.search.objective import FinetuneConfig, recover
from autoprune.train import Distillation, finetune, recalibrate_batchnorm

DATA = load_dataset("digits", max_train=256)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("tiny_resnet", bits=2, in_channels=1)


def test_batchnorm_statistics_are_the_average_over_the_batches() -> None:
    model = _model()
    norm = (
        model.bn1
        if hasattr(model, "bn1")
        else next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    )
    captured: list[torch.Tensor] = []
    norm.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    norm.running_mean.fill_(123.0)
    model.eval()
    recalibrate_batchnorm(model, DATA, batches=3, batch_size=32, seed=1)
    assert not model.training and norm.momentum == 0.1  # state restored
    assert len(captured) == 3
    batch_means = torch.stack([x.mean(dim=(0, 2, 3)) for x in captured])
    torch.testing.assert_close(norm.running_mean, batch_means.mean(0), rtol=1e-5, atol=1e-5)
    again = _model()  # same batches for the same seed: the same statistics
    recalibrate_batchnorm(again, DATA, batches=3, batch_size=32, seed=1)
    torch.testing.assert_close(again.state_dict(), model.state_dict())


def test_the_distillation_loss_is_the_tempered_kl_mixed_with_cross_entropy() -> None:
    torch.manual_seed(0)
    teacher = nn.Linear(5, 3)
    images, labels = torch.randn(8, 5), torch.randint(0, 3, (8,))
    logits = torch.randn(8, 3)
    with torch.no_grad():
        target = teacher(images)
    t, weight = 3.0, 0.7
    p_teacher = torch.softmax(target / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(logits / t, dim=1))).sum(1).mean()
    expected = (1 - weight) * nn.functional.cross_entropy(logits, labels) + weight * t * t * kl
    loss = Distillation(teacher, weight=weight, temperature=t).loss(logits, images, labels)
    torch.testing.assert_close(loss, expected)
    # a student that already matches its teacher gets no distillation gradient
    same = target.clone().requires_grad_(True)
    Distillation(teacher, weight=1.0, temperature=t).loss(same, images, labels).backward()
    assert same.grad is not None and same.grad.abs().max() < 1e-6


def test_distillation_pulls_a_pruned_student_towards_its_parent() -> None:
    parent = _model()
    finetune(parent, DATA, steps=30, batch_size=64, lr=5e-3)
    parent.eval()
    images = next(DATA.batches("val", 256))[0]

    def gap(student: nn.Module) -> float:
        with torch.no_grad():
            return float((student.eval()(images) - parent(images)).abs().mean())

    pruned = copy.deepcopy(parent)
    prune_(pruned, {"layers.0.0.conv1": 0.5}, criterion="l1", example_input=images[:1])
    untouched = gap(pruned)
    config = FinetuneConfig(steps=10, lr=1e-3, batch_size=64, distill=1.0, bn_batches=4)
    recover(config, pruned, DATA, teacher=parent, seed=0)
    assert gap(pruned) < untouched
