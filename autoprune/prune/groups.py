"""Channel groups: sets of coupled channels that must be removed together.

Torch-Pruning's dependency graph finds, for each layer's output channels, every layer that
must shrink with it: its BatchNorm, the layers that read the channels (their input channels,
through concatenations and flattens too), the depthwise convs that filter each channel on its
own (``groups == in_channels == out_channels``: their kernels go with the channel, and their
outputs are the same channels again) and, through residual additions or multiplicative gates
(squeeze-excitation), other layers' outputs. Roots are convs and linear layers; the output
layer (channels no layer reads) is never a group.

A group whose channels one layer produces is *block-internal* (named after that layer). A group
whose channels several layers produce, because their outputs are added (a ResNet stage's
residual stream: the stage's last convs of every block, its shortcut conv or the stem) or
multiplied (a squeeze-excitation gate), is a *residual* group; ``find_groups`` returns those
only when asked (``residual=True``).

Residual group names: ``residual:<prefix>`` where ``<prefix>`` is the longest common dotted
prefix of its producers' names (``residual:layers.1`` for ResNet-20's second stage); when that
prefix is empty or already taken, the first producer's name in definition order instead
(``residual:conv1`` for the first stage, whose stream starts at the stem conv). The same
channel index means the same channel in every producer (additions couple index to index).

Refused (``refused_groups``, with the reason naming the layer): channels that reach a grouped
conv (``1 < groups`` and not depthwise: removing channels would have to keep every group of
it equally wide), and several producers coupled other than index to index. Such channels are
left out of ``find_groups``, and naming them to ``prune_`` is a ``ConfigError``.
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

PrunableLayer = nn.Conv2d | nn.Linear


@dataclass
class ChannelGroup:
    """Output channels of ``producer`` (named ``name``) and everything coupled to them."""

    name: str
    producer: nn.Module
    num_channels: int
    consumers: list[nn.Module] = field(default_factory=list)
    """Layers whose weights read these channels: convs and linears (input channels) and the
    depthwise convs that filter them."""
    producers: list[nn.Module] = field(default_factory=list)
    """Every layer whose output channels these are, ``producer`` first (one unless residual);
    depthwise convs are not producers (see ``depthwise``)."""
    depthwise: list[nn.Conv2d] = field(default_factory=list)
    """Depthwise convs whose input and output channels are these channels (also consumers)."""
    input_indices: dict[nn.Module, torch.Tensor] = field(default_factory=dict, repr=False)
    """Per consumer: ``[num_channels, k]`` indices of its input channels that read channel
    ``c`` of the group (``k > 1`` after a flatten; offset after a concatenation). A depthwise
    conv's row ``c`` holds its filter of channel ``c``."""

    def __post_init__(self) -> None:
        if not self.producers:
            self.producers = [self.producer]

    @property
    def residual(self) -> bool:
        """Whether several layers produce these channels (coupled by additions or gates)."""
        return len(self.producers) > 1

    def reader_indices(self, consumer: nn.Module) -> torch.Tensor:
        """``[num_channels, k]`` input-channel indices of ``consumer`` reading each channel;
        the identity when the group was built by hand without them."""
        indices = self.input_indices.get(consumer)
        if indices is None:
            return torch.arange(self.num_channels).unsqueeze(1)
        return indices


def is_depthwise(module: nn.Module) -> bool:
    """A conv filtering each channel on its own: ``groups == in_channels == out_channels > 1``."""
    return (
        isinstance(module, nn.Conv2d)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def is_grouped(module: nn.Module) -> bool:
    """A conv with ``1 < groups`` that is not depthwise (e.g. ResNeXt's, channel multipliers)."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and not is_depthwise(module)


def output_channels(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _out_handler(layer: nn.Module):
    return (
        tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels
    )


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


def _common_prefix(names: list[str]) -> str:
    parts = [name.split(".") for name in names]
    common: list[str] = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return ".".join(common)


def _index_table(
    idxs: list[int], root_idxs: list[int] | None, channels: int
) -> torch.Tensor | None:
    """``[channels, k]``: the target's indices per root channel; None if not evenly ``k``."""
    roots = root_idxs if root_idxs is not None and len(root_idxs) == len(idxs) else None
    if roots is None:  # Torch-Pruning lists them root by root, in order
        if len(idxs) % channels:
            return None
        return torch.tensor(idxs, dtype=torch.long).view(channels, -1)
    per_root: list[list[int]] = [[] for _ in range(channels)]
    for idx, root in zip(idxs, roots, strict=True):
        per_root[int(root)].append(int(idx))
    width = len(per_root[0])
    if width == 0 or any(len(row) != width for row in per_root):
        return None
    return torch.tensor(per_root, dtype=torch.long)


@dataclass
class _Scan:
    groups: list[ChannelGroup]
    refused: dict[str, str]


def _scan(model: nn.Module, graph: tp.DependencyGraph, residual: bool) -> _Scan:
    names = {module: name for name, module in model.named_modules()}
    position = {module: index for index, module in enumerate(names)}
    groups: list[ChannelGroup] = []
    refused: dict[str, str] = {}
    covered: set[nn.Module] = set()  # layers whose outputs an earlier root already grouped
    for name, module in model.named_modules():
        if not isinstance(module, PrunableLayer) or module in covered or is_depthwise(module):
            # a depthwise conv's channels are those it reads: they belong to their producer
            continue
        channels = output_channels(module)
        tp_group = graph.get_pruning_group(module, _out_handler(module), idxs=list(range(channels)))
        producers: list[nn.Module] = []
        depthwise: list[nn.Conv2d] = []
        consumers: list[nn.Module] = []
        indices: dict[nn.Module, torch.Tensor] = {}
        problem = ""
        for item in tp_group.items:
            layer, handler = item.dep.target.module, item.dep.handler
            if not isinstance(layer, PrunableLayer):
                continue
            table = _index_table([int(i) for i in item.idxs], item.root_idxs, channels)
            if graph.is_out_channel_pruning_fn(handler) and not is_depthwise(layer):
                producers.append(layer)
                one_to_one = (
                    table is not None
                    and output_channels(layer) == channels
                    and torch.equal(table.flatten(), torch.arange(channels))
                )
                if not one_to_one:
                    problem = problem or (
                        f"they couple the outputs of {name} and {names.get(layer, '?')} other "
                        "than channel to channel (e.g. a concatenation feeding an addition)"
                    )
                continue
            if layer in indices:  # a depthwise conv is listed as reading and as producing
                continue
            if table is None:
                problem = problem or f"layer {names.get(layer, '?')} reads them unevenly"
                continue
            consumers.append(layer)
            indices[layer] = table
            if graph.is_out_channel_pruning_fn(handler):  # depthwise: reads and produces them
                depthwise.append(layer)
        covered.update(producers)
        grouped = next((layer for layer in consumers + producers if is_grouped(layer)), None)
        if grouped is not None:
            problem = (
                f"they involve grouped conv {names.get(grouped, '?')} (groups={grouped.groups}, "
                "neither 1 nor one per channel), whose groups would all have to shrink alike"
            )
        if problem:
            refused[name] = problem
            continue
        if not consumers:
            continue  # nothing reads them: the network's output (or a dead end)
        ordered = sorted(producers, key=position.__getitem__)
        group = ChannelGroup(
            name,
            ordered[0],
            channels,
            consumers,
            producers=ordered,
            depthwise=depthwise,
            input_indices=indices,
        )
        if group.residual and not residual:
            continue
        groups.append(group)
    _name_residual_groups(groups, names)
    # a residual group sits where its first producer is defined
    groups.sort(key=lambda group: position[group.producer])
    return _Scan(groups, refused)


def _name_residual_groups(groups: list[ChannelGroup], names: dict[nn.Module, str]) -> None:
    taken = {group.name for group in groups if not group.residual}
    for group in groups:
        if group.residual:
            producer_names = [names[layer] for layer in group.producers]
            prefix = _common_prefix(producer_names)
            name = RESIDUAL_PREFIX + prefix
            if not prefix or name in taken:
                name = RESIDUAL_PREFIX + producer_names[0]
            group.name = name
            taken.add(name)


def find_groups(
    model: nn.Module,
    example_input: torch.Tensor,
    graph: tp.DependencyGraph | None = None,
    *,
    residual: bool = False,
) -> list[ChannelGroup]:
    """Block-internal channel groups of ``model`` (and residual ones if asked), in definition
    order (a residual group sits where its first producer is defined)."""
    graph = graph or build_dependency_graph(model, example_input)
    return _scan(model, graph, residual).groups


def refused_groups(
    model: nn.Module, example_input: torch.Tensor, graph: tp.DependencyGraph | None = None
) -> dict[str, str]:
    """Channels that cannot be pruned, by the name of the layer producing them: the reason."""
    graph = graph or build_dependency_graph(model, example_input)
    return _scan(model, graph, residual=True).refused


def remove_channels_(graph: tp.DependencyGraph, group: ChannelGroup, channels: list[int]) -> None:
    """Physically remove ``channels`` of ``group`` from every coupled layer, in place."""
    if channels:
        handler = _out_handler(group.producer)
        graph.get_pruning_group(group.producer, handler, idxs=channels).prune()
