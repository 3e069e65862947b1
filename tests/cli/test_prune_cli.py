"""`autoprune prune` end to end: train a tiny model, prune it, reload it; one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import autoprune
from autoprune.checkpoint import read_checkpoint
from autoprune_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prune-cli") / "base.pt"
    args = ["train", "--model", "tiny_resnet", "--epochs", "1", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_prune_uniform_prints_the_table_and_reloads(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned.pt"
    result = runner.invoke(app, ["prune", str(trained), "--out", str(out), "--uniform", "0.5"])
    assert result.exit_code == 0, result.output
    assert "layers.0.0.conv1" in result.output and "8 → 4" in result.output
    assert "kept %" in result.output and f"wrote {out}" in result.output
    model = autoprune.load(out)
    assert model.layers[0][0].conv1.out_channels == 4
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    metadata = read_checkpoint(out)["metadata"]
    assert metadata["criterion"] == "angle-next" and metadata["source"] == str(trained)
    # residual groups are pruned by default; --no-residual keeps to the block-internal ones
    assert any(name.startswith("residual:") for name in read_checkpoint(out)["kept_channels"])
    inner = tmp_path / "inner.pt"
    args = ["prune", str(trained), "--out", str(inner), "--uniform", "0.5", "--no-residual"]
    assert runner.invoke(app, args).exit_code == 0
    assert not any(n.startswith("residual:") for n in read_checkpoint(inner)["kept_channels"])


def test_prune_ratios_with_taylor_calibrates_on_the_recorded_data(
    trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "taylor.pt"
    ratios = "layers.1.0.conv1=0.25,residual:layers.1.0=0.5"
    result = runner.invoke(
        app,
        ["prune", str(trained), "--out", str(out), "--ratios", ratios, "--criterion", "taylor"],
    )
    assert result.exit_code == 0, result.output
    kept = read_checkpoint(out)["kept_channels"]
    assert kept["layers.1.0.conv1"] == 12 and kept["residual:layers.1.0"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratios", "layers.0.0.conv=0.5"], "did you mean layers.0.0.conv1?"),
        (["--ratios", "layers.0.0.conv1"], "write group=ratio pairs"),
        (["--ratios", "layers.0.0.conv1=1"], "outside [0, 1)"),
        (["--uniform", "-0.5"], "outside [0, 1)"),
        ([], "not both or neither"),
        (["--uniform", "0.5", "--ratios", "layers.0.0.conv1=0.5"], "not both or neither"),
        (["--ratios", "layers.0.0.conv1=0.5", "--residual"], "uniform ratio only"),
        (["--uniform", "0.5", "--criterion", "angel"], "did you mean angle"),
    ],
)
def test_bad_input_is_a_one_line_error(
    trained: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out.pt"
    result = runner.invoke(app, ["prune", str(trained), "--out", str(out), *args])
    assert result.exit_code != 0
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not out.exists()


def test_missing_checkpoint(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["prune", str(tmp_path / "no.pt"), "--out", "x.pt", "--uniform", "0.5"]
    )
    assert "not found" in str(result.exception)


def test_onnx_without_the_extra_fails_before_any_work(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    out = tmp_path / "out.pt"
    for command in (
        ["prune", str(trained), "--out", str(out), "--uniform", "0.5"],
        ["export", "--trial", "0", "--out", str(out), "--storage", str(tmp_path / "s.db")],
    ):
        result = runner.invoke(app, [*command, "--onnx", str(tmp_path / "m.onnx")])
        assert "pip install 'autoprune[onnx]'" in str(result.exception)
        assert not out.exists()


def test_prune_writes_a_verified_onnx_file(trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "pruned.onnx"
    result = runner.invoke(
        app,
        [
            "prune",
            str(trained),
            "--out",
            str(tmp_path / "p.pt"),
            "--uniform",
            "0.5",
            "--residual",
            "--onnx",
            str(onnx_path),
        ],
    )
    assert result.exit_code == 0, result.output
    # exit code 0 means the check passed (see OnnxCheck.ok)
    assert onnx_path.is_file() and "ONNX Runtime vs PyTorch on 64 inputs" in result.output
