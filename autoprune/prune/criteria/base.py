"""The criterion interface: one importance score per channel of a group, lowest pruned first.

A criterion is a function ``score(group, context) -> Tensor[num_channels]`` registered with
``register_criterion``. Data-free criteria read only the group's layers; criteria that need
data or randomness (``needs_data=True``) read the ``ScoringContext`` that ``prune_`` passes:
the whole model, a few calibration batches and a seed.

Residual groups have several producer convs. Every criterion returns one score per channel of
the whole coupled set, so channel ``c`` means the same channel in every producer; criteria
that score one producer at a time combine them with ``combine_producers``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.prune.groups import ChannelGroup
from autoprune.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]
ScoreFunction = Callable[[ChannelGroup, "ScoringContext"], torch.Tensor]


@dataclass
class ScoringContext:
    """What data-driven criteria may use; built once per ``prune_`` call, shared by its groups.

    ``batches`` are (images, labels) pairs on the model's device; ``seed`` drives random
    criteria; ``groups``, when given, are all the groups this context will score (so Taylor
    differentiates only with respect to their producers); ``cache`` lets a criterion compute
    something once for all groups (e.g. Taylor's gradients), and is valid only for the
    unmodified ``model``.
    """

    model: nn.Module | None = None
    batches: Sequence[Batch] = ()
    seed: int = 0
    groups: Sequence[ChannelGroup] = ()
    cache: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Criterion:
    """A registered criterion: ``criterion(group, context)`` -> importance per channel."""

    name: str
    score: ScoreFunction
    needs_data: bool = False

    def __call__(self, group: ChannelGroup, context: ScoringContext | None = None) -> torch.Tensor:
        context = context if context is not None else ScoringContext()
        if self.needs_data and (context.model is None or not context.batches):
            raise ConfigError(
                f"criterion {self.name!r} needs calibration data: pass calibration=<a few "
                "training batches> to prune_, or choose a data-free criterion such as angle-next"
            )
        return self.score(group, context)


CRITERIA: Registry[Criterion] = Registry("criterion")


def register_criterion(
    name: str, *, needs_data: bool = False
) -> Callable[[ScoreFunction], ScoreFunction]:
    """Decorator: register ``score(group, context)`` as criterion ``name``."""

    def decorator(score: ScoreFunction) -> ScoreFunction:
        CRITERIA.register(name)(Criterion(name, score, needs_data))
        return score

    return decorator


def combine_producers(scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """One score per channel from per-producer scores of a coupled group.

    ``mean_p( s_p / mean_c |s_p[c]| )``: each producer's scores are divided by their mean
    magnitude so that every producer weighs equally whatever its fan-in or weight scale, then
    averaged. A producer whose scores are all zero contributes zeros. A single producer's
    scores are returned unchanged (block-internal groups rank exactly as before).
    """
    if len(scores) == 1:
        return scores[0]
    normalised = []
    for score in scores:
        scale = score.abs().mean()
        normalised.append(score / scale if scale > 0 else torch.zeros_like(score))
    return torch.stack(normalised).mean(dim=0)
