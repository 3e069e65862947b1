"""Fashion-MNIST from the four standard IDX files (gzipped or not), read with gzip + numpy."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np
import torch

from autoprune.data.base import ImageArrays, register_dataset
from autoprune.errors import DatasetNotFoundError

logger = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the files; the last place looked."""

SUBDIR = "fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IMAGE_SIZE = 28
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _corrupt(path: Path, why: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"fashion-mnist file {path} is corrupt or truncated ({why}): replace it with a fresh copy"
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes, checking the magic number and the data length."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip signature: decide by content, not by file name
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, str(exc) or type(exc).__name__) from exc
    if len(raw) < 4:
        raise _corrupt(path, "no IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _corrupt(path, f"magic number {found:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, "header cut short")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise _corrupt(path, f"{len(raw) - header} data bytes for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def candidate_dirs(data_dir: Path | None) -> list[Path]:
    """Directories searched, in order: data_dir and data_dir/fashion-mnist if one was given
    (never replaced by another copy: a wrong folder must not go unnoticed), else the Debian
    package's."""
    return [data_dir, data_dir / SUBDIR] if data_dir is not None else [DEBIAN_DIR]


@register_dataset("fashion-mnist")
def load_fashion_mnist(data_dir: Path | None = None) -> ImageArrays:
    """60,000 training and 10,000 test 28x28 grey images of clothes in 10 classes."""
    searched = candidate_dirs(data_dir)
    for directory in searched:
        paths = {key: _find_file(directory, stem) for key, stem in FILES.items()}
        if all(path is not None for path in paths.values()):
            break
    else:
        files = ", ".join(f"{stem}.gz" for stem in FILES.values())
        debian = f"`apt-get install dataset-fashion-mnist` (it installs into {DEBIAN_DIR})"
        if data_dir is None:
            raise DatasetNotFoundError(
                f"fashion-mnist not found in {DEBIAN_DIR}: pass `data_dir` with the four IDX "
                f"files ({files}), or {debian}"
            )
        problem = (
            f"data folder {data_dir} does not exist"
            if not data_dir.is_dir()
            else f"fashion-mnist not found in {data_dir} or {data_dir / SUBDIR}"
        )
        raise DatasetNotFoundError(
            f"{problem}: pass `data_dir` pointing at the four IDX files ({files}), or leave "
            f"it out to use {debian}"
        )
    logger.info("fashion-mnist: reading IDX files from %s", directory)
    arrays = {}
    for split in ("train", "test"):
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        images = read_idx(image_path, IMAGE_MAGIC)
        labels = read_idx(label_path, LABEL_MAGIC)
        if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise _corrupt(image_path, f"images are {images.shape[1:]}, expected 28x28")
        if labels.shape[0] != images.shape[0]:
            raise _corrupt(label_path, f"{labels.shape[0]} labels for {images.shape[0]} images")
        if labels.size and labels.max() >= len(CLASSES):
            raise _corrupt(label_path, f"label {labels.max()} out of range 0..9")
        arrays[f"{split}_images"] = torch.from_numpy(images).unsqueeze(1)
        arrays[f"{split}_labels"] = torch.from_numpy(labels.astype(np.int64))
    return ImageArrays(**arrays, classes=CLASSES, flip=True, crop_padding=2)
