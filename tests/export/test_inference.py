"""fold_quantizers: the folded copy computes exactly what the fake-quantized network does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.export import fold_quantizers, plain_activation
from autoprune.models import MODELS, create_model
from autoprune.quant import ACTIVATION_QUANTIZERS, Quantizer, QuantSpec

SPECS = {
    "fp32": QuantSpec.from_bits(32),
    "w2a2": QuantSpec.from_bits(2),
    "bnn": QuantSpec.from_bits(1),
    "xnor-edge8": QuantSpec.from_options(bits=1, binary_weights="xnor", edge_bits=8),
    "w4a8-net": QuantSpec.from_options(wbits=4, abits=8, edge_bits="net"),
}


def _awkward_inputs() -> torch.Tensor:
    """Zeros of both signs, the clip ends, every half-step of a 2..8-bit grid, noise."""
    halves = torch.cat([(torch.arange(2 * (2**b - 1) + 1) / (2 * (2**b - 1))) for b in (2, 3, 8)])
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 0.5, -0.5, 2.0, -2.0])
    noise = torch.randn(500, generator=torch.Generator().manual_seed(0))
    return torch.cat([special, halves, -halves, 2 * halves - 1, noise])


@pytest.mark.parametrize("name", ACTIVATION_QUANTIZERS.names())
def test_plain_activations_equal_the_quantizers(name: str) -> None:
    factory = ACTIVATION_QUANTIZERS.get(name)
    for bits in (1, 2, 3, 8, 32):
        try:
            quantizer = factory(bits)
        except ValueError:
            continue
        if quantizer.bits != bits:
            continue
        x = _awkward_inputs()
        assert torch.equal(plain_activation(quantizer)(x.clone()), quantizer(x.clone())), bits


def test_binary_sign_of_zero_is_plus_one() -> None:
    sign = plain_activation(ACTIVATION_QUANTIZERS.get("bnn")(1))
    assert sign(torch.tensor([0.0, -0.0, -1e-30, 3.0])).tolist() == [1.0, 1.0, -1.0, 1.0]


def test_unknown_quantizer_has_no_form() -> None:
    class Odd(Quantizer):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(ConfigError, match="no inference form"):
        plain_activation(Odd(4))


@pytest.mark.parametrize("label", SPECS)
@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_resnet"])
def test_folded_model_is_exact_and_plain(name: str, label: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, spec=SPECS[label], num_classes=10, in_channels=1)
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 1, 8, 8))  # BatchNorm statistics away from 0 / 1
    model.eval()
    folded = fold_quantizers(model)
    inputs = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(folded(inputs), model(inputs))
    assert not any(isinstance(m, Quantizer) for m in folded.modules())
    assert not any(p.requires_grad for p in folded.parameters())
    assert any(isinstance(m, Quantizer) for m in model.modules())  # the original is untouched
    spec = SPECS[label]
    if spec.weight_scheme == "dorefa":  # inner conv weights hold the 2^k grid values only
        inner = [m for n, m in folded.named_modules() if isinstance(m, nn.Conv2d) and n][1]
        assert inner.weight.unique().numel() <= 2**spec.wbits


LARGE = {"resnet18", "resnet18_imagenet", "resnet34_imagenet", "resnet56"}  # slow to build


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in MODELS.names()]
)
def test_every_registered_model_folds_exactly(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, bits=1, num_classes=10, in_channels=3).eval()
    inputs = torch.randn(2, 3, 32, 32)
    folded = fold_quantizers(model)
    with torch.no_grad():
        assert torch.equal(folded(inputs), model(inputs))
    assert not any(isinstance(m, Quantizer) for m in folded.modules())
