"""Quantization options of `search` and `train`: --bits, --wbits, --abits, --weights,
--edge-bits, end to end on tiny models and the bundled digits dataset."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

import autoprune
from autoprune.checkpoint import read_checkpoint
from autoprune.quant import (
    DoReFaWeight,
    Identity,
    QuantSpec,
    Sign,
    SignedUniformActivation,
)
from autoprune.search.study import CONFIG_ATTR
from autoprune_cli.flags import cli_message
from autoprune_cli.main import app

runner = CliRunner()
QUICK = ["--epochs", "1", "--finetune-steps", "1", "--max-train", "128", "--device", "cpu"]


def test_search_xnor_with_8_bit_edges(tmp_path: Path) -> None:
    storage = str(tmp_path / "s.db")
    args = ["--model", "tiny_cnn", "--bits", "1", "--weights", "xnor", "--edge-bits", "8"]
    result = runner.invoke(app, ["search", *args, *QUICK, "--trials", "1", "--storage", storage])
    assert result.exit_code == 0, result.output
    name = "tiny_cnn-xnor-edge8-digits"  # the default study name carries the label
    assert f"study {name}" in result.output
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 1
    stored = study.user_attrs[CONFIG_ATTR]["model"]["quant"]
    assert QuantSpec.from_dict(stored) == QuantSpec.from_options(
        bits=1, binary_weights="xnor", edge_bits=8
    )


def test_search_mixed_widths_name_their_study(tmp_path: Path) -> None:
    storage = str(tmp_path / "s.db")
    args = ["--model", "tiny_cnn", "--wbits", "1", "--abits", "2", "--edge-bits", "net"]
    result = runner.invoke(app, ["search", *args, *QUICK, "--trials", "1", "--storage", storage])
    assert result.exit_code == 0, result.output
    assert "study tiny_cnn-w1a2-edgenet-digits" in result.output


def test_train_writes_the_requested_quantization_and_search_checks_it(tmp_path: Path) -> None:
    out = tmp_path / "w4.pt"
    args = ["--model", "tiny_cnn", "--wbits", "4", "--abits", "32", "--edge-bits", "8"]
    result = runner.invoke(
        app, ["train", *args, "--epochs", "1", "--device", "cpu", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    spec = QuantSpec.from_dict(read_checkpoint(out)["model"]["quant"])
    assert spec.label == "w4a32-edge8"
    model = autoprune.load(out)
    stem, classifier = model.features[0], model.fc
    assert isinstance(stem.weight_quantizer, DoReFaWeight) and stem.weight_quantizer.bits == 8
    assert isinstance(model.features[3].weight_quantizer, DoReFaWeight)
    assert model.features[3].weight_quantizer.bits == 4
    assert isinstance(classifier.input_quantizer, Identity)  # float activations stay float
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)

    storage = str(tmp_path / "s.db")
    mismatched = runner.invoke(
        app, ["search", "--checkpoint", str(out), "--edge-bits", "32", "--storage", storage]
    )
    assert mismatched.exit_code != 0
    assert "holds `edge_bits=8` but `edge_bits=32`" in str(mismatched.exception)
    rendered = cli_message(mismatched.exception, app)  # as the command line shows it
    assert "holds --edge-bits 8 but --edge-bits 32 was requested: drop --edge-bits" in rendered
    mismatched = runner.invoke(
        app, ["search", "--checkpoint", str(out), "--bits", "4", "--storage", storage]
    )
    assert "drop `bits`" in str(mismatched.exception)


def test_train_bnn_with_8_bit_edges_quantizes_the_classifier_input_signed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bnn.pt"
    args = ["--model", "tiny_cnn", "--bits", "1", "--edge-bits", "8", "--epochs", "1"]
    result = runner.invoke(app, ["train", *args, "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = autoprune.load(out)
    assert isinstance(model.fc.input_quantizer, SignedUniformActivation)
    assert isinstance(model.features[3].input_quantizer, Sign)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bits", "0"], "unsupported bit-width 0"),
        (["--bits", "33"], "unsupported bit-width 33"),
        (["--wbits", "9"], "unsupported weight bit-width 9"),
        (["--weights", "xnor"], "XNOR weights are binary but the weights would have 2 bits"),
        (["--bits", "1", "--wbits", "2", "--weights", "xnor"], "XNOR weights are binary"),
        (["--weights", "ternary"], "unknown binary weight scheme 'ternary'"),
        (["--edge-bits", "4"], "unsupported edge bits '4'"),
        (["--bits", "32", "--edge-bits", "8"], "8-bit edge layers need a quantized network"),
    ],
)
@pytest.mark.parametrize("command", ["search", "train"])
def test_impossible_quantization_is_a_clear_error(
    command: str, args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    extra = ["--out", "x.pt"] if command == "train" else ["--storage", "s.db"]
    result = runner.invoke(app, [command, "--model", "tiny_cnn", *args, *extra, "--device", "cpu"])
    assert result.exit_code != 0
    assert message in str(result.exception)
    assert not (tmp_path / "x.pt").exists()
