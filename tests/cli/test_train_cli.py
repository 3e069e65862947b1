"""`autoprune train` (options, per-epoch checkpoints, resume, summary) and `autoprune inspect`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import autoprune
from autoprune.train import TrainingInterrupted
from autoprune_cli.flags import cli_message
from autoprune_cli.main import app

runner = CliRunner()
TINY = ["--model", "tiny_cnn", "--bits", "2", "--max-train", "96", "--batch-size", "32"]
TINY += ["--device", "cpu"]


def _train(out: Path, *extra: str):
    return runner.invoke(app, ["train", *TINY, "--epochs", "2", "--out", str(out), *extra])


def test_train_prints_epochs_and_summary_then_reruns_as_done(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    result = _train(out, "--optimizer", "sgd", "--schedule", "step", "--lr", "0.05")
    assert result.exit_code == 0, result.output
    assert "epoch   1/2: train loss" in result.output and "epoch   2/2" in result.output
    for text in ("Epochs", "val accuracy", "test accuracy", "size", "BOPs", "wall time"):
        assert text in result.output
    payload = torch.load(out, weights_only=True)
    assert payload["metadata"]["train"]["optimizer"] == "sgd"
    assert payload["metadata"]["train"]["schedule"] == "step"
    assert payload["metadata"]["data"]["max_train"] == 96
    assert len(payload["metadata"]["history"]) == 2
    assert autoprune.load(out)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)

    again = _train(out, "--optimizer", "sgd", "--schedule", "step", "--lr", "0.05")
    assert again.exit_code == 0, again.output
    assert "already holds all 2 epochs" in again.output
    assert torch.load(out, weights_only=True)["metadata"] == payload["metadata"]

    changed = _train(out)  # adam / cosine / digits' recipe (lr 2e-3) now
    assert changed.exit_code != 0
    message = cli_message(changed.exception, app)  # as main() prints it
    assert "train.lr 0.05 -> 0.002" in message and "--restart" in message
    restarted = _train(out, "--restart")
    assert restarted.exit_code == 0, restarted.output
    # every default is stated in the checkpoint (the run config stores them all)
    assert torch.load(out, weights_only=True)["metadata"]["train"]["optimizer"] == "adam"


def test_interrupted_train_resumes_with_the_same_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import autoprune_cli.main as cli

    straight = tmp_path / "straight.pt"
    assert _train(straight).exit_code == 0
    out = tmp_path / "tiny.pt"
    real = cli.train_checkpoint

    def interrupted_after_one_epoch(*args, **kwargs):
        def stop(record) -> None:
            kwargs["on_epoch"](record)
            raise KeyboardInterrupt

        return real(*args, **{**kwargs, "on_epoch": stop})

    monkeypatch.setattr(cli, "train_checkpoint", interrupted_after_one_epoch)
    stopped = _train(out)
    assert stopped.exit_code == 130
    assert isinstance(stopped.exception, SystemExit)
    assert torch.load(out, weights_only=True)["training"]["epochs_done"] == 1
    monkeypatch.setattr(cli, "train_checkpoint", real)

    resumed = _train(out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "epoch   1/2" not in resumed.output and "epoch   2/2" in resumed.output
    assert "resumed after epoch" in resumed.output
    expected, got = autoprune.load(straight).state_dict(), autoprune.load(out).state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_interruption_is_a_keyboard_interrupt() -> None:
    assert issubclass(TrainingInterrupted, KeyboardInterrupt)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--optimizer", "adamw"], "did you mean adam"),
        (["--schedule", "cosin"], "did you mean cosine"),
        (["--amp"], "needs a CUDA device"),
        (["--resume", "--restart"], "exclude each other"),
        (["--resume"], "nothing to resume"),
    ],
)
def test_bad_training_options(tmp_path: Path, extra: list[str], message: str) -> None:
    result = _train(tmp_path / "x.pt", *extra)
    assert result.exit_code != 0 and message in str(result.exception)
    assert not (tmp_path / "x.pt").exists()


def test_inspect_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    assert _train(out).exit_code == 0
    shown = runner.invoke(app, ["inspect", str(out)])
    assert shown.exit_code == 0, shown.output
    for text in ("Layers of tiny_cnn w2a2", "total", "Metadata", "train.optimizer", "history"):
        assert text in shown.output, text
    as_json = runner.invoke(app, ["inspect", str(out), "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["model"]["name"] == "tiny_cnn" and report["quant"] == "w2a2"
    assert report["totals"]["params"] == sum(p.numel() for p in autoprune.load(out).parameters())
    assert report["totals"]["bops"] == sum(layer["bops"] for layer in report["layers"])
    assert [r["epoch"] for r in report["history"]] == [1, 2]
    assert report["train_config"]["epochs"] == 2 and report["training_complete"] is True
    assert report["kept_channels"] == {}


def test_inspect_shows_kept_channels_of_a_pruned_checkpoint(tmp_path: Path) -> None:
    from autoprune.checkpoint import save_checkpoint
    from autoprune.config import ModelConfig
    from autoprune.models import build_model
    from autoprune.prune import prune_
    from autoprune.quant import QuantSpec

    config = ModelConfig("tiny_resnet", QuantSpec.from_bits(2).to_dict(), 10, 1, 8)
    model = build_model(config).eval()
    kept = prune_(
        model, {"layers.0.0.conv1": 0.5}, criterion="l1", example_input=torch.zeros(1, 1, 8, 8)
    )
    path = save_checkpoint(tmp_path / "pruned.pt", model, config, kept_channels=kept)
    report = json.loads(runner.invoke(app, ["inspect", str(path), "--json"]).output)
    assert report["kept_channels"]["layers.0.0.conv1"] == {"kept": 4, "of": 8}
    assert report["history"] == [] and report["train_config"] is None
    shown = runner.invoke(app, ["inspect", str(path)])
    assert "Kept channels" in shown.output and "50.0" in shown.output


@pytest.mark.parametrize(("content", "message"), [(None, "not found"), (b"junk", "corrupt")])
def test_inspect_bad_files_are_one_line_errors(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code != 0 and message in str(result.exception)
    assert "\n" not in str(result.exception)
