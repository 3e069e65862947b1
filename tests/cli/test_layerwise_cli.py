"""`autoprune search --method layerwise` end to end, then listing and exporting its result."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

import autoprune
from autoprune.errors import ConfigError
from autoprune_cli.main import app

runner = CliRunner()
LAYERWISE = [
    "search",
    "--model",
    "tiny_resnet",
    "--bits",
    "2",
    "--method",
    "layerwise",
    "--evaluations",
    "4",
    "--retrain-steps",
    "2",
    "--final-steps",
    "2",
    "--epochs",
    "1",
    "--max-train",
    "200",
    "--device",
    "cpu",
]


def test_layerwise_search_lists_and_exports(tmp_path: Path) -> None:
    storage = str(tmp_path / "s.db")
    result = runner.invoke(app, [*LAYERWISE, "--storage", storage, "--study", "lw"])
    assert result.exit_code == 0, result.output
    assert "Layer-wise decisions of lw" in result.output
    assert "layer-wise result" in result.output

    # the group studies are folded into their parent
    listed = runner.invoke(app, ["studies", "--storage", storage])
    assert listed.exit_code == 0, listed.output
    assert "layerwise" in listed.output and "lw/" not in listed.output

    # a rerun finds the work done and evaluates nothing again
    again = runner.invoke(app, [*LAYERWISE, "--storage", storage, "--study", "lw"])
    assert again.exit_code == 0, again.output
    assert "ratio" not in again.output.split("Layer-wise decisions")[0].split("device cpu")[1]

    out = tmp_path / "pruned.pt"
    exported = runner.invoke(
        app, ["export", "--storage", storage, "--study", "lw", "--trial", "1", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    model = autoprune.load(out)
    saved = torch.load(out, weights_only=True)
    assert saved["kept_channels"], "the layer-wise result is pruned"
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_unknown_method_is_refused_before_any_work(tmp_path: Path) -> None:
    result = runner.invoke(
        app, [*LAYERWISE[:5], "--method", "greedy", "--storage", str(tmp_path / "s.db")]
    )
    assert isinstance(result.exception, ConfigError)
    assert "unknown search method 'greedy': use one of joint, layerwise" in str(result.exception)
