"""Prune a model physically: score each group, drop its least important channels."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from autoprune.prune.criteria import CRITERIA
from autoprune.prune.groups import build_dependency_graph, find_groups, remove_channels_


def channels_to_remove(importance: torch.Tensor, ratio: float) -> list[int]:
    """Indices of the ``round(ratio * C)`` least important channels; at least one is kept."""
    count = min(round(ratio * importance.numel()), importance.numel() - 1)
    if count <= 0:
        return []
    # stable sort: ties (e.g. an all-equal score) resolve to the lowest indices, reproducibly
    order = torch.sort(importance.float().cpu(), stable=True).indices
    return sorted(order[:count].tolist())


def kept_count(num_channels: int, ratio: float) -> int:
    return num_channels - min(round(ratio * num_channels), num_channels - 1)


def prune_(
    model: nn.Module,
    ratios: Mapping[str, float],
    *,
    criterion: str,
    example_input: torch.Tensor,
) -> dict[str, int]:
    """Remove ``ratios[group]`` of each named group's channels in place.

    Every group is scored on the unpruned model before anything is removed, so the result
    does not depend on the order of the groups. Returns the kept channels per group.
    """
    score = CRITERIA.get(criterion)
    graph = build_dependency_graph(model, example_input)
    groups = {group.name: group for group in find_groups(model, example_input, graph)}
    unknown = sorted(set(ratios) - set(groups))
    if unknown:
        raise KeyError(f"no prunable channel group named {', '.join(unknown)}")
    plan = {}
    for name, ratio in ratios.items():
        if not 0.0 <= ratio < 1.0 or math.isnan(ratio):
            raise ValueError(f"ratio of {name} must be in [0, 1), got {ratio}")
        plan[name] = channels_to_remove(score(groups[name]), ratio)
    for name, channels in plan.items():
        remove_channels_(graph, groups[name], channels)
    return {name: groups[name].producer.out_channels for name in groups}


def shrink_to_(
    model: nn.Module, kept_channels: Mapping[str, int], *, example_input: torch.Tensor
) -> None:
    """Give each named group ``kept_channels[group]`` channels by dropping its last ones.

    Used to rebuild a pruned architecture before loading its saved weights: which channels
    go does not matter, the state dict overwrites them all.
    """
    graph = build_dependency_graph(model, example_input)
    groups = {group.name: group for group in find_groups(model, example_input, graph)}
    for name, kept in kept_channels.items():
        if name not in groups:
            raise KeyError(f"no prunable channel group named {name}")
        total = groups[name].num_channels
        if not 1 <= kept <= total:
            raise ValueError(f"group {name} has {total} channels, cannot keep {kept}")
        remove_channels_(graph, groups[name], list(range(kept, total)))
