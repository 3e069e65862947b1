"""Channel groups: sets of coupled channels that must be removed together.

Torch-Pruning's dependency graph finds, for each conv's output channels, every layer that
must shrink with it (its BatchNorm, the consumers' input channels, and, through residual
additions, other convs' outputs). A group whose removal touches only one conv's outputs is
*block-internal*; the others run through a residual stream and are left out by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from autoprune.quant import Quantizer


@dataclass
class ChannelGroup:
    """Output channels of ``producer`` (named ``name``) and everything coupled to them."""

    name: str
    producer: nn.Conv2d
    num_channels: int
    consumers: list[nn.Module] = field(default_factory=list)
    """Layers whose *input* channels are these channels (their weights read them)."""


@contextlib.contextmanager
def plain_forward(model: nn.Module) -> Iterator[None]:
    """Temporarily swap every quantizer for ``nn.Identity`` so tracing sees plain layers.

    Fake-quant ops on weights would otherwise enter the traced graph as spurious nodes.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for module in model.modules():
        for child_name, child in module.named_children():
            if isinstance(child, Quantizer):
                swapped.append((module, child_name, child))
    try:
        for module, child_name, _ in swapped:
            setattr(module, child_name, nn.Identity())
        yield
    finally:
        for module, child_name, child in swapped:
            setattr(module, child_name, child)


def build_dependency_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    with plain_forward(model):
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)


def _out_channel_convs(group: tp.Group) -> list[nn.Module]:
    return [
        dep.target.module
        for dep, _ in group
        if isinstance(dep.target.module, nn.Conv2d) and dep.handler == tp.prune_conv_out_channels
    ]


def find_groups(
    model: nn.Module, example_input: torch.Tensor, graph: tp.DependencyGraph | None = None
) -> list[ChannelGroup]:
    """Block-internal channel groups of ``model``, in definition order."""
    graph = graph or build_dependency_graph(model, example_input)
    groups = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or module.groups != 1:
            continue
        tp_group = graph.get_pruning_group(module, tp.prune_conv_out_channels, idxs=[0])
        if len(_out_channel_convs(tp_group)) != 1:
            continue  # coupled through a residual addition
        consumers = [
            dep.target.module
            for dep, _ in tp_group
            if dep.handler in (tp.prune_conv_in_channels, tp.prune_linear_in_channels)
        ]
        groups.append(ChannelGroup(name, module, module.out_channels, consumers))
    return groups


def remove_channels_(graph: tp.DependencyGraph, group: ChannelGroup, channels: list[int]) -> None:
    """Physically remove ``channels`` of ``group`` from every coupled layer, in place."""
    if channels:
        graph.get_pruning_group(group.producer, tp.prune_conv_out_channels, idxs=channels).prune()
