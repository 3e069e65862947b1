"""Checkpoints: exact round trips (pruned too), clear errors, a self-healing baseline cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import autoprune
from autoprune.checkpoint import load_state_strictly, save_checkpoint
from autoprune.config import DataConfig, ModelConfig, TrainConfig
from autoprune.data import load_dataset
from autoprune.errors import CheckpointError
from autoprune.models import build_model
from autoprune.prune import prune_
from autoprune.quant import QuantSpec, layer_bits, set_layer_bits_
from autoprune.train import obtain_baseline

CONFIG = ModelConfig("tiny_resnet", QuantSpec.from_bits(2).to_dict(), 10, 1, 8)


def test_pruned_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    kept = prune_(
        model,
        {"layers.0.0.conv1": 0.5, "layers.1.0.conv1": 0.25},
        criterion="angle-next",
        example_input=torch.zeros(1, 1, 8, 8),
    )
    path = save_checkpoint(tmp_path / "pruned.pt", model, CONFIG, kept_channels=kept)
    payload = torch.load(path, weights_only=True)  # plain data, no pickled classes
    assert payload["kept_channels"] == {"layers.0.0.conv1": 4, "layers.1.0.conv1": 12}
    with torch.inference_mode():  # a deployment caller may load without autograd
        loaded = autoprune.load(path)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not (tmp_path / "pruned.pt.partial").exists()


def test_a_mixed_precision_network_round_trips_as_format_2(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    uniform = save_checkpoint(tmp_path / "uniform.pt", model, CONFIG)
    assert torch.load(uniform, weights_only=True)["version"] == 1  # older readers still read it
    assert "layer_bits" not in torch.load(uniform, weights_only=True)

    set_layer_bits_(model, {"layers.0.0.conv1": 8, "layers.1.0.conv2": 4})
    kept = prune_(
        model, {"layers.0.0.conv1": 0.5}, criterion="l1", example_input=torch.zeros(1, 1, 8, 8)
    )
    path = save_checkpoint(tmp_path / "mixed.pt", model, CONFIG, kept_channels=kept)
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == 2
    assert payload["layer_bits"] == {"layers.0.0.conv1": 8, "layers.1.0.conv2": 4}
    loaded = autoprune.load(path)
    assert layer_bits(loaded, CONFIG.spec) == payload["layer_bits"]
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert autoprune.measure(loaded, (1, 8, 8)) == autoprune.measure(model, (1, 8, 8))

    payload["layer_bits"] = {"conv1": 4}  # the stem keeps its precision: a damaged file
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"cannot be rebuilt.*re-create it"):
        autoprune.load(path)
    payload["version"] = 3
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="newer than this autoprune"):
        autoprune.load(path)


def test_bad_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        autoprune.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        autoprune.load(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an autoprune checkpoint"):
        autoprune.load(foreign)


def test_mismatch_names_first_keys_and_shapes() -> None:
    model = build_model(CONFIG)
    other = build_model(ModelConfig("tiny_resnet", CONFIG.quant, 7, 1, 8)).state_dict()
    other["extra.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError, match=r"unexpected extra.weight.*shape fc.weight \(7, 16\)"
    ):
        load_state_strictly(model, other, "ckpt")


def test_corrupt_cached_baseline_is_retrained(tmp_path: Path) -> None:
    data = load_dataset("digits", max_train=128)
    configs = (DataConfig("digits", max_train=128), TrainConfig(epochs=1))
    first = obtain_baseline(CONFIG, *configs, data, cache_dir=tmp_path, device=torch.device("cpu"))
    assert not first.reused and first.path.is_file()
    again = obtain_baseline(CONFIG, *configs, data, cache_dir=tmp_path, device=torch.device("cpu"))
    assert again.reused and again.val_accuracy == first.val_accuracy
    first.path.write_bytes(b"truncated")
    healed = obtain_baseline(CONFIG, *configs, data, cache_dir=tmp_path, device=torch.device("cpu"))
    assert not healed.reused and healed.val_accuracy == first.val_accuracy
