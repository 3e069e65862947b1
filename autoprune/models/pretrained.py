"""Pretrained starting points: load a float or quantized checkpoint into a (quantized) model.

Quantizers hold no parameters, so a network's state dict has the same keys and shapes at every
bit-width: float weights (e.g. torchvision's ImageNet ResNets for ``resnet18_imagenet``) are a
starting point for quantization-aware training at any precision, and the reverse works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.checkpoint import FORMAT, load_state_strictly
from autoprune.errors import CheckpointError

NESTING_KEYS = ("state_dict", "model_state_dict", "model")
"""Keys under which training scripts commonly nest the weights, looked up in this order."""
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes added by ``nn.DataParallel`` / ``DistributedDataParallel`` and
``torch.compile``; stripped, so such checkpoints load into the bare model."""
MAX_NESTING = 3


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _unwrap(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``payload``: an autoprune checkpoint's weights, a raw state dict,
    or one nested under ``NESTING_KEYS`` (a few levels deep)."""
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        if payload.get("kept_channels"):
            raise CheckpointError(
                f"{path} holds a pruned network ({len(payload['kept_channels'])} groups "
                "shrunk), which does not fit the full model: start from an unpruned checkpoint"
            )
        payload = payload.get("state_dict")
    for _ in range(MAX_NESTING):
        if _is_state_dict(payload) or not isinstance(payload, dict):
            break
        nested = next((payload[key] for key in NESTING_KEYS if key in payload), None)
        if nested is None:
            break
        payload = nested
    if not _is_state_dict(payload):
        found = (
            f"keys {', '.join(map(str, list(payload)[:5]))}"
            if isinstance(payload, dict)
            else f"a {type(payload).__name__}"
        )
        raise CheckpointError(
            f"{path} holds no state dict ({found}): save one with "
            "torch.save(model.state_dict(), path), alone or under a 'state_dict' key"
        )
    return payload


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights stored in ``path``: an autoprune checkpoint (unpruned) or a raw state dict
    (``.pt``/``.pth``, possibly nested under ``state_dict``, ``model_state_dict`` or ``model``,
    keys possibly prefixed by ``module.``), read with ``torch.load(weights_only=True)`` so no
    code in the file runs. Any problem is a one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights {path} not found: check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # damaged files raise many types; all mean unusable
        raise CheckpointError(
            f"pretrained weights {path} are corrupt or hold more than tensors and plain data "
            f"({type(error).__name__}): save them with torch.save(model.state_dict(), path)"
        ) from error
    state = _unwrap(payload, path)
    renamed = {_strip_wrappers(key): value for key, value in state.items()}
    if len(renamed) != len(state):
        raise CheckpointError(
            f"{path} has keys that clash once the 'module.' prefix is removed: save the bare "
            "model's state dict"
        )
    return renamed


def load_pretrained_(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (in place) and return it.

    Keys and shapes must match exactly; otherwise a ``CheckpointError`` names the first missing,
    unexpected and mis-shaped entries.
    """
    load_state_strictly(model, read_state_dict(path), f"pretrained weights {Path(path)}")
    return model
