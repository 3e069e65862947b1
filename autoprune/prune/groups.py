"""Channel groups: sets of coupled channels that must be removed together.

Torch-Pruning's dependency graph finds, for each conv's output channels, every layer that
must shrink with it (its BatchNorm, the consumers' input channels, and, through residual
additions, other convs' outputs). A group whose removal touches only one conv's outputs is
*block-internal* (named after that conv). A group whose channels several convs produce, because
their outputs are added (a ResNet stage's residual stream: the stage's last convs of every
block, its shortcut conv or the stem), is a *residual* group; ``find_groups`` returns those
only when asked (``residual=True``).

Residual group names: ``residual:<prefix>`` where ``<prefix>`` is the longest common dotted
prefix of its producer convs' names (``residual:layers.1`` for ResNet-20's second stage); when
that prefix is empty or already taken, the first producer's name in definition order instead
(``residual:conv1`` for the first stage, whose stream starts at the stem conv). The same
channel index means the same channel in every producer (additions couple index to index).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from autoprune.quant import Quantizer

RESIDUAL_PREFIX = "residual:"


@dataclass
class ChannelGroup:
    """Output channels of ``producer`` (named ``name``) and everything coupled to them."""

    name: str
    producer: nn.Conv2d
    num_channels: int
    consumers: list[nn.Module] = field(default_factory=list)
    """Layers whose *input* channels are these channels (their weights read them)."""
    producers: list[nn.Conv2d] = field(default_factory=list)
    """Every conv whose output channels these are, ``producer`` first (one unless residual)."""

    def __post_init__(self) -> None:
        if not self.producers:
            self.producers = [self.producer]

    @property
    def residual(self) -> bool:
        """Whether several convs produce these channels (coupled by residual additions)."""
        return len(self.producers) > 1


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


def _out_channel_deps(group: tp.Group) -> list[tuple[nn.Module, list[int]]]:
    return [
        (dep.target.module, [int(i) for i in idxs])
        for dep, idxs in group
        if isinstance(dep.target.module, nn.Conv2d) and dep.handler == tp.prune_conv_out_channels
    ]


def _out_channel_convs(group: tp.Group) -> list[nn.Module]:
    return [module for module, _ in _out_channel_deps(group)]


def _common_prefix(names: list[str]) -> str:
    parts = [name.split(".") for name in names]
    common: list[str] = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return ".".join(common)


def find_groups(
    model: nn.Module,
    example_input: torch.Tensor,
    graph: tp.DependencyGraph | None = None,
    *,
    residual: bool = False,
) -> list[ChannelGroup]:
    """Block-internal channel groups of ``model`` (and residual ones if asked), in definition
    order (a residual group sits where its first producer conv is defined)."""
    graph = graph or build_dependency_graph(model, example_input)
    names = {module: name for name, module in model.named_modules()}
    position = {module: index for index, module in enumerate(names)}
    groups: list[ChannelGroup] = []
    claimed: set[nn.Module] = set()  # producers of a residual group already found
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or module.groups != 1 or module in claimed:
            continue
        tp_group = graph.get_pruning_group(module, tp.prune_conv_out_channels, idxs=[0])
        producers = _out_channel_deps(tp_group)
        consumers = [
            dep.target.module
            for dep, _ in tp_group
            if dep.handler in (tp.prune_conv_in_channels, tp.prune_linear_in_channels)
        ]
        if len(producers) == 1:
            groups.append(ChannelGroup(name, module, module.out_channels, consumers))
            continue
        convs = [conv for conv, _ in producers]
        claimed.update(convs)
        # an addition couples channel c to channel c everywhere; anything else (e.g. a
        # concatenation shifts indices) is not one channel set and is left alone
        index_to_index = all(idxs == [0] for _, idxs in producers) and all(
            conv.out_channels == module.out_channels for conv in convs
        )
        if residual and index_to_index:
            ordered = sorted(convs, key=position.__getitem__)
            groups.append(
                ChannelGroup("", ordered[0], module.out_channels, consumers, producers=ordered)
            )
    taken = {group.name for group in groups if not group.residual}
    for group in groups:
        if group.residual:
            producer_names = [names[conv] for conv in group.producers]
            prefix = _common_prefix(producer_names)
            name = RESIDUAL_PREFIX + prefix
            if not prefix or name in taken:
                name = RESIDUAL_PREFIX + producer_names[0]
            group.name = name
            taken.add(name)
    return groups


def remove_channels_(graph: tp.DependencyGraph, group: ChannelGroup, channels: list[int]) -> None:
    """Physically remove ``channels`` of ``group`` from every coupled layer, in place."""
    if channels:
        graph.get_pruning_group(group.producer, tp.prune_conv_out_channels, idxs=channels).prune()
