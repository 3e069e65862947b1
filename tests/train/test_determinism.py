"""Fine-tuning a pruned network is deterministic: a trial rebuilt later (export,
``SearchResult.build``) must reach the accuracy the search measured. Channels-last training on
the CPU broke this (heap corruption in oneDNN with pruned channel counts), see
``autoprune.device.training_memory_format``."""

from __future__ import annotations

import copy

import torch

from autoprune.config import ModelConfig
from autoprune.data import load_dataset
from autoprune.models import build_model
from autoprune.prune import prune_
from autoprune.train import finetune


def test_pruned_fine_tune_repeats_exactly() -> None:
    data = load_dataset("digits", max_train=256)
    config = ModelConfig.for_data("tiny_resnet", 2, data)
    torch.manual_seed(0)
    baseline = build_model(config)
    ratios = {
        "residual:conv1": 0.55,
        "layers.0.0.conv1": 0.2,
        "layers.1.0.conv1": 0.5,
    }
    runs = []
    for _ in range(3):
        model = copy.deepcopy(baseline)
        prune_(
            model,
            ratios,
            criterion="l1",
            example_input=torch.zeros(1, *config.input_shape),
            residual=True,
        )
        finetune(model, data, steps=8, batch_size=32, lr=1e-3, seed=6)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert all(torch.equal(runs[0], other) for other in runs[1:])
