"""Structured pruning of quantized networks: channel groups, criteria, physical removal."""

from autoprune.prune.apply import (
    channels_to_remove,
    kept_count,
    prune_,
    score_groups,
    shrink_to_,
)
from autoprune.prune.criteria import (
    CRITERIA,
    Criterion,
    ScoredGroup,
    ScoringContext,
    kernel_angles,
    kernel_distances,
    register_criterion,
)
from autoprune.prune.groups import (
    ChannelGroup,
    build_dependency_graph,
    find_groups,
    refused_groups,
)

__all__ = [
    "CRITERIA",
    "ChannelGroup",
    "Criterion",
    "ScoredGroup",
    "ScoringContext",
    "build_dependency_graph",
    "channels_to_remove",
    "find_groups",
    "kept_count",
    "kernel_angles",
    "kernel_distances",
    "prune_",
    "refused_groups",
    "register_criterion",
    "score_groups",
    "shrink_to_",
]
