"""Pretrained starting points: float or quantized weights in, any bit-width out."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

from autoprune.checkpoint import save_checkpoint
from autoprune.config import ModelConfig
from autoprune.errors import CheckpointError
from autoprune.models import create_model, load_pretrained_, read_state_dict
from autoprune.prune import prune_
from autoprune.quant import QuantSpec


def _float_state(name: str = "tiny_resnet", num_classes: int = 10) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return create_model(name, bits=32, num_classes=num_classes, in_channels=1).state_dict()


def _same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], v) for k, v in state.items())


@pytest.mark.parametrize("bits", [1, 2])
def test_float_weights_start_a_quantized_model(tmp_path: Path, bits: int) -> None:
    state = _float_state()
    torch.save(state, tmp_path / "float.pth")
    model = create_model("tiny_resnet", bits=bits, in_channels=1)
    assert load_pretrained_(model, tmp_path / "float.pth") is model
    assert _same(model, state)


def test_quantized_autoprune_checkpoint_starts_a_float_model(tmp_path: Path) -> None:
    config = ModelConfig("tiny_resnet", QuantSpec.from_bits(2).to_dict(), 10, 1, 8)
    torch.manual_seed(2)
    quantized = create_model("tiny_resnet", bits=2, in_channels=1)
    path = save_checkpoint(tmp_path / "w2a2.pt", quantized, config)
    float_model = load_pretrained_(create_model("tiny_resnet", in_channels=1), path)
    assert _same(float_model, quantized.state_dict())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: {"state_dict": s, "epoch": 3},
        lambda s: {"model": s, "optimizer": {"lr": 0.1}},
        lambda s: {"model_state_dict": s},
        lambda s: {"checkpoint": 1, "state_dict": {"model": s}},
        lambda s: OrderedDict((f"module.{k}", v) for k, v in s.items()),  # DataParallel
        lambda s: {"state_dict": {f"module._orig_mod.{k}": v for k, v in s.items()}},
    ],
    ids=["state_dict", "model", "model_state_dict", "two-levels", "module.", "compiled-ddp"],
)
def test_common_checkpoint_layouts(tmp_path: Path, wrap: Any) -> None:
    state = _float_state()
    torch.save(wrap(state), tmp_path / "weights.pt")
    assert read_state_dict(tmp_path / "weights.pt").keys() == state.keys()
    assert _same(
        load_pretrained_(
            create_model("tiny_resnet", bits=1, in_channels=1), tmp_path / "weights.pt"
        ),
        state,
    )


class _Pickled:
    """Not loadable with weights_only=True."""


def test_unusable_files_are_named(tmp_path: Path) -> None:
    model = create_model("tiny_resnet", in_channels=1)
    with pytest.raises(CheckpointError, match=r"missing.pt not found: check the path"):
        load_pretrained_(model, tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00not a zip")
    with pytest.raises(CheckpointError, match="corrupt or hold more than tensors"):
        load_pretrained_(model, tmp_path / "corrupt.pt")
    torch.save({"net": _Pickled()}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match=r"corrupt .*\(UnpicklingError\)"):
        load_pretrained_(model, tmp_path / "pickled.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match=r"holds no state dict \(keys epoch, lr\)"):
        load_pretrained_(model, tmp_path / "nothing.pt")


def test_mismatches_name_the_first_keys_and_shapes(tmp_path: Path) -> None:
    state = _float_state(num_classes=4)
    state["extra.weight"] = torch.zeros(1)
    del state["layers.0.0.bn1.bias"]
    torch.save(state, tmp_path / "other.pt")
    model = create_model("tiny_resnet", bits=2, in_channels=1)
    with pytest.raises(
        CheckpointError,
        match=r"other.pt does not match the model \(missing layers.0.0.bn1.bias; unexpected "
        r"extra.weight; shape fc.weight \(4, 16\) vs \(10, 16\)",
    ):
        load_pretrained_(model, tmp_path / "other.pt")


def test_pruned_checkpoint_is_refused(tmp_path: Path) -> None:
    config = ModelConfig("tiny_resnet", QuantSpec.from_bits(2).to_dict(), 10, 1, 8)
    model = create_model("tiny_resnet", bits=2, in_channels=1).eval()
    example = torch.zeros(1, 1, 8, 8)
    kept = prune_(model, {"layers.0.0.conv1": 0.5}, criterion="l1", example_input=example)
    path = save_checkpoint(tmp_path / "pruned.pt", model, config, kept_channels=kept)
    with pytest.raises(CheckpointError, match=r"pruned network .*unpruned checkpoint"):
        load_pretrained_(create_model("tiny_resnet", in_channels=1), path)
