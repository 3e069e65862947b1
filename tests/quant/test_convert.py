"""``quantize_``: a plain torch network becomes the same quantized network autoprune builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.models import create_model
from autoprune.quant import Identity, QuantConv2d, QuantLinear, QuantSpec, quantize_


def plain_tiny_cnn(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """``tiny_cnn`` written with plain torch layers (same module names, float, ReLU)."""

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
                nn.BatchNorm2d(8),
                nn.ReLU(inplace=True),
                nn.Conv2d(8, 16, 3, padding=1, bias=False),
                nn.BatchNorm2d(16),
                nn.ReLU(inplace=True),
                nn.Conv2d(16, 16, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(16),
                nn.ReLU(inplace=True),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    return Plain()


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(),
        QuantSpec.from_bits(1),
        QuantSpec.from_bits(2),
        QuantSpec.from_options(bits=1, binary_weights="xnor", edge_bits=8),
        QuantSpec.from_options(wbits=4, abits=2, edge_bits="net"),
    ],
    ids=lambda spec: spec.label,
)
def test_converted_plain_net_equals_the_built_in_one(spec: QuantSpec) -> None:
    """Same weights in: the converted plain net computes exactly what ``tiny_cnn`` computes
    (edge layers, Hardtanh for sign activations and every quantizer included)."""
    torch.manual_seed(0)
    built = create_model("tiny_cnn", spec=spec, in_channels=1).eval()
    plain = plain_tiny_cnn()
    plain.load_state_dict(built.state_dict())
    converted = quantize_(plain, spec).eval()
    assert converted is plain
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(converted(x), built(x))
    assert str(converted.features) == str(built.features)
    assert repr(converted.fc.weight_quantizer) == repr(built.fc.weight_quantizer)
    assert repr(converted.fc.input_quantizer) == repr(built.fc.input_quantizer)


def test_parameters_and_state_dict_are_kept() -> None:
    plain = plain_tiny_cnn()
    tensors = {name: p for name, p in plain.named_parameters()}
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.1)  # built before the conversion
    quantize_(plain, QuantSpec.from_bits(2))
    assert {name: p for name, p in plain.named_parameters()} == tensors  # same objects
    after = plain.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], v) for k, v in state.items())
    plain(torch.randn(2, 1, 8, 8)).sum().backward()
    optimizer.step()  # updates the weights the quantized layers use
    assert not torch.equal(plain.features[3].weight, state["features.3.weight"])


def test_idempotent() -> None:
    spec = QuantSpec.from_bits(1)
    model = quantize_(plain_tiny_cnn(), spec)
    modules = list(model.modules())
    assert quantize_(model, spec) is model
    assert list(model.modules()) == modules


def test_binary_activations_replace_relu() -> None:
    model = quantize_(plain_tiny_cnn(), QuantSpec.from_bits(1))
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    tanhs = [m for m in model.modules() if isinstance(m, nn.Hardtanh)]
    assert len(tanhs) == 3 and all(m.inplace for m in tanhs)
    kept = quantize_(plain_tiny_cnn(), QuantSpec.from_bits(2))
    assert sum(isinstance(m, nn.ReLU) for m in kept.modules()) == 3


class DefinedOutOfOrder(nn.Module):
    """A 1x1 head conv defined before the stem that reads the image."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(8, 8, 1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        self.aux = nn.Linear(8, 8)  # defined last, run first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(torch.relu(self.stem(x))).mean((2, 3))
        return self.fc(self.aux(x))


def test_example_input_finds_the_layers_that_run_first_and_last() -> None:
    spec = QuantSpec.from_bits(2)
    by_order = quantize_(DefinedOutOfOrder(), spec)
    assert isinstance(by_order.head.input_quantizer, Identity)  # definition order: wrong
    assert by_order.aux.weight_quantizer.bits == 32
    model = DefinedOutOfOrder().train()
    bn_free_state = {k: v.clone() for k, v in model.state_dict().items()}
    quantize_(model, spec, example_input=torch.randn(2, 3, 8, 8))
    assert isinstance(model.stem.input_quantizer, Identity)
    assert model.stem.weight_quantizer.bits == 32
    assert model.head.weight_quantizer.bits == 2 and model.head.input_quantizer.bits == 2
    assert model.fc.weight_quantizer.bits == 32 and model.aux.weight_quantizer.bits == 2
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in bn_free_state.items())


def test_example_input_leaves_batchnorm_statistics_alone() -> None:
    model = plain_tiny_cnn().train()
    before = model.features[1].running_mean.clone()
    quantize_(model, QuantSpec.from_bits(2), example_input=torch.randn(3, 1, 8, 8) + 5)
    assert torch.equal(model.features[1].running_mean, before) and model.training


def test_shared_layer_gets_one_replacement() -> None:
    shared = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), shared, shared)
    quantize_(model, QuantSpec.from_bits(2))
    assert isinstance(model[1], QuantConv2d) and model[1] is model[2]


def test_a_single_layer_is_returned_converted() -> None:
    layer = nn.Linear(4, 2)
    converted = quantize_(layer, QuantSpec.from_bits(2))
    assert isinstance(converted, QuantLinear) and converted.weight is layer.weight


def test_custom_subclasses_are_left_with_a_warning() -> None:
    class Standardised(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
            return self._conv_forward(x, w, self.bias)

    model = nn.Sequential(nn.Conv2d(1, 4, 3), Standardised(4, 4, 3))
    with pytest.warns(UserWarning, match=r"1 layer.*1 \(Standardised\)"):
        quantize_(model, QuantSpec.from_bits(2))
    assert isinstance(model[0], QuantConv2d) and type(model[1]) is Standardised


def test_bad_example_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"example input of shape \(1, 3, 8, 8\).*accepts"):
        quantize_(plain_tiny_cnn(), QuantSpec.from_bits(2), example_input=torch.zeros(1, 3, 8, 8))
