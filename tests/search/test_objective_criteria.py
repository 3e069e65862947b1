"""Candidates pruned with data-driven criteria: calibration batches drawn once, reproducibly."""

from __future__ import annotations

import torch

from autoprune.config import CalibrationConfig, ModelConfig
from autoprune.data import calibration_batches, load_dataset
from autoprune.models import build_model
from autoprune.quant import QuantSpec
from autoprune.search.objective import CandidateEvaluator, FinetuneConfig


def _evaluator(criterion: str) -> CandidateEvaluator:
    data = load_dataset("digits", max_train=128)
    config = ModelConfig.for_data("tiny_cnn", QuantSpec.from_bits(2), data)
    torch.manual_seed(0)
    return CandidateEvaluator(
        baseline=build_model(config).eval(),
        data=data,
        model_config=config,
        criterion=criterion,
        finetune_config=FinetuneConfig(steps=2, batch_size=16),
        calibration_config=CalibrationConfig(batches=3, batch_size=16),
    )


def test_taylor_candidates_are_scored_on_fixed_calibration_batches() -> None:
    evaluator = _evaluator("taylor")
    calibration = evaluator.calibration()
    assert calibration is not None and len(calibration) == 3
    assert all(images.shape[0] == 16 for images, _ in calibration)
    assert evaluator.calibration() is calibration  # drawn once, shared by every candidate
    again = calibration_batches(evaluator.data, batches=3, batch_size=16, seed=0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(calibration, again, strict=True))
    first, kept = evaluator.build({"features.3": 0.5}, seed=7)
    second, kept_again = evaluator.build({"features.3": 0.5}, seed=7)
    assert kept == kept_again and kept["features.3"] == 8
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_data_free_criteria_draw_no_batches() -> None:
    evaluator = _evaluator("angle-next")
    assert evaluator.calibration() is None
    _, kept = evaluator.build({"features.3": 0.25}, seed=0)
    assert kept["features.3"] == 12
