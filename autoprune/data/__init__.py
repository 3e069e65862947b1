"""Datasets: each loader registers itself in ``DATASETS``; ``load_dataset`` prepares splits."""

from autoprune.data import cifar10, digits, fashion_mnist  # noqa: F401  (registration)
from autoprune.data.base import (
    DATASETS,
    DataSplits,
    ImageArrays,
    ImageData,
    default_data_dir,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "DataSplits",
    "ImageArrays",
    "ImageData",
    "default_data_dir",
    "load_dataset",
]
