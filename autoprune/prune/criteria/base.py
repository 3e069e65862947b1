"""The criterion interface: one importance score per channel of a group, lowest pruned first.

A criterion is a function ``score(group, context) -> Tensor[num_channels]`` registered with
``register_criterion``. Data-free criteria read only the group's layers; criteria that need
data or randomness (``needs_data=True``) read the ``ScoringContext`` that ``prune_`` passes:
the whole model, a few calibration batches and a seed.

Residual groups have several producer convs. Every criterion returns one score per channel of
the whole coupled set, so channel ``c`` means the same channel in every producer; criteria
that score one producer at a time combine them with ``combine_producers``.

Fallbacks: a criterion that cannot tell a group's channels apart (its score function raises
``Indistinct``, e.g. the angle of 1x1 kernels is always 0, or all its scores are equal within
``TIE_TOLERANCE``) hands the group to its ``fallback`` criterion, and so on down the chain
(``angle-next`` -> ``angle`` -> ``l1``; ``taylor`` -> ``l1``), with one logged warning per
criterion and reason. ``Criterion.rank`` returns the scores with the criterion that actually
produced them (``ScoredGroup.scored_by``), so nothing is silently pruned by index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.prune.groups import ChannelGroup
from autoprune.registry import Registry

logger = logging.getLogger(__name__)

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


TIE_TOLERANCE = 1e-6
"""Scores whose spread is at most this fraction of their largest magnitude are all equal."""


class Indistinct(Exception):
    """Raised by a score function that cannot tell this group's channels apart; the message
    is the reason, without group names (warnings are issued once per criterion and reason)."""


@dataclass(frozen=True)
class ScoredGroup:
    """Scores of one group and the criterion that produced them."""

    scores: torch.Tensor
    scored_by: str
    fallback_reason: str | None = None
    """Why the requested criterion handed the group on (None when it scored it itself)."""


def tie_reason(scores: torch.Tensor) -> str | None:
    """``"all scores are equal"`` when ``scores`` cannot order the channels, else None."""
    if scores.numel() < 2:
        return None
    values = scores.detach().double()
    spread = (values.max() - values.min()).item()
    return "all scores are equal" if spread <= TIE_TOLERANCE * values.abs().max().item() else None


_warned: set[tuple[str, str]] = set()


def _warn_once(criterion: str, reason: str, replacement: str | None, group: str) -> None:
    if (criterion, reason) in _warned:
        return
    _warned.add((criterion, reason))
    outcome = (
        f"scored by {replacement} instead"
        if replacement
        else "their order is arbitrary (lowest indices pruned first)"
    )
    logger.warning(
        "criterion %s cannot tell the channels of some groups apart (%s): %s "
        "(first such group: %s)",
        criterion,
        reason,
        outcome,
        group,
    )


@dataclass(frozen=True)
class Criterion:
    """A registered criterion: ``criterion(group, context)`` -> importance per channel.

    ``fallback`` names the criterion that scores the groups this one cannot tell apart.
    """

    name: str
    score: ScoreFunction
    needs_data: bool = False
    fallback: str | None = None

    def rank(self, group: ChannelGroup, context: ScoringContext | None = None) -> ScoredGroup:
        """Scores of ``group`` from this criterion, or from the first criterion down its
        fallback chain that tells the channels apart (the last one's scores if none does)."""
        context = context if context is not None else ScoringContext()
        if self.needs_data and (context.model is None or not context.batches):
            raise ConfigError(
                f"criterion {self.name!r} needs calibration data: pass calibration=<a few "
                "training batches> to prune_, or choose a data-free criterion such as angle-next"
            )
        criterion: Criterion = self
        first_reason: str | None = None
        while True:
            try:
                scores: torch.Tensor | None = criterion.score(group, context)
                reason = tie_reason(scores)
            except Indistinct as signal:
                scores, reason = None, str(signal)
            if reason is None or (criterion.fallback is None and scores is not None):
                if reason is not None:
                    _warn_once(criterion.name, reason, None, group.name)
                return ScoredGroup(scores, criterion.name, first_reason)
            if criterion.fallback is None:
                raise RuntimeError(f"criterion {criterion.name} has no fallback for {reason}")
            _warn_once(criterion.name, reason, criterion.fallback, group.name)
            first_reason = first_reason or reason
            criterion = CRITERIA.get(criterion.fallback)

    def __call__(self, group: ChannelGroup, context: ScoringContext | None = None) -> torch.Tensor:
        """``rank(group, context).scores``."""
        return self.rank(group, context).scores


CRITERIA: Registry[Criterion] = Registry("criterion")


def register_criterion(
    name: str, *, needs_data: bool = False, fallback: str | None = None
) -> Callable[[ScoreFunction], ScoreFunction]:
    """Decorator: register ``score(group, context)`` as criterion ``name``; ``fallback``
    scores the groups it cannot tell apart (a criterion without one must always score)."""

    def decorator(score: ScoreFunction) -> ScoreFunction:
        CRITERIA.register(name)(Criterion(name, score, needs_data, fallback))
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
