"""Device choice: CUDA when present, else CPU; always overridable by name."""

from __future__ import annotations

import torch

from autoprune.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks ``cuda`` if available, else ``cpu``; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available: use --device cpu")
    return device
