"""Prune a model physically: score each group, drop its least important channels."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.prune.criteria import CRITERIA, ScoringContext
from autoprune.prune.criteria.base import Batch, ScoredGroup
from autoprune.prune.groups import (
    ChannelGroup,
    build_dependency_graph,
    find_groups,
    output_channels,
    refused_groups,
    remove_channels_,
)


def channels_to_remove(importance: torch.Tensor, ratio: float) -> list[int]:
    """Indices of the ``round(ratio * C)`` least important channels; at least one is kept."""
    count = min(round(ratio * importance.numel()), importance.numel() - 1)
    if count <= 0:
        return []
    # stable sort: ties (e.g. an all-equal score) resolve to the lowest indices, reproducibly;
    # float64 keeps float32 scores' order exactly and float64 ones (taylor) from overflowing
    order = torch.sort(importance.double().cpu(), stable=True).indices
    return sorted(order[:count].tolist())


def kept_count(num_channels: int, ratio: float) -> int:
    return num_channels - min(round(ratio * num_channels), num_channels - 1)


def score_groups(
    groups: Sequence[ChannelGroup], criterion: str, context: ScoringContext
) -> dict[str, ScoredGroup]:
    """Each group's scores and the criterion that produced them (``criterion`` or one down
    its fallback chain, see ``autoprune.prune.criteria.base``), by group name."""
    ranker = CRITERIA.get(criterion)
    return {group.name: ranker.rank(group, context) for group in groups}


def _groups_by_name(
    model: nn.Module, example_input: torch.Tensor, graph, wanted: Iterable[str]
) -> dict[str, ChannelGroup]:
    """Every group by name; ``KeyError`` for unknown ``wanted`` names, ``ConfigError`` naming
    the layer for channels that exist but cannot be pruned (see ``refused_groups``)."""
    groups = {g.name: g for g in find_groups(model, example_input, graph, residual=True)}
    unknown = sorted(set(wanted) - set(groups))
    if unknown:
        refused = refused_groups(model, example_input, graph)
        for name in unknown:
            if name in refused:
                raise ConfigError(
                    f"channels of {name} cannot be pruned: {refused[name]}; leave {name} out"
                )
        raise KeyError(f"no prunable channel group named {', '.join(unknown)}")
    return groups


def prune_(
    model: nn.Module,
    ratios: Mapping[str, float],
    *,
    criterion: str,
    example_input: torch.Tensor,
    calibration: Sequence[Batch] | None = None,
    seed: int = 0,
    residual: bool = False,
) -> dict[str, int]:
    """Remove ``ratios[group]`` of each named group's channels in place.

    Groups are block-internal or residual (``residual:...``, see ``find_groups``). Every group
    is scored on the unpruned model before anything is removed, so the result does not depend
    on the order of the groups; groups whose ratio removes nothing are not scored.
    ``calibration`` (a few ``(images, labels)`` batches on the model's device) and ``seed``
    reach the criterion through a ``ScoringContext``: ``taylor`` needs the batches,
    ``random`` uses the seed, the others ignore both.

    Returns the kept channels per group: every block-internal group, plus the residual groups
    named in ``ratios`` (all of them with ``residual=True``), which is what ``shrink_to_``
    needs to rebuild the architecture. ``prune_(model, {}, ...)`` just reads them.
    """
    CRITERIA.get(criterion)  # an unknown name fails before the model is traced
    graph = build_dependency_graph(model, example_input)
    groups = _groups_by_name(model, example_input, graph, ratios)
    for name, ratio in ratios.items():
        if not 0.0 <= ratio < 1.0 or math.isnan(ratio):
            raise ValueError(f"ratio of {name} must be in [0, 1), got {ratio}")
    scored = {
        name: ratio
        for name, ratio in ratios.items()
        if kept_count(groups[name].num_channels, ratio) < groups[name].num_channels
    }
    context = ScoringContext(
        model=model,
        batches=list(calibration or ()),
        seed=seed,
        groups=[groups[name] for name in scored],
    )
    ranked = score_groups(context.groups, criterion, context)
    plan = {name: channels_to_remove(ranked[name].scores, ratio) for name, ratio in scored.items()}
    for name, channels in plan.items():
        remove_channels_(graph, groups[name], channels)
    return {
        name: output_channels(group.producer)
        for name, group in groups.items()
        if not group.residual or residual or name in ratios
    }


def shrink_to_(
    model: nn.Module, kept_channels: Mapping[str, int], *, example_input: torch.Tensor
) -> None:
    """Give each named group ``kept_channels[group]`` channels by dropping its last ones.

    Used to rebuild a pruned architecture before loading its saved weights: which channels
    go does not matter, the state dict overwrites them all. Residual groups included.
    """
    graph = build_dependency_graph(model, example_input)
    groups = _groups_by_name(model, example_input, graph, kept_channels)
    for name, kept in kept_channels.items():
        total = groups[name].num_channels
        if not 1 <= kept <= total:
            raise ValueError(f"group {name} has {total} channels, cannot keep {kept}")
        remove_channels_(graph, groups[name], list(range(kept, total)))
