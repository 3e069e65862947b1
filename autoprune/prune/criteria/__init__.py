"""Channel criteria: which channels of a group matter least (the lowest scores go first).

A new criterion is one file in this package that decorates ``score(group, context)`` with
``register_criterion("name")``, plus its import line below. Registered: ``angle``,
``distance``, ``angle-next``, ``distance-next`` (quantization_error.py, the paper's),
``l1``, ``taylor`` (needs calibration batches) and ``random``. A criterion that cannot tell a
group's channels apart hands it to its ``fallback`` (see ``base``).
"""

from autoprune.prune.criteria import l1, quantization_error, random_order, taylor  # noqa: F401
from autoprune.prune.criteria.base import (
    CRITERIA,
    Criterion,
    Indistinct,
    ScoredGroup,
    ScoringContext,
    combine_producers,
    register_criterion,
)
from autoprune.prune.criteria.quantization_error import kernel_angles, kernel_distances

__all__ = [
    "CRITERIA",
    "Criterion",
    "Indistinct",
    "ScoredGroup",
    "ScoringContext",
    "combine_producers",
    "kernel_angles",
    "kernel_distances",
    "register_criterion",
]
