"""ONNX export with standard operators, checked against PyTorch with ONNX Runtime.

Exports take seconds each (torch.onnx's torch.export-based exporter: 3 to 14 s for a tiny
model on the shared 2-core machine), so every file is written once per module and shared, and
the default run exports one float, one pruned W2A2 and one pruned BNN network; the other
three combinations are marked slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.export import (
    SignedGridRound,
    UnitGridRound,
    export_onnx,
    run_onnx,
    verify_onnx,
)
from autoprune.export.inference import BinarySign
from autoprune.models import create_model
from autoprune.prune import prune_
from autoprune.quant import QuantSpec

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

SHAPE = (1, 8, 8)
SPECS = {"fp32": 32, "w2a2": 2, "bnn": 1}
CASES = [
    pytest.param("fp32", True, id="fp32-pruned", marks=pytest.mark.slow),
    pytest.param("fp32", False, id="fp32"),
    pytest.param("w2a2", True, id="w2a2-pruned"),
    pytest.param("w2a2", False, id="w2a2", marks=pytest.mark.slow),
    pytest.param("bnn", True, id="bnn-pruned"),
    pytest.param("bnn", False, id="bnn", marks=pytest.mark.slow),
]


def _model(label: str, pruned: bool) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("tiny_resnet", bits=SPECS[label], num_classes=10, in_channels=1)
    model.train()
    with torch.no_grad():
        model(torch.randn(64, *SHAPE))  # BatchNorm statistics away from 0 / 1
    if pruned:  # a block-internal and a residual group, so both kinds of shrinking are exported
        ratios = {"layers.0.0.conv1": 0.5, "residual:layers.1.0": 0.25}
        prune_(model, ratios, criterion="l1", example_input=torch.zeros(1, *SHAPE))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("onnx")
    cache: dict[tuple[str, bool], tuple[nn.Module, Path]] = {}

    def get(label: str, pruned: bool) -> tuple[nn.Module, Path]:
        if (label, pruned) not in cache:
            model = _model(label, pruned)
            path = export_onnx(model, folder / f"{label}-{pruned}.onnx", SHAPE)
            cache[label, pruned] = (model, path)
        return cache[label, pruned]

    return get


@pytest.mark.parametrize(("label", "pruned"), CASES)
def test_onnx_runtime_matches_pytorch(exported, label: str, pruned: bool) -> None:
    model, path = exported(label, pruned)
    inputs = torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(1))
    check = verify_onnx(path, model, inputs)
    assert check.ok, check.summary()
    assert check.argmax_agreement == 1.0
    assert check.max_abs_diff < 1e-4, check.summary()
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    # weight quantizers are folded into constants: nothing of DoReFa's tanh/max runs
    assert not ops & {"Tanh", "ReduceMax", "Abs"}, ops
    if label == "w2a2":
        assert {"Clip", "Round"} <= ops
    if label == "bnn":
        assert "Sign" in ops
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param  # any batch size
    assert run_onnx(path, inputs[:3]).shape == (3, 10)


@pytest.mark.parametrize("label", ["w2a2", "bnn"])
def test_exported_weights_stay_quantized(exported, label: str) -> None:
    """BatchNorm is folded into each conv (one scale per output channel), so a quantized conv
    of the file holds at most 2^k distinct values per output channel."""
    _, path = exported(label, True)
    graph = onnx.load(str(path)).graph
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    conv_weights = [weights[node.input[1]] for node in graph.node if node.op_type == "Conv"]
    inner = [w for w in conv_weights if w.shape[1] > 1]  # every conv but the image stem
    assert inner
    levels = 2 ** SPECS[label]
    for weight in inner:
        per_channel = [np.unique(channel).size for channel in weight.reshape(weight.shape[0], -1)]
        assert max(per_channel) <= levels


def test_check_catches_a_wrong_network(exported) -> None:
    """The W2A2 file against the same weights without quantizers: nearly nothing matches."""
    model, path = exported("w2a2", True)
    float_twin = create_model(
        "tiny_resnet", spec=QuantSpec.from_bits(32), num_classes=10, in_channels=1
    )
    kept = {"layers.0.0.conv1": 0.5, "residual:layers.1.0": 0.25}
    prune_(float_twin, kept, criterion="l1", example_input=torch.zeros(1, *SHAPE))
    float_twin.load_state_dict(model.state_dict())
    inputs = torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(2))
    check = verify_onnx(path, float_twin, inputs)
    assert not check.ok and check.matching_fraction < 0.1


def test_activations_agree_exactly_on_ties_and_zeros(tmp_path: Path) -> None:
    """Round-half-to-even and sign(0) = +1 hold in ONNX Runtime as in PyTorch, bit for bit."""

    class Activations(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([UnitGridRound(2)(x), SignedGridRound(3)(x), BinarySign()(x)], 1)

    path = export_onnx(Activations(), tmp_path / "acts.onnx", (1, 4, 64))
    steps = torch.arange(256.0) / 255
    zeros = torch.zeros(256)
    # half-steps of both grids (ties of the rounding), [-1, 1], then +0 and -0
    values = torch.cat([steps / 2, steps * 2 - 1, -steps, zeros, -zeros])
    inputs = values.reshape(5, 1, 4, 64)
    with torch.no_grad():
        expected = Activations()(inputs).numpy()
    actual = run_onnx(path, inputs)
    assert np.array_equal(actual, expected)
    assert (actual[3:, 2] == 1.0).all()  # the sign of +0 and -0


def test_missing_runtime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'autoprune\[onnx\]'"):
        run_onnx(tmp_path / "x.onnx", torch.zeros(1, *SHAPE))
