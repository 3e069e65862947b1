"""Per-layer bit-widths: which layers may change, exact costs, the state dict untouched, the
widths read back, and every bad request refused in one line."""

from __future__ import annotations

import pytest
import torch

from autoprune.errors import ConfigError
from autoprune.metrics import measure
from autoprune.models import create_model
from autoprune.quant import (
    QuantSpec,
    bit_layers,
    check_bit_choices,
    layer_bits,
    parse_bit_choices,
    set_layer_bits_,
)

W2A2 = QuantSpec.from_bits(2)


def tiny(spec: QuantSpec = W2A2) -> torch.nn.Module:
    return create_model("tiny_cnn", spec=spec, num_classes=10, in_channels=1)


def test_inner_dorefa_layers_qualify_but_not_the_stem_or_classifier() -> None:
    model = tiny()
    names = bit_layers(model)
    assert names == ["features.3", "features.6"]  # features.0 reads the image; fc classifies
    edge_net = tiny(QuantSpec.from_options(bits=2, edge_bits="net"))
    assert bit_layers(edge_net) == names  # the classifier keeps its width there too
    assert bit_layers(tiny(QuantSpec.from_bits(1))) == []  # no DoReFa layer in a BNN


def test_widths_change_costs_exactly_and_leave_the_weights_alone() -> None:
    model = tiny()
    before = measure(model, (1, 8, 8))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    layer = model.features[3]
    weights = layer.weight.numel()
    macs = next(c for c in before.layers if c.name == "features.3").macs

    assert set_layer_bits_(model, {"features.3": 8}) is model
    after = measure(model, (1, 8, 8))
    assert after.size_bits - before.size_bits == weights * (8 - 2)
    assert after.bops - before.bops == macs * (8 * 8 - 2 * 2)  # weights and input together
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert layer_bits(model, W2A2) == {"features.3": 8}

    set_layer_bits_(model, {"features.3": 2})
    assert layer_bits(model, W2A2) == {} and measure(model, (1, 8, 8)) == before


def test_a_higher_width_quantizes_the_same_latent_weights_more_finely() -> None:
    torch.manual_seed(0)
    model = tiny()
    coarse = model.features[3].quantized_weight().unique().numel()
    set_layer_bits_(model, {"features.3": 4})
    assert coarse <= 4 < model.features[3].quantized_weight().unique().numel() <= 16


@pytest.mark.parametrize(
    ("bits", "message"),
    [
        ({"features.0": 4}, "only the inner DoReFa layers"),
        ({"fc": 4}, "only the inner DoReFa layers"),
        ({"nope": 4}, "only the inner DoReFa layers"),
        ({"features.3": 9}, "use 2..8"),
        ({"features.3": 1}, "use 2..8"),
    ],
)
def test_a_layer_that_cannot_change_or_a_bad_width_changes_nothing(
    bits: dict[str, int], message: str
) -> None:
    model = tiny()
    with pytest.raises(ConfigError, match=message):
        set_layer_bits_(model, {"features.6": 4, **bits})
    assert layer_bits(model, W2A2) == {}  # checked before any layer changed


def test_choices_are_parsed_and_checked_against_the_network() -> None:
    assert parse_bit_choices("8, 2,4,2") == (2, 4, 8)
    assert parse_bit_choices([4, 2]) == (2, 4)
    for text in ("2,x", "2.5,4", ""):
        with pytest.raises(ConfigError, match="whole numbers separated by commas"):
            parse_bit_choices(text)
    check_bit_choices((2, 4, 8), W2A2)
    with pytest.raises(ConfigError, match="leave out the network's own 2 bits"):
        check_bit_choices((4, 8), W2A2)
    with pytest.raises(ConfigError, match="two or more different widths"):
        check_bit_choices((2,), W2A2)
    with pytest.raises(ConfigError, match="unsupported searched bit-width 16"):
        check_bit_choices((2, 16), W2A2)
    with pytest.raises(ConfigError, match=r"need a DoReFa network.*bnn"):
        check_bit_choices((1, 2), QuantSpec.from_bits(1))
    with pytest.raises(ConfigError, match="w2a32"):
        check_bit_choices((2, 4), QuantSpec.from_options(wbits=2))
    # a searched width sets weights and input together: W2A4's own point has no such width
    with pytest.raises(ConfigError, match="2-bit weights and 4-bit activations"):
        check_bit_choices((2, 4, 8), QuantSpec.from_options(wbits=2, abits=4))
