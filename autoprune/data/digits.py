"""scikit-learn's bundled 8x8 handwritten digits: tiny, always available, never downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from autoprune.data.base import ImageArrays, register_dataset, stratified_split
from autoprune.errors import DatasetNotFoundError

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2
TEST_SEED = 0  # fixed for good: the test split must not move with the user's --seed


@register_dataset("digits")
def load_digits(data_dir: Path | None = None) -> ImageArrays:
    """1,797 grey 8x8 digits; a fixed, stratified 20 % is held out as the test split.

    ``data_dir`` is not read: the data ships inside scikit-learn. One that does not exist is
    still refused, as by every dataset: a mistyped folder must not go unnoticed. Pixel values
    0..16 are rescaled to 0..255 so every dataset hands out the same uint8 range.
    """
    if data_dir is not None and not data_dir.is_dir():
        raise DatasetNotFoundError(
            f"data folder {data_dir} does not exist: digits ships with scikit-learn and needs "
            "no `data_dir`, so leave it out (or pass `dataset` for the data in that folder)"
        )
    from sklearn.datasets import load_digits as sklearn_digits  # lazy: sklearn is slow to import

    bunch = sklearn_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float64)
    images = (pixels * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    generator = torch.Generator().manual_seed(TEST_SEED)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, generator)
    train_idx, test_idx = train_idx.sort().values, test_idx.sort().values
    logger.debug("digits: %d train, %d test images", train_idx.numel(), test_idx.numel())
    return ImageArrays(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
        classes=tuple(str(digit) for digit in range(10)),
        flip=False,
        crop_padding=1,
    )
