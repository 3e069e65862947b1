"""Structured pruning of quantized networks: channel groups, criteria, physical removal."""

from autoprune.prune.apply import channels_to_remove, kept_count, prune_, shrink_to_
from autoprune.prune.criteria import (
    CRITERIA,
    Criterion,
    ScoringContext,
    kernel_angles,
    kernel_distances,
    register_criterion,
)
from autoprune.prune.groups import ChannelGroup, build_dependency_graph, find_groups

__all__ = [
    "CRITERIA",
    "ChannelGroup",
    "Criterion",
    "ScoringContext",
    "build_dependency_graph",
    "channels_to_remove",
    "find_groups",
    "kept_count",
    "kernel_angles",
    "kernel_distances",
    "prune_",
    "register_criterion",
    "shrink_to_",
]
