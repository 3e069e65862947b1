"""Datasets: each loader registers itself in ``DATASETS``; ``load_dataset`` prepares splits."""

from autoprune.data import cifar10, digits, fashion_mnist, folder  # noqa: F401  (registration)
from autoprune.data.base import (
    DATASETS,
    DataSplits,
    ImageArrays,
    ImageData,
    LoadOptions,
    StreamingSource,
    default_data_dir,
    default_workers,
    load_dataset,
)
from autoprune.data.calibration import calibration_batches, validation_subset
from autoprune.data.folder import ImageFolderData, ImageFolderSource

__all__ = [
    "DATASETS",
    "DataSplits",
    "ImageArrays",
    "ImageData",
    "ImageFolderData",
    "ImageFolderSource",
    "LoadOptions",
    "StreamingSource",
    "calibration_batches",
    "default_data_dir",
    "default_workers",
    "load_dataset",
    "validation_subset",
]
