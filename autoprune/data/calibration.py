"""The few training batches data-driven pruning criteria (``taylor``) score channels on.

One function draws them for every caller (the search's candidates, the layer-wise method,
``prune_checkpoint``), so one seed gives the same batches everywhere: pruning a checkpoint with
``taylor`` scores what a search with that seed scored.
"""

from __future__ import annotations

import torch

from autoprune.data.base import ImageData

Batch = tuple[torch.Tensor, torch.Tensor]


def calibration_batches(
    data: ImageData, *, batches: int, batch_size: int, seed: int
) -> list[Batch]:
    """``batches`` training batches of ``batch_size``, shuffled and augmented (as in training)
    with ``seed``; the same seed gives the same batches on any device (a CPU generator).

    The arguments are the fields of ``autoprune.config.CalibrationConfig``, which holds the
    defaults: ``calibration_batches(data, **config.to_dict())``.
    """
    generator = torch.Generator().manual_seed(seed)
    drawn: list[Batch] = []
    for batch in data.batches("train", batch_size, train=True, generator=generator):
        drawn.append(batch)
        if len(drawn) == batches:
            break
    return drawn
