"""Rebuilding networks from their plain-data description, and loading checkpoints into them.

``build_model`` is the one place where a ``ModelConfig`` becomes an ``nn.Module``;
``load_checkpoint`` is the one place where a checkpoint file becomes a ready network. A file
names its architecture, but a user-defined one (``"package.module:factory"``) is imported only
when the caller names the same factory, or hands over the factory or a model object: reading a
file never runs code (see ``UntrustedModelError``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import nn

from autoprune.checkpoint import load_state_strictly, read_checkpoint
from autoprune.config import ModelConfig
from autoprune.errors import CheckpointError, ConfigError, UntrustedModelError
from autoprune.models.external import create_external_model, is_external
from autoprune.models.registry import create_model
from autoprune.preprocess import Preprocess
from autoprune.prune import shrink_to_
from autoprune.quant import quantize_, set_layer_bits_

ModelSource = str | Callable[..., nn.Module] | nn.Module | None
"""What builds a checkpoint's architecture: its name (required to allow a user-defined
``package.module:factory``), the factory itself, an (unpruned) model object, or None."""


def _architecture(config: ModelConfig, what: str) -> nn.Module:
    source = config.source
    spec = config.spec
    if isinstance(source, nn.Module):  # the caller's own object: copied, quantized if float
        return quantize_(copy.deepcopy(source), spec)
    if callable(source):
        return create_external_model(
            config.name,
            spec=spec,
            num_classes=config.num_classes,
            in_channels=config.in_channels,
            factory=source,
        )
    if is_external(config.name) and source != config.name:
        raise UntrustedModelError(what, config.name)
    return create_model(
        config.name, spec=spec, num_classes=config.num_classes, in_channels=config.in_channels
    )


def build_model(
    model_config: ModelConfig,
    kept_channels: dict[str, int] | None = None,
    *,
    layer_bits: dict[str, int] | None = None,
    what: str = "this model description",
) -> nn.Module:
    """The (possibly pruned, possibly mixed-precision) architecture described by
    ``model_config``, freshly initialised; ``layer_bits`` gives inner layers another
    bit-width than the spec's (``autoprune.quant.set_layer_bits_``).

    A user-defined architecture is built only from ``model_config.source`` (see
    ``ModelConfig``); ``what`` names the description's origin in the error otherwise.
    Works inside a caller's ``no_grad`` or ``inference_mode``: Torch-Pruning traces the
    network with autograd, and parameters made in inference mode could never train.
    """
    with torch.inference_mode(False), torch.enable_grad():
        model = _architecture(model_config, what)
        if layer_bits:
            set_layer_bits_(model, layer_bits)
        if kept_channels:
            example = torch.zeros(1, *model_config.input_shape)
            shrink_to_(model, kept_channels, example_input=example)
    return model


def allow_source(model_config: ModelConfig, model: ModelSource, what: str) -> ModelConfig:
    """``model_config`` (read from ``what``) allowed to be built by ``model``, which the caller
    gave: a name must be the one the description holds."""
    if model is None:
        return model_config
    if isinstance(model, str) and model != model_config.name:
        raise CheckpointError(
            f"{what} holds model {model_config.name!r}, not {model!r}: name the model it was "
            "made from, or use a checkpoint of this one"
        )
    return replace(model_config, source=model)


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's network (on the requested device, in training mode) and what it records."""

    model: nn.Module
    config: ModelConfig  # with the caller's ``source``, so rebuilding it needs no permission
    kept_channels: dict[str, int]
    metadata: dict[str, Any]
    payload: dict[str, Any]  # everything in the file, the training section included
    preprocess: dict[str, Any] | None = None  # the preprocess section; None in older files

    def preprocessing(self, what: str = "this checkpoint") -> Preprocess:
        """The stored ``Preprocess``; a one-line ``CheckpointError`` if there is none."""
        if self.preprocess is None:
            raise CheckpointError(
                f"{what} records no preprocessing (input size, resize rule, mean/std, class "
                "names): it predates them; re-create it with autoprune train, or load it "
                "without with_preprocess and normalise inputs as it was trained"
            )
        try:
            return Preprocess.from_dict(self.preprocess)
        except (TypeError, ValueError) as error:
            raise CheckpointError(
                f"{what} has an invalid preprocess section ({error}): re-create it"
            ) from error


def load_checkpoint(
    path: str | Path,
    *,
    model: ModelSource = None,
    device: str | torch.device = "cpu",
    what: str | None = None,
) -> LoadedCheckpoint:
    """Read ``path``, rebuild its (pruned) network and load its weights strictly.

    ``model`` allows a user-defined architecture (see ``ModelSource``); ``what`` names the file
    in errors (default ``"checkpoint PATH"``). Every problem is a one-line ``CheckpointError``.
    """
    what = what or f"checkpoint {path}"
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(payload["model"])
        kept = {str(k): int(v) for k, v in (payload.get("kept_channels") or {}).items()}
        bits = {str(k): int(v) for k, v in (payload.get("layer_bits") or {}).items()}
        config.spec  # noqa: B018  (validates the stored quantization)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"{what} has an invalid model description ({error}): re-create it"
        ) from error
    config = allow_source(config, model, what)
    try:
        network = build_model(config, kept or None, layer_bits=bits or None, what=what)
    except ConfigError as error:  # e.g. layer_bits naming a layer the model does not have
        if not bits:
            raise
        raise CheckpointError(f"{what} cannot be rebuilt ({error}): re-create it") from error
    load_state_strictly(network, payload["state_dict"], what)
    return LoadedCheckpoint(
        model=network.to(device),
        config=config,
        kept_channels=kept,
        metadata=dict(payload.get("metadata") or {}),
        payload=payload,
        preprocess=payload.get("preprocess"),
    )


@overload
def load(
    path: str | Path,
    *,
    model: ModelSource = None,
    device: str | torch.device = "cpu",
    with_preprocess: Literal[False] = False,
) -> nn.Module: ...


@overload
def load(
    path: str | Path,
    *,
    model: ModelSource = None,
    device: str | torch.device = "cpu",
    with_preprocess: Literal[True],
) -> tuple[nn.Module, Preprocess]: ...


def load(
    path: str | Path,
    *,
    model: ModelSource = None,
    device: str | torch.device = "cpu",
    with_preprocess: bool = False,
) -> nn.Module | tuple[nn.Module, Preprocess]:
    """The ready network (pruned or not) stored in an autoprune checkpoint, in eval mode.

    A network built from your own ``package.module:factory`` needs ``model`` (that name, the
    factory, or a model object): autoprune never imports code because a file names it.

    ``with_preprocess=True`` returns ``(model, preprocess)``: ``preprocess`` turns raw images
    (a PIL image, a uint8 ``H x W [x C]``/``C x H x W`` array or tensor or a batch of them, a
    float tensor of pixels in [0, 1], or a list) into the normalised batch the model takes,
    with the size, resize rule, channels and mean/std it was trained with, and names the
    classes (``preprocess.classes``)::

        model, preprocess = autoprune.load("model.pt", with_preprocess=True)
        label = preprocess.classes[int(model(preprocess(image)).argmax(1)[0])]

    See ``autoprune.preprocess``. A checkpoint written before checkpoints recorded their
    preprocessing raises ``CheckpointError`` naming what is missing.
    """
    loaded = load_checkpoint(path, model=model, device=device)
    if not with_preprocess:
        return loaded.model.eval()
    preprocess = loaded.preprocessing(f"checkpoint {path}")
    return loaded.model.eval(), preprocess
