"""``l1``: the L1 norm of each output filter's latent weights (Li et al., 2017).

Importance of channel ``c`` of a conv = ``sum |W[c, :, :, :]|``; smallest pruned first. In a
residual group, each producer's norms are combined with ``combine_producers`` (divided by the
producer's mean norm, then averaged over producers). Depthwise convs filtering the channels
are not counted: their filters are too small to rank a channel by. ``l1`` is the end of the
fallback chains: it always scores (equal norms leave the order to the indices, with a
warning).
"""

from __future__ import annotations

import torch

from autoprune.prune.criteria.base import ScoringContext, combine_producers, register_criterion
from autoprune.prune.groups import ChannelGroup


@register_criterion("l1")
def l1_norm(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
    return combine_producers(
        [producer.weight.detach().abs().flatten(1).sum(dim=1) for producer in group.producers]
    )
