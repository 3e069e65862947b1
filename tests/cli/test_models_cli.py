"""`autoprune train --pretrained` and `--model package.module:factory` end to end (digits)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

import autoprune
from autoprune.errors import CheckpointError, UntrustedModelError
from autoprune.quant import QuantConv2d
from autoprune_cli.main import app

runner = CliRunner()
QUICK = ["--max-train", "96", "--batch-size", "32", "--epochs", "1", "--device", "cpu"]

USER_MODULE = """
from torch import nn


def build(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, bias=False),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, num_classes),
    )
"""


def _train(out: Path, *extra: str):
    return runner.invoke(app, ["train", *QUICK, "--out", str(out), *extra])


def _parameters(path: Path) -> dict[str, torch.Tensor]:
    return dict(autoprune.load(path).named_parameters())


def test_training_starts_from_pretrained_float_weights(tmp_path: Path) -> None:
    float_run = _train(tmp_path / "float.pt", "--model", "tiny_cnn", "--bits", "32")
    assert float_run.exit_code == 0, float_run.output
    # learning rate 0: the quantized run's parameters stay exactly where they started
    result = _train(
        tmp_path / "w2a2.pt",
        *("--model", "tiny_cnn", "--bits", "2", "--lr", "0"),
        *("--pretrained", str(tmp_path / "float.pt")),
    )
    assert result.exit_code == 0, result.output
    started, trained = _parameters(tmp_path / "float.pt"), _parameters(tmp_path / "w2a2.pt")
    assert started.keys() == trained.keys()
    assert all(torch.equal(started[k], trained[k]) for k in started)
    torch.manual_seed(0)  # both runs draw this same initialisation (seed 0) before loading
    initial = dict(autoprune.create_model("tiny_cnn", in_channels=1).named_parameters())
    assert not torch.equal(initial["features.3.weight"], trained["features.3.weight"])
    metadata = torch.load(tmp_path / "w2a2.pt", weights_only=True)["metadata"]
    assert metadata["pretrained"] == str((tmp_path / "float.pt").resolve())
    (tmp_path / "other.pt").write_bytes((tmp_path / "float.pt").read_bytes())
    other_start = _train(
        tmp_path / "w2a2.pt",
        *("--model", "tiny_cnn", "--bits", "2", "--lr", "0"),
        *("--pretrained", str(tmp_path / "other.pt")),
    )
    assert other_start.exit_code != 0 and "did not start from" in str(other_start.exception)
    onto_itself = _train(
        tmp_path / "w2a2.pt",
        *("--model", "tiny_cnn", "--bits", "2"),
        *("--pretrained", str(tmp_path / "w2a2.pt")),
    )
    assert onto_itself.exit_code != 0 and "is the --pretrained weights" in str(
        onto_itself.exception
    )


def test_raw_state_dict_of_another_model_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    other = autoprune.create_model("tiny_resnet", num_classes=10, in_channels=1)
    torch.save({"state_dict": other.state_dict()}, tmp_path / "other.pth")
    result = _train(
        tmp_path / "x.pt", "--model", "tiny_cnn", "--pretrained", f"{tmp_path}/other.pth"
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, CheckpointError)
    assert "does not match the model (missing features.0.weight" in str(result.exception)
    assert "\n" not in str(result.exception)
    missing = _train(tmp_path / "x.pt", "--pretrained", str(tmp_path / "nothing.pt"))
    assert missing.exit_code != 0 and "does not exist" in missing.output


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"cli_usernet_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_own_network_trains_loads_and_searches(tmp_path: Path, user_module: str) -> None:
    model = f"{user_module}:build"
    result = _train(tmp_path / "own.pt", "--model", model, "--bits", "1")
    assert result.exit_code == 0, result.output
    refused = runner.invoke(app, ["inspect", str(tmp_path / "own.pt")])
    assert refused.exit_code != 0 and isinstance(refused.exception, UntrustedModelError)
    inspected = runner.invoke(app, ["inspect", str(tmp_path / "own.pt"), "--model", model])
    assert inspected.exit_code == 0, inspected.output
    loaded = autoprune.load(tmp_path / "own.pt", model=model)
    assert isinstance(loaded[3], QuantConv2d) and loaded[3].weight_quantizer.bits == 1
    assert isinstance(loaded[2], torch.nn.Hardtanh)
    assert loaded(torch.zeros(2, 1, 8, 8)).shape == (2, 10)

    storage = str(tmp_path / "studies.db")
    search = runner.invoke(
        app,
        [
            *("search", "--model", model, "--bits", "1", "--trials", "2"),
            *("--finetune-steps", "2", "--max-train", "96", "--epochs", "1"),
            *("--device", "cpu", "--storage", storage),
        ],
    )
    assert search.exit_code == 0, search.output
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{storage}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2 and set(complete[0].params) == {"0", "3"}  # the two convs
