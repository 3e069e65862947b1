"""Help text of the options that name a registered thing (dataset, sampler, criterion...).

The names come from the library's registries, so a newly registered sampler or criterion is
listed in ``--help`` without touching the CLI; the remarks after some names are the CLI's own,
and ``tests/cli/test_flags.py`` refuses a remark about a name that is not registered.
"""

from __future__ import annotations

from collections.abc import Callable

from autoprune.config import SEARCH_METHODS
from autoprune.data import DATASETS
from autoprune.data.base import AUGMENTATIONS
from autoprune.prune import CRITERIA
from autoprune.quant.spec import BINARY_WEIGHT_SCHEMES
from autoprune.search.samplers import SAMPLERS
from autoprune.train.loops import OPTIMIZERS, SCHEDULES

# kind -> (the registered names, remarks on some of them)
CHOICES: dict[str, tuple[Callable[[], list[str]], dict[str, str]]] = {
    "dataset": (
        DATASETS.names,
        {
            "digits": "no download",
            "imagefolder": "--data-dir holding train/<class>/ images, optionally val/ and test/",
            "imagenet": "same layout, 224 px",
        },
    ),
    "augment": (
        lambda: list(AUGMENTATIONS),
        {
            "light": "small padded random crop, flips where labels allow",
            "imagenet": "random resized crop and flip; image folders",
        },
    ),
    "weights": (
        lambda: list(BINARY_WEIGHT_SCHEMES),
        {"bnn": "sign", "xnor": "sign times the output channel's mean |w|"},
    ),
    "sampler": (
        SAMPLERS.names,
        {
            "gp": "Gaussian process",
            "botorch": "needs the botorch extra",
            "nsga2": "genetic",
        },
    ),
    "criterion": (
        CRITERIA.names,
        {"angle-next": "the paper's", "taylor": "first-order, on a few training batches"},
    ),
    "optimizer": (OPTIMIZERS.names, {"sgd": "momentum 0.9, Nesterov"}),
    "schedule": (SCHEDULES.names, {"step": "x0.1 at 50 % and 75 % of the steps"}),
    "method": (
        lambda: list(SEARCH_METHODS),
        {
            "joint": "all ratios at once, BO over every group",
            "layerwise": "the paper's greedy method, one 1-D BO per group from the last",
        },
    ),
}


def choices(kind: str, **notes: str) -> str:
    """The registered names of ``kind``, comma-separated, each with its remark if it has one;
    ``notes`` (name with ``_`` for ``-``) replace a remark for one option's help."""
    names, remarks = CHOICES[kind]
    remarks = {**remarks, **{key.replace("_", "-"): text for key, text in notes.items()}}
    return ", ".join(f"{name} ({remarks[name]})" if name in remarks else name for name in names())
