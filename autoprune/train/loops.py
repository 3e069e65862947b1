"""Training, fine-tuning and evaluation loops over in-memory ``DataSplits``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from autoprune.data import DataSplits

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called after each optimisation step."""


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSplits, split: str, batch_size: int = 512) -> Evaluation:
    """Accuracy and mean cross-entropy of ``model`` on ``split`` ('train', 'val' or 'test')."""
    was_training = model.training
    model.eval()
    correct, loss, count = 0, 0.0, 0
    for images, labels in data.batches(split, batch_size):
        logits = model(images)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        count += labels.numel()
    model.train(was_training)
    return Evaluation(accuracy=correct / max(count, 1), loss=loss / max(count, 1))


def _optimise(
    model: nn.Module,
    data: DataSplits,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: Progress | None,
) -> float:
    """Adam with cosine decay for exactly ``steps`` steps over reshuffled epochs.

    Returns the mean training loss of the last 10 % of steps.
    """
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    # a CPU generator on every device: the data module draws its random numbers on the CPU,
    # which also makes a seed mean the same batches on CPU and CUDA
    generator = torch.Generator().manual_seed(seed)
    tail = max(1, steps // 10)
    tail_losses: list[float] = []
    step = 0
    while step < steps:
        for images, labels in data.batches("train", batch_size, train=True, generator=generator):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step > steps - tail:
                tail_losses.append(loss.item())
            if progress is not None:
                progress(step, steps)
            if step >= steps:
                break
    return sum(tail_losses) / max(len(tail_losses), 1)


def steps_per_epoch(data: DataSplits, batch_size: int) -> int:
    return math.ceil(data.train_x.shape[0] / batch_size)


def train(
    model: nn.Module,
    data: DataSplits,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> float:
    """Train ``epochs`` full passes; returns the final training loss."""
    steps = epochs * steps_per_epoch(data, batch_size)
    return _optimise(
        model,
        data,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        progress=progress,
    )


def finetune(
    model: nn.Module,
    data: DataSplits,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    progress: Progress | None = None,
) -> float:
    """A short fixed budget of ``steps`` optimisation steps (a pruned candidate's recovery)."""
    if steps <= 0:
        return float("nan")
    return _optimise(
        model,
        data,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=0.0,
        seed=seed,
        progress=progress,
    )
