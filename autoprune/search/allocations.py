"""Search-free allocations: per-group ratios that meet a budget without any fine-tuned trial.

They are what a search must beat at the same cost, and a quick answer in their own right:

- ``uniform``: the same position in every group's ratio range, scaled to the budget.
- ``global``: Torch-Pruning's global ranking: every channel of every group ranked by the L2
  norm of its filters (over all the layers that produce it) divided by its group's mean norm;
  the lowest go first until the network fits.
- ``lamp``: layer-adaptive magnitude pruning (Lee et al., 2021): within a group sorted by
  ascending squared norm ``w_i``, channel ``i`` scores ``w_i / sum_{j >= i} w_j``; one global
  ranking of those scores.
- ``greedy``: AIMET's greedy selection from a sensitivity scan (``autoprune.search.sensitivity``).

Every allocation returns ratios as ``removed / channels`` that meet ``allocator.budget``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.registry import Registry
from autoprune.search.budget import BudgetAllocator, groups_by_name, removed_channels
from autoprune.search.sensitivity import Sensitivity, greedy_allocation, shape_of


@dataclass
class AllocationContext:
    """What an allocation may use: the parent network, the budget's allocator and, for the
    allocations that need one, a sensitivity scan (computed on first use)."""

    model: nn.Module
    input_shape: tuple[int, ...]
    allocator: BudgetAllocator
    sensitivity: Callable[[], Sensitivity] | None = None


Allocation = Callable[[AllocationContext], dict[str, float]]
ALLOCATIONS: Registry[Allocation] = Registry("allocation")


def allocate(name: str, context: AllocationContext) -> dict[str, float]:
    return ALLOCATIONS.get(name)(context)


@ALLOCATIONS.register("uniform")
def uniform_allocation(context: AllocationContext) -> dict[str, float]:
    return context.allocator.ratios_for(context.allocator.uniform_shape())


@ALLOCATIONS.register("greedy")
def greedy_sensitivity_allocation(context: AllocationContext) -> dict[str, float]:
    if context.sensitivity is None:
        raise ConfigError("the greedy allocation needs a sensitivity scan")
    allocator, space = context.allocator, context.allocator.space
    chosen = greedy_allocation(context.sensitivity(), space, allocator.fits)
    if chosen is None:
        raise ConfigError("the budget is below what the greedy allocation can reach")
    # the same shape, scaled so that the network uses the budget to the last channel
    return allocator.ratios_for(shape_of(chosen, space))


def channel_norms(model: nn.Module, input_shape: tuple[int, ...], names: list[str]) -> dict:
    """Per group, the L2 norm of each channel's filters over every layer producing it."""
    groups = groups_by_name(model, input_shape)
    norms = {}
    for name in names:
        group = groups[name]
        squared = torch.zeros(group.num_channels)
        for layer in (*group.producers, *group.depthwise):
            weight = layer.weight.detach().float().cpu()
            squared += weight.reshape(weight.shape[0], -1).pow(2).sum(1)
        norms[name] = squared.sqrt()
    return norms


def _remove_lowest(context: AllocationContext, scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Remove channels in ascending score order, within each group's range, until it fits."""
    allocator = context.allocator
    space, channels = allocator.space, allocator.costs.channels
    removed = [removed_channels(c, g.low) for g, c in zip(space.groups, channels, strict=True)]
    ceiling = [removed_channels(c, g.high) for g, c in zip(space.groups, channels, strict=True)]
    order = sorted(
        (value, g, rank)
        for g, name in enumerate(space.names)
        for rank, value in enumerate(sorted(scores[name].tolist()))
    )
    # a group's channels leave in its own ascending order: the k-th lowest only after the others
    for _, g, rank in order:
        if allocator.cost_of(removed) <= allocator.budget.limit:
            break
        if rank >= removed[g] and removed[g] < ceiling[g]:
            removed[g] += 1
    if allocator.cost_of(removed) > allocator.budget.limit:
        raise ConfigError("the budget is below what this allocation can reach in the space")
    return {n: r / c for n, r, c in zip(space.names, removed, channels, strict=True)}


@ALLOCATIONS.register("global")
def global_magnitude_allocation(context: AllocationContext) -> dict[str, float]:
    names = context.allocator.space.names
    norms = channel_norms(context.model, context.input_shape, names)
    return _remove_lowest(context, {n: v / v.mean().clamp_min(1e-12) for n, v in norms.items()})


@ALLOCATIONS.register("lamp")
def lamp_allocation(context: AllocationContext) -> dict[str, float]:
    names = context.allocator.space.names
    scores = {}
    for name, norm in channel_norms(context.model, context.input_shape, names).items():
        squared = norm.pow(2).sort().values
        tail = squared.flip(0).cumsum(0).flip(0)  # sum over j >= i
        scores[name] = squared / tail.clamp_min(1e-12)
    return _remove_lowest(context, scores)
