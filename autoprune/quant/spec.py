"""``QuantSpec``: how a network is quantized, as plain data.

A spec holds the weight and activation schemes with their bit-widths and the precision of
the edge layers (first conv and classifier). ``QuantSpec.from_options`` is the one way to
build it from user options; ``to_dict``/``from_dict`` store it in checkpoints and studies
as ``{weight_scheme, wbits, activation_scheme, abits, edge_bits}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from autoprune.errors import ConfigError
from autoprune.quant.quantizers import ACTIVATION_QUANTIZERS, WEIGHT_QUANTIZERS, Quantizer

SUPPORTED_BITS = (1, 2, 3, 4, 5, 6, 7, 8, 32)
BINARY_WEIGHT_SCHEMES = ("bnn", "xnor")
EDGE_NET = "net"
"""``edge_bits`` value meaning: the edge layers use the network's own quantizers."""
EDGE_CHOICES: tuple[int | str, ...] = (32, 8, EDGE_NET)
EDGE_QUANT_BITS = 8  # edge_bits 8: DoReFa 8-bit weights, 8-bit classifier input


def parse_edge_bits(value: int | str) -> int | str:
    """``32``, ``8`` (int or text) or ``"net"``; anything else is a ``ConfigError``."""
    text = str(value).strip().lower()
    if text == EDGE_NET:
        return EDGE_NET
    if text in ("32", "8"):
        return int(text)
    raise ConfigError(
        f"unsupported edge bits {value!r}: use 32 (float first and last layer), 8, "
        "or net (the network's own precision)"
    )


def _check_bits(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or value not in SUPPORTED_BITS):
        raise ConfigError(
            f"unsupported {what}bit-width {value}: use 1 (binary), 2..8 (DoReFa) "
            "or 32 (full precision)"
        )


def _weight_scheme(wbits: int, binary_weights: str) -> str:
    return binary_weights if wbits == 1 else "fp" if wbits == 32 else "dorefa"


def _activation_scheme(abits: int) -> str:
    return "bnn" if abits == 1 else "fp" if abits == 32 else "dorefa"


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize a network: scheme and bit-width of weights and activations.

    Schemes are registry names: weights ``fp`` (32), ``bnn`` (1), ``xnor`` (1), ``dorefa``
    (2..8); activations ``fp`` (32), ``bnn`` (sign, 1), ``dorefa`` (2..8).

    ``edge_bits`` is the precision of the first conv and the classifier; the raw image
    entering the first conv is never quantized:

    - ``32`` (default, the literature's): both layers full precision;
    - ``8``: DoReFa 8-bit weights, and the classifier's input at 8 bits with a quantizer
      suited to its range (DoReFa on [0, 1] after ReLU, signed uniform on [-1, 1] after
      Hardtanh); a part the network keeps at 32 bits (e.g. the activations of ``w4a32``)
      stays at 32 bits there too, so an edge layer is never less precise than the rest;
    - ``"net"``: the network's own quantizers.
    """

    weight_scheme: str = "fp"
    wbits: int = 32
    activation_scheme: str = "fp"
    abits: int = 32
    edge_bits: int | str = 32

    def __post_init__(self) -> None:
        # checkpoints and studies hold specs as plain dicts: refuse inconsistent ones early
        for registry, scheme, bits in (
            (WEIGHT_QUANTIZERS, self.weight_scheme, self.wbits),
            (ACTIVATION_QUANTIZERS, self.activation_scheme, self.abits),
        ):
            factory = registry.get(scheme)  # an unknown name raises with the known ones
            try:
                built = factory(bits).bits
            except ValueError:  # the quantizer refuses the bit-width
                built = None
            if built != bits:
                raise ConfigError(
                    f"inconsistent quantization: {registry.kind} {scheme!r} cannot have {bits} "
                    "bits; build the spec with QuantSpec.from_options"
                )
        if self.edge_bits not in EDGE_CHOICES or isinstance(self.edge_bits, bool):
            parse_edge_bits(self.edge_bits)  # raises with the fix

    @classmethod
    def from_options(
        cls,
        *,
        bits: int | None = None,
        wbits: int | None = None,
        abits: int | None = None,
        binary_weights: str | None = None,
        edge_bits: int | str | None = None,
    ) -> QuantSpec:
        """The spec for user options; ``bits`` sets both widths, ``wbits``/``abits`` override.

        Unset widths are 32. Weights: 1 -> ``binary_weights`` (``bnn`` sign, the default, or
        ``xnor`` sign times a per-channel scale), 2..8 -> DoReFa, 32 -> float. Activations:
        1 -> sign, 2..8 -> DoReFa, 32 -> float. ``edge_bits``: 32 (default), 8 or ``"net"``
        (see the class). Impossible combinations raise ``ConfigError``.
        """
        binary_weights = "bnn" if binary_weights is None else binary_weights
        edge_bits = 32 if edge_bits is None else edge_bits
        _check_bits(bits, "")
        _check_bits(wbits, "weight ")
        _check_bits(abits, "activation ")
        if binary_weights not in BINARY_WEIGHT_SCHEMES:
            raise ConfigError(
                f"unknown binary weight scheme {binary_weights!r}: use bnn (sign) "
                "or xnor (sign times a per-channel scale)"
            )
        fallback = bits if bits is not None else 32
        weight_width = wbits if wbits is not None else fallback
        activation_width = abits if abits is not None else fallback
        if binary_weights == "xnor" and weight_width != 1:
            raise ConfigError(
                f"XNOR weights are binary but the weights would have {weight_width} bits: "
                "set the weight bits (or bits) to 1, or use bnn/DoReFa weights"
            )
        edge = parse_edge_bits(edge_bits)
        if weight_width == 32 and activation_width == 32:
            if edge == EDGE_QUANT_BITS:
                raise ConfigError(
                    "8-bit edge layers need a quantized network, but weights and activations "
                    "are 32-bit: drop the edge bits or set bits below 32"
                )
            edge = 32  # a float network's edges are float whatever was asked
        return cls(
            weight_scheme=_weight_scheme(weight_width, binary_weights),
            wbits=weight_width,
            activation_scheme=_activation_scheme(activation_width),
            abits=activation_width,
            edge_bits=edge,
        )

    @classmethod
    def from_bits(cls, bits: int) -> QuantSpec:
        """``1``: BNN; ``2..8``: DoReFa with k-bit weights and activations; ``32``: float."""
        return cls.from_options(bits=bits)

    @property
    def label(self) -> str:
        """Short name: ``fp32``, ``bnn``, ``xnor``, ``w2a2``, ``w1a2``, ``xnor-a2``, ``w4a32``;
        ``-edge8`` / ``-edgenet`` appended when the edge layers are not float."""
        if self.wbits == 32 and self.abits == 32:
            name = "fp32"
        elif self.weight_scheme == "bnn" and self.activation_scheme == "bnn":
            name = "bnn"
        elif self.weight_scheme == "xnor":
            name = "xnor" if self.activation_scheme == "bnn" else f"xnor-a{self.abits}"
        else:
            name = f"w{self.wbits}a{self.abits}"
        return name if self.edge_bits == 32 else f"{name}-edge{self.edge_bits}"

    @property
    def binary(self) -> bool:
        """Binary (sign) activations: the network uses Hardtanh, whose outputs are in [-1, 1]."""
        return self.activation_scheme == "bnn"

    def weight_quantizer(self, edge: bool = False) -> Quantizer:
        """The weight quantizer of an inner layer, or of an edge layer (first conv, classifier)."""
        if edge and self.edge_bits != EDGE_NET:
            if self.edge_bits == 32 or self.wbits == 32:
                return WEIGHT_QUANTIZERS.get("fp")()
            return WEIGHT_QUANTIZERS.get("dorefa")(EDGE_QUANT_BITS)
        return WEIGHT_QUANTIZERS.get(self.weight_scheme)(self.wbits)

    def input_quantizer(self, edge: bool = False) -> Quantizer:
        """The input quantizer of an inner layer, or (``edge=True``) of the classifier.

        The first conv reads the raw image and takes no input quantizer at all.
        """
        if edge and self.edge_bits != EDGE_NET:
            if self.edge_bits == 32 or self.abits == 32:
                return ACTIVATION_QUANTIZERS.get("fp")()
            scheme = "signed" if self.binary else "dorefa"
            return ACTIVATION_QUANTIZERS.get(scheme)(EDGE_QUANT_BITS)
        return ACTIVATION_QUANTIZERS.get(self.activation_scheme)(self.abits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantSpec:
        """Reads what ``to_dict`` wrote, including specs stored before XNOR and edge 8 existed."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})
