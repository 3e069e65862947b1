"""prune_checkpoint: exact round trip, per-layer rows from measure, composition, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import autoprune
from autoprune.checkpoint import read_checkpoint, save_checkpoint
from autoprune.config import ModelConfig
from autoprune.errors import AutopruneError, CheckpointError, ConfigError
from autoprune.export import parse_ratios, prune_checkpoint
from autoprune.metrics import measure
from autoprune.models import build_model
from autoprune.quant import QuantSpec

CONFIG = ModelConfig(
    name="tiny_resnet",
    quant=QuantSpec.from_bits(2).to_dict(),
    num_classes=10,
    in_channels=1,
    image_size=8,
)


def _checkpoint(tmp_path: Path, config: ModelConfig = CONFIG, **kwargs) -> Path:
    torch.manual_seed(0)
    model = build_model(config)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval differs from train
        model(torch.randn(32, *config.input_shape))
    path = tmp_path / "base.pt"
    save_checkpoint(path, model, config, **kwargs)
    return path


def test_round_trip_is_exact_and_rows_match_measure(tmp_path: Path) -> None:
    source = _checkpoint(
        tmp_path,
        training={"epochs_done": 1, "complete": True},
        metadata={"val_accuracy": 0.5, "history": [{"epoch": 1}]},
    )
    out = tmp_path / "pruned.pt"
    report = prune_checkpoint(
        source, out, ratios={"layers.0.0.conv1": 0.5, "layers.1.0.conv1": 0.25}
    )
    assert report.kept_channels == {"layers.0.0.conv1": 4, "layers.1.0.conv1": 12}
    assert report.channels_before == {"layers.0.0.conv1": 8, "layers.1.0.conv1": 16}

    reloaded = autoprune.load(out)
    original = autoprune.load(source)
    inputs = torch.randn(16, *CONFIG.input_shape)
    # pruning is deterministic: pruning the source again gives the same network
    again = tmp_path / "again.pt"
    prune_checkpoint(source, again, ratios=report.ratios)
    rebuilt = autoprune.load(again)
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), reloaded(inputs))
        assert not torch.equal(original(inputs), reloaded(inputs))

    before, after = measure(original, CONFIG.input_shape), measure(reloaded, CONFIG.input_shape)
    assert report.before == before and report.after == after
    assert [row.name for row in report.layers] == [layer.name for layer in before.layers]
    for row, old, new in zip(report.layers, before.layers, after.layers, strict=True):
        assert (row.out_before, row.params_before, row.size_bits_before) == (
            old.out_channels,
            old.params,
            old.size_bits,
        )
        assert (row.out_after, row.macs_after, row.bops_after) == (
            new.out_channels,
            new.macs,
            new.bops,
        )
    pruned_conv = next(r for r in report.layers if r.name == "layers.0.0.conv1")
    assert (pruned_conv.out_before, pruned_conv.out_after) == (8, 4)
    assert pruned_conv.macs_after == pruned_conv.macs_before // 2
    assert report.after.size_bits < report.before.size_bits

    payload = read_checkpoint(out)
    assert "training" not in payload  # the source's training state does not fit the new shapes
    assert payload["metadata"]["criterion"] == "angle-next"
    assert payload["metadata"]["source"] == str(source)
    assert payload["metadata"]["ratios"] == report.ratios
    assert payload["metadata"]["source_metadata"] == {"val_accuracy": 0.5}  # no epoch history


def test_outputs_identical_before_save_and_after_load(tmp_path: Path) -> None:
    from autoprune.prune import prune_

    source = _checkpoint(tmp_path)
    model = autoprune.load(source)
    example = torch.zeros(1, *CONFIG.input_shape)
    prune_(model, {"residual:layers.1.0": 0.5}, criterion="l1", example_input=example)
    out = tmp_path / "pruned.pt"
    with torch.no_grad():  # works under no_grad too, although the graph tracing needs autograd
        prune_checkpoint(source, out, ratios={"residual:layers.1.0": 0.5}, criterion="l1")
    inputs = torch.randn(8, *CONFIG.input_shape)
    reloaded = autoprune.load(out)
    with torch.no_grad():
        assert torch.equal(model(inputs), reloaded(inputs))


def test_uniform_prunes_every_group_and_block_internal_ones_on_request(tmp_path: Path) -> None:
    source = _checkpoint(tmp_path)
    internal = prune_checkpoint(source, tmp_path / "a.pt", uniform=0.5, residual=False)
    assert internal.ratios == {"layers.0.0.conv1": 0.5, "layers.1.0.conv1": 0.5}
    everything = prune_checkpoint(source, tmp_path / "b.pt", uniform=0.5)  # residual by default
    assert set(everything.ratios) == {
        "residual:conv1",
        "layers.0.0.conv1",
        "layers.1.0.conv1",
        "residual:layers.1.0",
    }
    assert everything.kept_channels["residual:layers.1.0"] == 8
    assert everything.after.params < internal.after.params
    assert autoprune.load(tmp_path / "b.pt")(torch.randn(2, *CONFIG.input_shape)).shape == (2, 10)


def test_pruning_a_pruned_checkpoint_composes_kept_channels(tmp_path: Path) -> None:
    source = _checkpoint(tmp_path)
    first = tmp_path / "first.pt"
    prune_checkpoint(source, first, ratios={"residual:layers.1.0": 0.5, "layers.0.0.conv1": 0.5})
    second = tmp_path / "second.pt"
    report = prune_checkpoint(first, second, ratios={"layers.0.0.conv1": 0.5})
    assert report.source_was_pruned
    # ratios apply to what the checkpoint has now; the residual group keeps its earlier count
    assert report.channels_before["layers.0.0.conv1"] == 4
    assert report.kept_channels == {
        "layers.0.0.conv1": 2,
        "layers.1.0.conv1": 16,
        "residual:layers.1.0": 8,
    }
    inputs = torch.randn(4, *CONFIG.input_shape)
    assert autoprune.load(second)(inputs).shape == (4, 10)


def test_data_criteria_use_calibration_batches(tmp_path: Path) -> None:
    source = _checkpoint(tmp_path)
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(16, *CONFIG.input_shape, generator=generator), torch.arange(16) % 10)
        for _ in range(2)
    ]
    report = prune_checkpoint(
        source, tmp_path / "t.pt", uniform=0.5, criterion="taylor", calibration=batches
    )
    assert report.kept_channels == {
        "residual:conv1": 4,
        "layers.0.0.conv1": 4,
        "layers.1.0.conv1": 8,
        "residual:layers.1.0": 8,
    }
    # without batches, the dataset the checkpoint records is used; this one records none
    with pytest.raises(CheckpointError, match="does not record its training data"):
        prune_checkpoint(source, tmp_path / "u.pt", uniform=0.5, criterion="taylor")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratios": {"layers.0.0.conv": 0.5}}, "did you mean layers.0.0.conv1.*valid groups"),
        ({"ratios": {"layers.0.0.conv1": 1.0}}, r"outside \[0, 1\)"),
        ({"ratios": {"layers.0.0.conv1": -0.1}}, r"outside \[0, 1\)"),
        ({"uniform": 1.5}, r"outside \[0, 1\)"),
        ({}, "not both or neither"),
        ({"uniform": 0.5, "ratios": {"layers.0.0.conv1": 0.5}}, "not both or neither"),
        ({"uniform": 0.5, "criterion": "angel"}, "did you mean angle"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, kwargs: dict, message: str) -> None:
    source = _checkpoint(tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        prune_checkpoint(source, tmp_path / "out.pt", **kwargs)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.pt").exists()


def test_missing_source_and_same_output_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        prune_checkpoint(tmp_path / "nope.pt", tmp_path / "out.pt", uniform=0.5)
    source = _checkpoint(tmp_path)
    with pytest.raises(AutopruneError, match="is the source checkpoint"):
        prune_checkpoint(source, source, uniform=0.5)


def test_parse_ratios() -> None:
    assert parse_ratios("a=0.5, residual:layers.1=0.25,") == {"a": 0.5, "residual:layers.1": 0.25}
    for bad in ("a", "a=x", "=0.5", "", "a=0.1,a=0.2"):
        with pytest.raises(ConfigError):
            parse_ratios(bad)
