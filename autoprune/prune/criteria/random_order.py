"""``random``: uniform random importance, a baseline every real criterion must beat.

Channel ``c`` of group ``g`` gets ``U(0, 1)`` drawn from a generator seeded with
``(context.seed, crc32(g.name))``: the same seed gives the same ranking, a group's draw does
not depend on which other groups are pruned with it, and another seed gives another ranking.
A residual group draws one number per channel of the whole coupled set.
"""

from __future__ import annotations

import zlib

import torch

from autoprune.prune.criteria.base import ScoringContext, register_criterion
from autoprune.prune.groups import ChannelGroup


@register_criterion("random")
def random_importance(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
    seed = (context.seed * 1_000_003 + zlib.crc32(group.name.encode())) % 2**63
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(group.num_channels, generator=generator)
