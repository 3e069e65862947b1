"""The model registry and ``create_model``: a new architecture is one file with a factory."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from autoprune.models.external import create_external_model, is_external
from autoprune.quant import QuantSpec
from autoprune.registry import Registry, UnknownNameError

ModelFactory = Callable[..., nn.Module]
"""``factory(*, spec: QuantSpec, num_classes: int, in_channels: int) -> nn.Module``."""

MODELS: Registry[ModelFactory] = Registry("model")
register_model = MODELS.register


def create_model(
    name: str,
    *,
    bits: int = 32,
    num_classes: int = 10,
    in_channels: int = 3,
    spec: QuantSpec | None = None,
) -> nn.Module:
    """Build a model; ``bits=32`` is the float model, ``spec`` overrides ``bits``.

    ``name`` is a registered model (``MODELS``) or your own factory as
    ``"package.module:factory"`` (see ``autoprune.models.external``): it is imported, called
    and its float network quantized with ``autoprune.quant.quantize_``.
    """
    spec = spec or QuantSpec.from_bits(bits)
    if is_external(name):
        return create_external_model(
            name, spec=spec, num_classes=num_classes, in_channels=in_channels
        )
    try:
        factory = MODELS.get(name)
    except UnknownNameError as error:
        raise UnknownNameError(f"{error}, or your own as package.module:factory") from None
    return factory(spec=spec, num_classes=num_classes, in_channels=in_channels)
