"""Dataset registry, raw and training-ready containers, splitting, normalisation and batching.

Two kinds of dataset share the ``DATASETS`` registry and the ``ImageData`` interface:

* in memory (digits, fashion-mnist, cifar10): ``loader(data_dir)`` returns the raw
  ``ImageArrays`` (uint8 images, int64 labels). ``load_dataset`` turns that into
  ``DataSplits``: a seeded validation split carved from the training images, per-channel
  normalisation computed on the training split only, everything moved to the device once.
  Batching and augmentation then run on the device, so a GPU never waits for a CPU loader.
* streaming (imagefolder, imagenet; see ``folder.py``): a ``StreamingSource`` whose images
  stay on disk and are decoded batch by batch by DataLoader worker processes.

Options of ``load_dataset`` that only some datasets use follow one rule: options that change
only speed (``workers``) are ignored where they do not apply; options that change the data
(``image_size``) are rejected by a dataset that cannot honour them.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from autoprune.errors import ConfigError
from autoprune.preprocess import Preprocess
from autoprune.registry import Registry

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "AUTOPRUNE_DATA_DIR"
CACHE_DIR_ENV = "AUTOPRUNE_CACHE"
SPLITS = ("train", "val", "test")
# Training augmentation recipes. none: the evaluation view; light: a small random crop of the
# padded image, mirrored where the dataset allows it (small images, digits, text); imagenet:
# random resized crop and flip (image folders only). Each dataset picks its default.
AUGMENTATIONS = ("none", "light", "imagenet")


@runtime_checkable
class ImageData(Protocol):
    """What training and evaluation loops may rely on, whatever holds the images.

    Satisfied by the in-memory ``DataSplits`` and by the streaming image-folder datasets.
    Loops must not reach for tensors directly (``train_x`` etc. exist only in memory): they
    ask ``num_examples`` for sizes and iterate ``batches``, which yields float32 images
    ``B x in_channels x image_size x image_size`` and int64 labels, already on the device.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    classes: tuple[str, ...]
    augmentation: str  # the training recipe in use, one of AUGMENTATIONS
    # and a ``preprocessing`` property (an ``autoprune.preprocess.Preprocess``): what a model
    # trained on the data needs at inference; not a protocol member, so that ``isinstance``
    # checks do not compute it

    def num_examples(self, split: str) -> int:
        """How many samples one pass over ``split`` ('train', 'val' or 'test') yields."""
        ...

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over ``split``; ``train=True`` shuffles with ``generator`` and augments.

        ``train=False`` yields the split in a fixed order, unaugmented; the last partial batch
        is kept in both modes, so every sample is seen exactly once per pass.
        """
        ...


@dataclass(frozen=True)
class ImageArrays:
    """What a dataset loader returns: raw uint8 images ``N x C x H x W`` and int64 labels.

    ``flip`` says whether a horizontal flip keeps the label (not for digits); ``crop_padding``
    is the zero padding of the random-crop augmentation, in pixels.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    flip: bool
    crop_padding: int

    def __post_init__(self) -> None:
        # A loader bug caught here is much easier to read than a shape error mid-training.
        pairs = (
            ("train", self.train_images, self.train_labels),
            ("test", self.test_images, self.test_labels),
        )
        for split, images, labels in pairs:
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(
                    f"{split} images must be uint8 N x C x H x W, got {images.dtype} "
                    f"{tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"{split} labels must be int64 of length {images.shape[0]}, got "
                    f"{labels.dtype} {tuple(labels.shape)}"
                )
            low, high = (int(labels.min()), int(labels.max())) if labels.numel() else (0, -1)
            if low < 0 or high >= len(self.classes):
                raise ValueError(f"{split} labels fall outside 0..{len(self.classes) - 1}")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError("train and test images differ in shape")
        if self.crop_padding < 0:
            raise ValueError("crop_padding must be >= 0")


DatasetLoader = Callable[[Path | None], ImageArrays]
"""``loader(data_dir) -> ImageArrays``; ``data_dir`` is ``None`` when the user gave none."""


@dataclass(frozen=True)
class LoadOptions:
    """Everything ``load_dataset`` was asked for besides the name and the data folder.

    ``workers``: data-loader processes (0 decodes in the calling process; ``None``: the
    dataset's default). ``image_size``: side of the square images handed out (``None``: the
    dataset's default).
    """

    val_fraction: float = 0.1
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_train: int | None = None
    workers: int | None = None
    image_size: int | None = None
    augment: str | None = None  # one of AUGMENTATIONS; None: the dataset's default


def check_augment(augment: str | None) -> None:
    """``ConfigError`` unless ``augment`` is None or one of ``AUGMENTATIONS``."""
    if augment is not None and augment not in AUGMENTATIONS:
        raise ConfigError(
            f"unknown augmentation {augment!r}: choose one of {', '.join(AUGMENTATIONS)}"
        )


class StreamingSource(ABC):
    """A registry entry whose images stay on disk and are decoded while batches are drawn."""

    @abstractmethod
    def open(self, data_dir: Path | None, options: LoadOptions) -> ImageData:
        """Find the data under ``data_dir`` (``None``: the source's defaults) and index it."""


DATASETS: Registry[DatasetLoader | StreamingSource] = Registry("dataset")
register_dataset = DATASETS.register


def default_workers() -> int:
    """Data-loader processes when none are asked for: ``min(4, CPUs)``."""
    return min(4, os.cpu_count() or 1)


def default_data_dir() -> Path | None:
    """The directory in ``$AUTOPRUNE_DATA_DIR``, or ``None`` so each loader uses its defaults."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def default_cache_dir() -> Path:
    """Where decoded arrays and downloads are kept: ``$AUTOPRUNE_CACHE`` or ~/.cache/autoprune."""
    value = os.environ.get(CACHE_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "autoprune"


def stratified_split(
    labels: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into ``(rest, part)`` with ``round(fraction * n_c)`` of each class in part.

    Stratifying keeps small validation sets balanced. Both index tensors come out shuffled
    by ``generator``, so a prefix of either is itself a random, roughly balanced subset.
    """
    rest, part = [], []
    present = torch.bincount(labels) if labels.numel() else torch.zeros(0, dtype=torch.int64)
    for label in torch.nonzero(present).flatten().tolist():  # faster than torch.unique
        members = torch.nonzero(labels == label).squeeze(1)
        members = members[torch.randperm(members.numel(), generator=generator)]
        count = round(fraction * members.numel())
        part.append(members[:count])
        rest.append(members[count:])
    empty = torch.empty(0, dtype=torch.int64)
    rest_idx = torch.cat(rest) if rest else empty
    part_idx = torch.cat(part) if part else empty
    rest_idx = rest_idx[torch.randperm(rest_idx.numel(), generator=generator)]
    part_idx = part_idx[torch.randperm(part_idx.numel(), generator=generator)]
    return rest_idx, part_idx


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-channel mean and std of uint8 images scaled to [0, 1], as float64 tensors.

    Counting the 256 possible values per channel avoids a float copy of the whole set.
    """
    if images.numel() == 0:
        raise ConfigError("cannot compute normalisation statistics of an empty training split")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * values.square()).sum() / total - mean.square()
        means.append(mean)
        stds.append(var.clamp_min(0.0).sqrt())
    return torch.stack(means), torch.stack(stds)


def normalise(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """uint8 images -> float32 ``(x / 255 - mean) / std`` on ``device`` (moved as uint8)."""
    std = std.clamp_min(1e-6)
    shape = (1, -1, 1, 1)  # one fused scale and shift: x * (1 / (255 std)) - mean / std
    scale = (1.0 / (255.0 * std)).to(device=device, dtype=torch.float32).view(shape)
    shift = (-mean / std).to(device=device, dtype=torch.float32).view(shape)
    return images.to(device).to(torch.float32).mul_(scale).add_(shift)


def _uniform_ints(
    high: int, count: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``count`` integers in ``[0, high)`` drawn on the CPU generator, then moved to device."""
    return torch.randint(0, high, (count,), generator=generator).to(device)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image of the batch left-right with probability 1/2 (vectorised)."""
    mask = _uniform_ints(2, x.shape[0], generator, x.device).bool().view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad each side by ``padding`` and cut a random ``H x W`` window per image.

    The batch is gathered with one advanced-indexing call, no loop over samples. Data is
    already normalised, so zero padding means "the training mean" in pixel terms.
    """
    if padding <= 0:
        return x
    n, channels, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = _uniform_ints(2 * padding + 1, n, generator, x.device)
    left = _uniform_ints(2 * padding + 1, n, generator, x.device)
    rows = (top[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


@dataclass
class DataSplits:
    """Training-ready tensors: float32, normalised, already on the device.

    ``val`` is carved from the original training set; ``test`` is the official test split,
    which a search must never look at. ``mean``/``std`` are the per-channel statistics (of
    pixels scaled to [0, 1]) that were used to normalise every split.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: int
    flip: bool
    crop_padding: int
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    augmentation: str = "light"  # "light" (crop_padding, flip) or "none"

    @property
    def preprocessing(self) -> Preprocess:
        """What a model trained on this data needs at inference (see ``autoprune.preprocess``)."""
        return Preprocess(
            image_size=self.image_size,
            in_channels=self.in_channels,
            crop_fraction=1.0,
            mean=self.mean,
            std=self.std,
            classes=self.classes,
        )

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(images, labels)`` of ``split`` in {'train', 'val', 'test'}."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        return getattr(self, f"{split}_x"), getattr(self, f"{split}_y")

    def num_examples(self, split: str) -> int:
        """The number of samples in ``split`` in {'train', 'val', 'test'}."""
        return int(self.split(split)[1].shape[0])

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """This dataset's training augmentation: random crop, then random flip if allowed."""
        if self.augmentation == "none":
            return x
        x = random_crop(x, self.crop_padding, generator)
        return random_flip(x, generator) if self.flip else x

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over ``split`` in {'train', 'val', 'test'}, in batches of ``batch_size``.

        ``train=True`` shuffles (with ``generator``) and augments each batch on the device;
        ``train=False`` yields the data in order, unchanged. The last partial batch is kept
        in both modes, so every sample is seen exactly once per pass.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        images, labels = self.split(split)
        count = images.shape[0]
        if not train:
            for start in range(0, count, batch_size):
                yield images[start : start + batch_size], labels[start : start + batch_size]
            return
        order = torch.randperm(count, generator=generator).to(images.device)
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            yield self.augment(images[index], generator), labels[index]


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_train: int | None = None,
    workers: int | None = None,
    image_size: int | None = None,
    augment: str | None = None,
) -> ImageData:
    """Load a registered dataset and make it ready for training.

    The validation set is a stratified ``val_fraction`` of the training images, fixed by
    ``seed`` (streaming datasets with their own ``val/`` and ``test/`` folders use those).
    ``max_train`` caps the remaining training split (a random, seeded subset) for quick runs.
    In-memory datasets compute normalisation statistics on the final training split only, so
    neither validation nor test data leaks into them; so does ``imagefolder`` (on a seeded
    sample of its training images), while ``imagenet`` uses ImageNet's.

    ``augment`` (``AUGMENTATIONS``; None: the dataset's default) picks the training recipe:
    in-memory datasets default to ``light`` (their own padding, flips only where a mirrored
    image keeps its label) and accept ``none``; image folders default to ``light`` for images
    of at most 64 px (no flips for grey images, which are often digits or text) and to
    ``imagenet`` above, with the 87.5 % centre crop at evaluation only in the latter case.

    ``workers`` (data-loader processes) only concerns streaming datasets and is ignored by
    in-memory ones, which batch on the device. ``image_size`` resizes streaming datasets'
    images; an in-memory dataset accepts only ``None`` or its own size and raises
    ``ConfigError`` otherwise, since silently training on other images than asked is worse.
    """
    loader = DATASETS.get(name)
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if max_train is not None and max_train < 1:
        raise ConfigError(f"max_train must be >= 1, got {max_train}")
    if workers is not None and workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be >= 1, got {image_size}")
    check_augment(augment)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    device = torch.device(device)
    if isinstance(loader, StreamingSource):
        options = LoadOptions(val_fraction, seed, device, max_train, workers, image_size, augment)
        return loader.open(root, options)
    if augment == "imagenet":
        raise ConfigError(
            f"augmentation imagenet applies to image folders; dataset {name.lower()} takes "
            "none or light"
        )
    arrays = loader(root)
    native = arrays.train_images.shape[2]
    if image_size is not None and (image_size != native or arrays.train_images.shape[3] != native):
        raise ConfigError(
            f"dataset {name.lower()} has fixed {native}x{arrays.train_images.shape[3]} images "
            f"but image size {image_size} was asked: drop `image_size` (it applies to "
            "imagefolder and imagenet only)"
        )

    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx = stratified_split(arrays.train_labels, val_fraction, generator)
    val_idx = val_idx.sort().values
    if max_train is not None:
        train_idx = train_idx[:max_train]
    train_images = arrays.train_images[train_idx]
    mean, std = channel_stats(train_images)

    def prepare(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return normalise(images, mean, std, device), labels.to(device)

    train_x, train_y = prepare(train_images, arrays.train_labels[train_idx])
    val_x, val_y = prepare(arrays.train_images[val_idx], arrays.train_labels[val_idx])
    test_x, test_y = prepare(arrays.test_images, arrays.test_labels)
    key = name.lower()
    logger.info(
        "%s: %d train, %d val, %d test images of %s on %s",
        key,
        train_x.shape[0],
        val_x.shape[0],
        test_x.shape[0],
        "x".join(map(str, train_x.shape[1:])),
        device,
    )
    return DataSplits(
        name=key,
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=len(arrays.classes),
        in_channels=arrays.train_images.shape[1],
        image_size=arrays.train_images.shape[2],
        flip=arrays.flip,
        crop_padding=arrays.crop_padding,
        classes=arrays.classes,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        augmentation=augment or "light",
    )
