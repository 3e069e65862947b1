"""Per-layer bit-widths: a DoReFa network whose inner layers need not share one precision.

A mixed-precision network is its ``QuantSpec`` plus the layers whose weights and input take
another width, ``{layer name: bits}``. ``set_layer_bits_`` swaps those layers' quantizers
(parameter-free children, so the state dict is unchanged) and ``layer_bits`` reads the
widths back. Only the inner layers of a DoReFa network qualify (``bit_layers``): a conv or
linear whose weights and input activation are both DoReFa-quantized. The first conv (it
reads the raw image, without an input quantizer) and the classifier keep their precision.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from autoprune.errors import ConfigError
from autoprune.quant.dorefa import DOREFA_BITS, DoReFaActivation, DoReFaWeight
from autoprune.quant.layers import QuantConv2d, QuantLinear
from autoprune.quant.spec import QuantSpec

_LAYERS = (QuantConv2d, QuantLinear)


def _dorefa(spec: QuantSpec) -> bool:
    return spec.weight_scheme == "dorefa" and spec.activation_scheme == "dorefa"


def takes_mixed_bits(spec: QuantSpec) -> bool:
    """Whether a search can choose ``spec``'s layer widths: DoReFa weights and activations at
    one width, since a searched width sets a layer's weights and input together."""
    return _dorefa(spec) and spec.wbits == spec.abits


def check_mixed_spec(spec: QuantSpec) -> None:
    """``ConfigError`` unless ``takes_mixed_bits(spec)``."""
    if takes_mixed_bits(spec):
        return
    if _dorefa(spec):
        raise ConfigError(
            f"a searched width sets a layer's weights and activations together, but this "
            f"network has {spec.wbits}-bit weights and {spec.abits}-bit activations: search "
            "its ratios alone"
        )
    raise ConfigError(
        f"per-layer bit-widths need a DoReFa network with quantized weights and "
        f"activations (2..8 bits), but this one is {spec.label}: search its ratios alone"
    )


def parse_bit_choices(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``"2,4,8"`` (or a sequence of ints) as ascending distinct widths; ``ConfigError`` if
    something is not a whole number."""
    items = text.split(",") if isinstance(text, str) else list(text)
    widths = []
    for item in items:
        try:
            if isinstance(item, bool | float):
                raise ValueError
            widths.append(int(str(item).strip()))
        except ValueError:
            raise ConfigError(
                f"searched bit-widths must be whole numbers separated by commas, such as "
                f"2,4,8; got {text!r}"
            ) from None
    return tuple(sorted(set(widths)))


def check_bit_choices(choices: tuple[int, ...], spec: QuantSpec) -> None:
    """``ConfigError`` unless ``choices`` are two or more DoReFa widths that include the
    network's own (its unpruned reference point keeps every layer at it)."""
    check_mixed_spec(spec)
    wrong = [bits for bits in choices if isinstance(bits, bool) or bits not in DOREFA_BITS]
    if wrong:
        raise ConfigError(
            f"unsupported searched bit-width {wrong[0]!r}: DoReFa layers take 2..8 bits, e.g. 2,4,8"
        )
    if len(set(choices)) < 2:
        raise ConfigError(
            f"searching bit-widths needs two or more different widths, got {list(choices)}: "
            "e.g. 2,4,8"
        )
    if spec.wbits not in choices:
        raise ConfigError(
            f"the searched bit-widths {','.join(map(str, choices))} leave out the network's "
            f"own {spec.wbits} bits: include {spec.wbits}, so the unpruned network is a point "
            "of the search"
        )


def _is_inner(layer: nn.Module) -> bool:
    return (
        isinstance(layer, _LAYERS)
        and isinstance(layer.weight_quantizer, DoReFaWeight)
        and isinstance(layer.input_quantizer, DoReFaActivation)
    )


def bit_layers(model: nn.Module) -> list[str]:
    """The layers whose width can change, in definition order (the classifier excluded)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None
    return [name for name, m in model.named_modules() if _is_inner(m) and name != head]


def set_layer_bits_(model: nn.Module, bits: Mapping[str, int]) -> nn.Module:
    """Give each named layer DoReFa weights and input at its width, in place; returns ``model``.

    A name that is not one of ``bit_layers(model)`` or a width outside 2..8 is a
    ``ConfigError`` (nothing is changed then).
    """
    allowed = set(bit_layers(model))
    modules = dict(model.named_modules())
    for name, width in bits.items():
        if name not in allowed:
            raise ConfigError(
                f"layer {name!r} cannot take its own bit-width: only the inner DoReFa layers "
                "can (not the first conv, the classifier or a float layer)"
            )
        if isinstance(width, bool) or width not in DOREFA_BITS:
            raise ConfigError(f"layer {name!r}: unsupported bit-width {width!r}, use 2..8")
    for name, width in bits.items():
        layer = modules[name]
        layer.weight_quantizer = DoReFaWeight(int(width))
        layer.input_quantizer = DoReFaActivation(int(width))
    return model


def layer_bits(model: nn.Module, spec: QuantSpec) -> dict[str, int]:
    """The inner layers whose width is not the spec's, with their width: what
    ``set_layer_bits_`` needs to turn the spec's network into this one (empty: uniform)."""
    modules = dict(model.named_modules())
    mixed = {}
    for name in bit_layers(model):
        layer = modules[name]
        width = layer.weight_quantizer.bits
        if width != spec.wbits or layer.input_quantizer.bits != spec.abits:
            mixed[name] = width
    return mixed
