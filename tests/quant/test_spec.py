"""QuantSpec: options to schemes, labels, refused combinations, stored dicts, edge layers."""

from __future__ import annotations

import json

import pytest
import torch

from autoprune.errors import ConfigError
from autoprune.models import create_model
from autoprune.quant import (
    DoReFaActivation,
    DoReFaWeight,
    Identity,
    QuantConv2d,
    QuantLinear,
    QuantSpec,
    Sign,
    SignedUniformActivation,
    XNORWeight,
)


@pytest.mark.parametrize(
    ("options", "schemes", "label"),
    [
        ({}, ("fp", 32, "fp", 32), "fp32"),
        ({"bits": 32}, ("fp", 32, "fp", 32), "fp32"),
        ({"bits": 1}, ("bnn", 1, "bnn", 1), "bnn"),
        ({"bits": 1, "binary_weights": "xnor"}, ("xnor", 1, "bnn", 1), "xnor"),
        ({"wbits": 1, "binary_weights": "xnor", "abits": 2}, ("xnor", 1, "dorefa", 2), "xnor-a2"),
        ({"bits": 2}, ("dorefa", 2, "dorefa", 2), "w2a2"),
        ({"bits": 2, "wbits": 1}, ("bnn", 1, "dorefa", 2), "w1a2"),
        ({"wbits": 4}, ("dorefa", 4, "fp", 32), "w4a32"),
        ({"bits": 8, "abits": 1}, ("dorefa", 8, "bnn", 1), "w8a1"),
        ({"bits": 2, "edge_bits": 8}, ("dorefa", 2, "dorefa", 2), "w2a2-edge8"),
        ({"bits": 1, "edge_bits": "net"}, ("bnn", 1, "bnn", 1), "bnn-edgenet"),
        ({"bits": 1, "edge_bits": "8"}, ("bnn", 1, "bnn", 1), "bnn-edge8"),
        ({"bits": 32, "edge_bits": "net"}, ("fp", 32, "fp", 32), "fp32"),  # nothing to quantize
    ],
)
def test_from_options(options: dict, schemes: tuple, label: str) -> None:
    spec = QuantSpec.from_options(**options)
    assert (spec.weight_scheme, spec.wbits, spec.activation_scheme, spec.abits) == schemes
    assert spec.label == label
    assert QuantSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_from_bits_is_from_options_with_bits() -> None:
    for bits in (1, 2, 5, 32):
        assert QuantSpec.from_bits(bits) == QuantSpec.from_options(bits=bits)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bits": 0}, "unsupported bit-width 0"),
        ({"bits": 9}, "unsupported bit-width 9"),
        ({"bits": 33}, "unsupported bit-width 33"),
        ({"bits": 2, "wbits": 16}, "unsupported weight bit-width 16"),
        ({"bits": 2, "abits": 0}, "unsupported activation bit-width 0"),
        ({"bits": 2, "binary_weights": "xnor"}, "XNOR weights are binary"),
        ({"bits": 1, "wbits": 4, "binary_weights": "xnor"}, "XNOR weights are binary"),
        ({"bits": 1, "binary_weights": "ternary"}, "unknown binary weight scheme"),
        ({"bits": 2, "edge_bits": 4}, "unsupported edge bits 4"),
        ({"bits": 2, "edge_bits": "full"}, "unsupported edge bits 'full'"),
        ({"bits": 32, "edge_bits": 8}, "8-bit edge layers need a quantized network"),
    ],
)
def test_impossible_combinations_are_one_line_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        QuantSpec.from_options(**options)
    text = str(error.value)
    assert "\n" not in text and ": " in text  # problem, then the fix


def test_dicts_stored_before_xnor_and_edge_options_still_load() -> None:
    """Checkpoints and studies hold exactly these dicts (written by the earlier from_bits)."""
    stored = {
        "bnn": {"weight_scheme": "bnn", "wbits": 1, "activation_scheme": "bnn", "abits": 1},
        "w2a2": {"weight_scheme": "dorefa", "wbits": 2, "activation_scheme": "dorefa", "abits": 2},
        "fp32": {"weight_scheme": "fp", "wbits": 32, "activation_scheme": "fp", "abits": 32},
    }
    for label, data in stored.items():
        data = {**data, "edge_bits": 32}
        spec = QuantSpec.from_dict(data)
        assert spec.label == label
        # the same options give the same dict: study identities and cache keys do not move
        assert spec.to_dict() == data == QuantSpec.from_bits(spec.wbits).to_dict()


def test_inconsistent_stored_dict_is_refused() -> None:
    bad = {"weight_scheme": "dorefa", "wbits": 1, "activation_scheme": "bnn", "abits": 1}
    with pytest.raises(ConfigError, match="cannot have 1 bits"):
        QuantSpec.from_dict(bad)
    with pytest.raises(ConfigError, match="unknown weight quantizer"):
        QuantSpec(weight_scheme="ternary", wbits=2)
    with pytest.raises(ConfigError, match="unsupported edge bits"):
        QuantSpec(edge_bits=16)


@pytest.mark.parametrize(
    ("options", "edge_weight", "classifier_input"),
    [
        ({"bits": 2}, (Identity, 32), (Identity, 32)),
        ({"bits": 2, "edge_bits": 8}, (DoReFaWeight, 8), (DoReFaActivation, 8)),
        ({"bits": 1, "edge_bits": 8}, (DoReFaWeight, 8), (SignedUniformActivation, 8)),
        (
            {"bits": 1, "binary_weights": "xnor", "edge_bits": 8},
            (DoReFaWeight, 8),
            (SignedUniformActivation, 8),
        ),
        ({"wbits": 4, "edge_bits": 8}, (DoReFaWeight, 8), (Identity, 32)),  # float activations
        ({"abits": 4, "edge_bits": 8}, (Identity, 32), (DoReFaActivation, 8)),  # float weights
        ({"bits": 2, "edge_bits": "net"}, (DoReFaWeight, 2), (DoReFaActivation, 2)),
        ({"bits": 1, "binary_weights": "xnor", "edge_bits": "net"}, (XNORWeight, 1), (Sign, 1)),
    ],
)
def test_edge_quantizers(options: dict, edge_weight: tuple, classifier_input: tuple) -> None:
    spec = QuantSpec.from_options(**options)
    weight, inputs = spec.weight_quantizer(edge=True), spec.input_quantizer(edge=True)
    assert (type(weight), weight.bits) == edge_weight
    assert (type(inputs), inputs.bits) == classifier_input
    # inner layers always use the network's own quantizers
    assert spec.weight_quantizer().bits == spec.wbits
    assert spec.input_quantizer().bits == spec.abits


def test_edge8_bnn_network_layout() -> None:
    spec = QuantSpec.from_options(bits=1, edge_bits=8)
    model = create_model("tiny_cnn", spec=spec, in_channels=1)
    layers = [m for m in model.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    stem, inner, classifier = layers[0], layers[1:-1], layers[-1]
    assert isinstance(stem.input_quantizer, Identity)  # the raw image is never quantized
    assert isinstance(stem.weight_quantizer, DoReFaWeight) and stem.weight_quantizer.bits == 8
    assert all(isinstance(m.weight_quantizer, Sign) for m in inner)
    assert all(isinstance(m.input_quantizer, Sign) for m in inner)
    assert isinstance(classifier.weight_quantizer, DoReFaWeight)
    assert isinstance(classifier.input_quantizer, SignedUniformActivation)
    # Hardtanh outputs in [-1, 1], average-pooled: the classifier input keeps its sign
    seen = []
    classifier.input_quantizer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model(torch.randn(4, 1, 8, 8))
    assert seen[0].min() < 0 < seen[0].max() and seen[0].abs().max() <= 1
