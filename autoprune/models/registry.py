"""The model registry and ``create_model``: a new architecture is one file with a factory."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from autoprune.quant import QuantSpec
from autoprune.registry import Registry

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
    """Build a registered model; ``bits=32`` is the float model, ``spec`` overrides ``bits``."""
    factory = MODELS.get(name)
    return factory(
        spec=spec or QuantSpec.from_bits(bits), num_classes=num_classes, in_channels=in_channels
    )
