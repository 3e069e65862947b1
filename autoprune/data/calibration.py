"""Fixed batches drawn once and reused: calibration and validation subsets.

``calibration_batches``: the few training batches data-driven pruning criteria (``taylor``)
score channels on. One function draws them for every caller (the search's candidates, the
layer-wise method, ``prune_checkpoint``), so one seed gives the same batches everywhere:
pruning a checkpoint with ``taylor`` scores what a search with that seed scored.

``validation_subset``: the validation images a search's early rungs score candidates on
(``autoprune.config.HalvingConfig``).
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


def validation_subset(data: ImageData, *, images: int, batch_size: int = 512) -> list[Batch]:
    """At most ``images`` validation images, equally many of each class (the first of each in
    the split's fixed order), in batches of ``batch_size``; the whole split if it is smaller.

    Reads the split only until every class has its share, so a large streaming split costs
    no more than the subset.
    """
    classes = data.num_classes
    share = -(-images // classes)  # ceil: every class gets the same count
    counts = [0] * classes
    kept_images: list[torch.Tensor] = []
    kept_labels: list[torch.Tensor] = []
    for batch_images, labels in data.batches("val", batch_size):
        keep = []
        for index, label in enumerate(labels.tolist()):
            if counts[label] < share:
                counts[label] += 1
                keep.append(index)
        if keep:
            where = torch.tensor(keep, device=labels.device)
            kept_images.append(batch_images[where])
            kept_labels.append(labels[where])
        if min(counts) >= share:
            break
    if not kept_labels:
        return []
    subset_images, subset_labels = torch.cat(kept_images), torch.cat(kept_labels)
    return [
        (subset_images[start : start + batch_size], subset_labels[start : start + batch_size])
        for start in range(0, subset_labels.numel(), batch_size)
    ]
