"""Checkpoints as plain data: the state dict plus the config that rebuilds the model.

They load with ``torch.load(weights_only=True)``: no pickled classes, so a checkpoint opens in
any version of the code that knows the model's name. A pruned model also records its kept
channels per group, from which the smaller architecture is rebuilt before loading weights.

A checkpoint written by ``autoprune train`` also holds a ``training`` section: the epochs done
and, until the last one, the optimizer, data-order and RNG state to resume from (see
``autoprune.train.run``). The section is optional, so format version 1 covers both kinds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.config import ModelConfig
from autoprune.errors import CheckpointError
from autoprune.models import create_model
from autoprune.prune import shrink_to_

FORMAT = "autoprune-checkpoint"
VERSION = 1


def build_model(
    model_config: ModelConfig, kept_channels: dict[str, int] | None = None
) -> nn.Module:
    """The (possibly pruned) architecture described by ``model_config``, freshly initialised.

    Works inside a caller's ``no_grad`` or ``inference_mode``: Torch-Pruning traces the
    network with autograd, and parameters made in inference mode could never train.
    """
    with torch.inference_mode(False), torch.enable_grad():
        model = create_model(
            model_config.name,
            spec=model_config.spec,
            num_classes=model_config.num_classes,
            in_channels=model_config.in_channels,
        )
        if kept_channels:
            example = torch.zeros(1, *model_config.input_shape)
            shrink_to_(model, kept_channels, example_input=example)
    return model


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_config: ModelConfig,
    *,
    kept_channels: dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write atomically (temp file, then rename) so an interrupted save never corrupts one.

    ``training`` (plain data and tensors) is stored as the optional ``training`` section.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_config.to_dict(),
        "kept_channels": dict(kept_channels or {}),
        "metadata": metadata or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if training is not None:
        payload["training"] = training
    partial = path.with_name(path.name + ".partial")
    try:
        torch.save(payload, partial)
        partial.replace(path)
    except BaseException:  # Ctrl-C or a full disk mid-write: the old file stays, no debris
        partial.unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's plain-data payload, validated; ``CheckpointError`` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found: check the path or create one with "
            "`autoprune train --out PATH`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on damaged files; all mean corrupt
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not an autoprune checkpoint "
            f"({type(error).__name__}): re-create it with `autoprune train --out PATH`"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an autoprune checkpoint: re-create it with `autoprune train --out PATH`"
        )
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload['version']}, newer "
            f"than this autoprune ({VERSION}): upgrade autoprune"
        )
    return payload


def load_state_strictly(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with an error that names the first mismatching keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = (
        [f"missing {', '.join(missing[:3])}"] * bool(missing)
        + [f"unexpected {', '.join(unexpected[:3])}"] * bool(unexpected)
        + [f"shape {', '.join(shapes[:3])}"] * bool(shapes)
    )
    if problems:
        raise CheckpointError(
            f"{source} does not match the model ({'; '.join(problems)}): use a checkpoint made "
            "for this model, bit-width and dataset"
        )
    model.load_state_dict(state_dict)


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The ready model (pruned or not) stored in an autoprune checkpoint, in eval mode."""
    payload = read_checkpoint(path)
    try:
        model_config = ModelConfig.from_dict(payload["model"])
        model = build_model(model_config, payload.get("kept_channels") or None)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} has an invalid model description ({error}): "
            "re-create it with `autoprune train --out PATH`"
        ) from error
    load_state_strictly(model, payload["state_dict"], f"checkpoint {path}")
    return model.to(device).eval()
