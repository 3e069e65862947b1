"""What a network's default search space covers: its groups, their size shares, the total.

``autoprune groups`` shows this (the shares themselves are measured by
``autoprune.prune.shares``); ``autoprune space`` writes the space itself as YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.config import ModelConfig
from autoprune.errors import ConfigError
from autoprune.metrics import measure
from autoprune.models import build_model, load_checkpoint
from autoprune.prune.shares import GroupShare, combined_share, group_shares
from autoprune.quant import QuantSpec
from autoprune.search.space import (
    SearchSpace,
    bundled_search_space_file,
    format_search_space,
    load_search_space,
)


@dataclass(frozen=True)
class GroupsReport:
    """A network's groups with their shares, and what its default search space covers."""

    model: str
    quant: str
    input_shape: tuple[int, int, int]
    size_bits: int
    groups: list[GroupShare]
    searched: list[str]  # the groups of the default search space, in its order
    searched_share: float  # combined_share of those groups


def describe_groups(
    target: str | Path,
    *,
    bits: int | None = None,
    in_channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    model: Any = None,
) -> GroupsReport:
    """The groups of a checkpoint (a file at ``target``; it brings its quantization and input
    shape, so ``bits`` must be None) or of a model name (``bits`` default 2, the given shape).

    ``model`` allows a checkpoint's user-defined architecture (see
    ``autoprune.models.load_checkpoint``); a ``package.module:factory`` given as ``target``
    is named by the caller, so it is built.
    """
    config, network = _network(target, bits, in_channels, image_size, num_classes, model)
    return report_groups(config, network, _default_space(config, network))


def report_groups(config: ModelConfig, network: nn.Module, space: SearchSpace) -> GroupsReport:
    """The groups of ``network`` (described by ``config``) and what ``space`` covers."""
    shape = config.input_shape
    searched = space.names
    return GroupsReport(
        model=config.name,
        quant=config.spec.label,
        input_shape=shape,
        size_bits=measure(network, shape).size_bits,
        groups=group_shares(network, shape),
        searched=searched,
        searched_share=combined_share(network, shape, searched),
    )


def _network(
    target: str | Path,
    bits: int | None,
    in_channels: int,
    image_size: int,
    num_classes: int,
    model: Any,
) -> tuple[ModelConfig, nn.Module]:
    """The configuration and network ``target`` names (see ``describe_groups``), in eval mode."""
    if Path(target).is_file():
        if bits is not None:
            raise ConfigError(f"checkpoint {target} brings its own quantization: leave `bits` out")
        loaded = load_checkpoint(target, model=model)
        config, network = loaded.config, loaded.model
    else:
        name = str(target)
        spec = QuantSpec.from_bits(2 if bits is None else bits)
        config = ModelConfig(name, spec.to_dict(), num_classes, in_channels, image_size, name)
        network = build_model(config)
    return config, network.eval()


def _default_space(config: ModelConfig, network: nn.Module) -> SearchSpace:
    example = torch.zeros(1, *config.input_shape)
    with torch.inference_mode(False), torch.enable_grad():  # tracing the groups needs autograd
        return load_search_space(config.name, network, example)


@dataclass(frozen=True)
class DefaultSpace:
    """The search space a search of a network uses when given none, and its YAML text."""

    space: SearchSpace
    text: str  # the bundled file as shipped (comments kept), else the generated space
    bundled: Path | None  # the bundled file, if the model has one


def default_search_space(
    target: str | Path,
    *,
    bits: int | None = None,
    in_channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    model: Any = None,
) -> DefaultSpace:
    """The default search space of a checkpoint or model name (parameters as for
    ``describe_groups``), as YAML a search accepts unchanged as its search space file."""
    config, network = _network(target, bits, in_channels, image_size, num_classes, model)
    space = _default_space(config, network)
    bundled = bundled_search_space_file(config.name)
    text = bundled.read_text() if bundled is not None else format_search_space(space)
    return DefaultSpace(space=space, text=text, bundled=bundled)
