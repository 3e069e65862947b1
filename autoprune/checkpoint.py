"""Checkpoint files as plain data: the format, atomic writing, validated reading, strict loading.

A checkpoint holds the state dict plus the ``ModelConfig`` that rebuilds the network. It is
read with ``torch.load(weights_only=True)``: no pickled classes, so a file opens in any version
of the code that knows the model's name, and opening one runs no code. A pruned network also
records its kept channels per group, from which the smaller architecture is rebuilt
(``autoprune.models.load_checkpoint``).

A checkpoint written by ``autoprune train`` also holds a ``training`` section: the epochs done
and, until the last one, the optimizer, data-order and RNG state to resume from (see
``autoprune.train.run``). The section is optional, so format version 1 covers both kinds.

Every checkpoint autoprune writes also holds a ``preprocess`` section
(``autoprune.preprocess.Preprocess.to_dict``: input size, channels, resize rule, mean/std,
class names); files written before it existed still load, without it.

A mixed-precision network (inner layers at other bit-widths than its ``QuantSpec``, see
``autoprune.quant.mixed``) also holds a ``layer_bits`` section, ``{layer name: bits}``, and is
written as format version 2, so an autoprune that cannot rebuild it refuses it instead of
loading it at the wrong precision; every other checkpoint is still written as version 1.

This module knows no architecture: models and training both build on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.config import ModelConfig
from autoprune.errors import CheckpointError
from autoprune.paths import write_atomically
from autoprune.quant import layer_bits

FORMAT = "autoprune-checkpoint"
VERSION = 2  # the newest format read; files without per-layer bit-widths are written as 1
UNIFORM_VERSION = 1


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_config: ModelConfig,
    *,
    kept_channels: dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a checkpoint, atomically (``autoprune.paths.write_atomically``).

    ``training`` (plain data and tensors) is stored as the optional ``training`` section,
    ``preprocess`` (``Preprocess.to_dict()``) as the ``preprocess`` section; layers at another
    bit-width than the model's spec as the ``layer_bits`` section (read off ``model``).
    """
    mixed = layer_bits(model, model_config.spec)
    payload = {
        "format": FORMAT,
        "version": VERSION if mixed else UNIFORM_VERSION,
        "model": model_config.to_dict(),
        "kept_channels": dict(kept_channels or {}),
        "metadata": metadata or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if mixed:
        payload["layer_bits"] = mixed
    if training is not None:
        payload["training"] = training
    if preprocess is not None:
        payload["preprocess"] = dict(preprocess)
    return write_atomically(path, lambda partial: torch.save(payload, partial))


def file_digest(path: str | Path) -> str:
    """A short digest of a file's bytes: a study records its checkpoint by it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's plain-data payload, validated; ``CheckpointError`` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found: check the path, or create one by training a model"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on damaged files; all mean corrupt
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not an autoprune checkpoint "
            f"({type(error).__name__}): re-create it by training the model again"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an autoprune checkpoint: re-create it by training the model again"
        )
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, newer "
            f"than this autoprune ({VERSION}): upgrade autoprune"
        )
    if not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} holds no state dict: re-create it")
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
