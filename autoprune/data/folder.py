"""Streaming image folders: user data and ImageNet, decoded by DataLoader worker processes.

Layout under the root (class names are the sorted sub-folder names of ``train/``)::

    root/train/<class>/*.jpg|jpeg|png|bmp|gif|tif|tiff|webp|ppm|pgm   (required)
    root/val/<class>/*                                                  (optional)
    root/test/<class>/*                                                 (optional)

How the three splits are formed:

* ``val/`` and ``test/`` both present: used as they are; ``val_fraction`` is not used.
* only ``test/``: validation is a seeded stratified ``val_fraction`` of ``train/``.
* only ``val/`` (the ImageNet layout): ``val/`` becomes the test split — the held-out data a
  search never sees — and validation is a seeded stratified ``val_fraction`` of ``train/``.
* neither: a fixed stratified 20 % of ``train/`` (seed 0, independent of ``seed``) is the
  test split, and validation is carved from the rest as above.

Images are decoded with Pillow in ``RGB``, or in ``L`` when every sampled training image is
grey (``in_channels`` follows). The training recipe (``augment``) defaults to ``light`` for
images of at most ``SMALL_IMAGE`` px (a padded random crop, flips for colour images only: grey
ones are often digits or text) and to ``imagenet`` above (random resized crop and flip); the
evaluation view resizes the whole centred square, with the 87.5 % centre crop only for
``imagenet`` on large images (see ``transforms.py``). ``imagefolder`` normalises with the
per-channel statistics of a seeded sample of its training split (evaluation views),
``imagenet`` with ImageNet's. Each training sample's augmentation is fixed by a per-sample
seed drawn from the caller's generator, so a seed gives the same batches with any number of
workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from autoprune.data.base import (
    SPLITS,
    LoadOptions,
    StreamingSource,
    channel_stats,
    default_workers,
    register_dataset,
    stratified_split,
)
from autoprune.data.transforms import (
    EVAL_RESIZE_RATIO,
    GREY_MODES,
    eval_sample,
    light_sample,
    normalisation,
    train_sample,
)
from autoprune.errors import ConfigError, DatasetNotFoundError
from autoprune.preprocess import Preprocess

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
IMAGENET_DIR_ENV = "AUTOPRUNE_IMAGENET_DIR"
IMAGENET_SUBDIR = "imagenet"
IMAGENET_SIZE = 224
MAX_DEFAULT_SIZE = 224
TEST_FRACTION = 0.2
TEST_SEED = 0  # fixed for good: the test split must not move with the user's --seed
PROBE_CLASSES = 64  # classes whose first image is opened to decide the colour mode and size
SMALL_IMAGE = 64  # at most this side: light augmentation and no centre crop by default
STATS_SAMPLES = 1000  # training images whose pixels give imagefolder's mean and std
STATS_SEED = 0
EVAL_SEED = -1  # a sample seed that asks for the evaluation transform
SPLIT_CODES = {split: code for code, split in enumerate(SPLITS)}
# Pillow's complaints about a broken file are spread over several exception types
DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, EOFError)


@dataclass(frozen=True)
class SplitFiles:
    """One split's images: root-relative paths as fixed-width bytes, and int64 labels.

    Plain numpy arrays rather than lists of ``str``: worker processes share them copy-on-write
    without reference counts touching every page (a list of 1.3 M strings would be copied).
    """

    paths: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray) -> SplitFiles:
        index = np.asarray(index, dtype=np.int64)
        return SplitFiles(self.paths[index], self.labels[index])

    @staticmethod
    def build(entries: list[tuple[str, int]]) -> SplitFiles:
        paths = np.array([os.fsencode(path) for path, _ in entries], dtype=np.bytes_)
        if not entries:
            paths = np.zeros(0, dtype="S1")
        return SplitFiles(paths, np.array([label for _, label in entries], dtype=np.int64))


@dataclass(frozen=True)
class FolderScan:
    """What ``scan_image_folder`` found: the class names and each present folder's files."""

    root: Path
    classes: tuple[str, ...]
    folders: dict[str, SplitFiles]  # keys among 'train', 'val', 'test'


def _is_image(name: str) -> bool:
    return not name.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _class_images(root: Path, split: str) -> dict[str, list[str]]:
    """``{class: sorted root-relative image paths}`` of ``root/split``; errors name the fix."""
    folder = root / split
    classes: dict[str, list[str]] = {}
    loose = 0
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            names = sorted(
                item.name
                for item in os.scandir(entry.path)
                if _is_image(item.name) and item.is_file()
            )
            if not names:
                raise DatasetNotFoundError(
                    f"class folder {folder / entry.name} holds no images "
                    f"({', '.join(sorted(IMAGE_SUFFIXES))}): add images or remove the folder"
                )
            classes[entry.name] = [f"{split}/{entry.name}/{name}" for name in names]
        elif _is_image(entry.name):
            loose += 1
    if not classes:
        found = f" ({loose} images lie directly in it)" if loose else ""
        raise DatasetNotFoundError(
            f"{folder} has no class folders{found}: put each class's images in {folder}/<class>/"
        )
    return classes


def scan_image_folder(root: Path) -> FolderScan:
    """Index ``root/train``, and ``root/val`` and ``root/test`` where present."""
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image folder {root} does not exist: pass `data_dir` pointing at a folder "
            "with train/<class>/ images"
        )
    if not (root / "train").is_dir():
        raise DatasetNotFoundError(
            f"image folder {root} has no train/ folder: lay the images out as "
            "train/<class>/*.jpg (and optionally val/<class>/, test/<class>/)"
        )
    found = {split: _class_images(root, split) for split in SPLITS if (root / split).is_dir()}
    classes = tuple(sorted(found["train"]))
    index = {name: i for i, name in enumerate(classes)}
    folders = {}
    for split, per_class in found.items():
        unknown = sorted(set(per_class) - set(index))
        if unknown:
            raise DatasetNotFoundError(
                f"{root / split} has classes {unknown} that train/ lacks: add them to train/ "
                f"or remove them from {split}/"
            )
        entries = [(path, index[name]) for name in sorted(per_class) for path in per_class[name]]
        folders[split] = SplitFiles.build(entries)
    return FolderScan(root=root, classes=classes, folders=folders)


def form_splits(
    scan: FolderScan, val_fraction: float, seed: int, max_train: int | None
) -> tuple[dict[str, SplitFiles], str]:
    """The train/val/test files by the rules of the module docstring, and how they were made."""
    train = scan.folders["train"]
    labels = torch.from_numpy(train.labels)
    if "test" in scan.folders:
        test, how = scan.folders["test"], "test/ as test"
    elif "val" in scan.folders:
        test, how = scan.folders["val"], "val/ as test"
    else:
        rest, held = stratified_split(
            labels, TEST_FRACTION, torch.Generator().manual_seed(TEST_SEED)
        )
        kept = rest.sort().values
        test, train, labels = train.subset(held.sort().values), train.subset(kept), labels[kept]
        how = f"a fixed {TEST_FRACTION:.0%} of train/ as test"
    generator = torch.Generator().manual_seed(seed)
    if "val" in scan.folders and "test" in scan.folders:
        val = scan.folders["val"]
        train_idx = torch.randperm(len(train), generator=generator)
        how += ", val/ as val"
    else:
        train_idx, val_idx = stratified_split(labels, val_fraction, generator)
        val = train.subset(val_idx.sort().values)
        how += f", a seeded {val_fraction:.0%} of train/ as val"
    if max_train is not None:
        train_idx = train_idx[:max_train]
    return {"train": train.subset(train_idx.sort().values), "val": val, "test": test}, how


def probe_images(root: Path, files: SplitFiles) -> tuple[str, int]:
    """Colour mode ('RGB' or 'L') and median shorter side of the first image of some classes.

    Only headers are read. One colour image among them makes the dataset RGB.
    """
    from PIL import Image

    first = np.unique(files.labels, return_index=True)[1]
    step = max(1, len(first) // PROBE_CLASSES)
    modes, sides = set(), []
    for index in first[::step]:
        path = root / os.fsdecode(files.paths[index])
        try:
            with Image.open(path) as image:
                modes.add(image.mode)
                sides.append(min(image.size))
        except DECODE_ERRORS as exc:
            raise DatasetNotFoundError(
                f"image {path} cannot be decoded ({exc}): delete or replace it"
            ) from exc
    mode = "L" if modes <= GREY_MODES else "RGB"
    return mode, int(statistics.median(sides))


@dataclass(frozen=True)
class Recipe:
    """How the images of one opened folder are turned into pixels (see the module docstring).

    ``fill`` is the padding colour of ``light`` crops: the training mean, in uint8.
    """

    augment: str
    crop_fraction: float
    padding: int = 0
    flip: bool = False
    fill: tuple[int, ...] = (0, 0, 0)

    @staticmethod
    def choose(augment: str | None, size: int, channels: int, default: str | None) -> Recipe:
        """The recipe for images of ``size`` px: ``augment``, else ``default``, else by size."""
        chosen = augment or default or ("light" if size <= SMALL_IMAGE else "imagenet")
        crop = 1 / EVAL_RESIZE_RATIO if chosen == "imagenet" and size > SMALL_IMAGE else 1.0
        return Recipe(chosen, crop, padding=max(1, round(size / 8)), flip=channels == 3)


def sample_pixels(
    root: Path, path: bytes, mode: str, size: int, recipe: Recipe, seed: int
) -> np.ndarray:
    """One sample's uint8 ``H x W x C`` pixels: the evaluation view, or ``recipe``'s training
    view fixed by ``seed``."""
    full = os.path.join(str(root), os.fsdecode(path))
    if seed == EVAL_SEED or recipe.augment == "none":
        return eval_sample(full, mode, size, recipe.crop_fraction)
    if recipe.augment == "imagenet":
        return train_sample(full, mode, size, seed)
    return light_sample(
        full, mode, size, seed, padding=recipe.padding, flip=recipe.flip, fill=recipe.fill
    )


def training_stats(
    root: Path, files: SplitFiles, mode: str, size: int, recipe: Recipe
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (pixels in [0, 1]) of up to ``STATS_SAMPLES`` training images
    (a seeded sample, evaluation views): the training split's statistics at a bounded cost."""
    count = len(files)
    generator = torch.Generator().manual_seed(STATS_SEED)
    chosen = torch.randperm(count, generator=generator)[:STATS_SAMPLES].sort().values
    pixels, problem = [], None
    for index in chosen.tolist():
        try:
            pixels.append(sample_pixels(root, files.paths[index], mode, size, recipe, EVAL_SEED))
        except DECODE_ERRORS as exc:  # named when a pass reaches it; the rest still count
            problem = problem or (root / os.fsdecode(files.paths[index]), exc)
    if not pixels:
        path, exc = problem or (root, "no training images")
        raise DatasetNotFoundError(f"image {path} cannot be decoded ({exc}): delete or replace it")
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
    mean, std = channel_stats(images)
    return tuple(mean.tolist()), tuple(std.tolist())


# --- what worker processes run ---------------------------------------------------------------

SampleKey = tuple[int, int, int]
"""``(split code, index in that split, augmentation seed or EVAL_SEED)``."""


class FolderSamples(Dataset):
    """Decodes one sample per key; a broken file comes back as its error message, not raised.

    Raising inside a worker would reach the user as a multi-line traceback dump; the message
    travels to the main process instead, which raises it as a one-line error.
    """

    def __init__(
        self, root: Path, splits: dict[str, SplitFiles], mode: str, size: int, recipe: Recipe
    ) -> None:
        self.root = root
        self.splits = [splits[split] for split in SPLITS]
        self.mode, self.size, self.recipe = mode, size, recipe

    def __len__(self) -> int:
        return sum(len(files) for files in self.splits)

    def __getitem__(self, key: SampleKey) -> tuple[np.ndarray | None, int, str | None]:
        code, index, seed = key
        files = self.splits[code]
        path = os.path.join(str(self.root), os.fsdecode(files.paths[index]))
        label = int(files.labels[index])
        try:
            pixels = sample_pixels(
                self.root, files.paths[index], self.mode, self.size, self.recipe, seed
            )
        except DECODE_ERRORS as exc:
            return None, label, f"image {path} cannot be decoded ({exc}): delete or replace it"
        return pixels, label, None


def collate_samples(
    samples: list[tuple[np.ndarray | None, int, str | None]],
) -> tuple[torch.Tensor, torch.Tensor] | str:
    """Stack to uint8 ``B x H x W x C`` and int64 labels, or pass the first error message on."""
    for _, _, problem in samples:
        if problem is not None:
            return problem
    images = torch.from_numpy(np.stack([pixels for pixels, _, _ in samples]))
    labels = torch.tensor([label for _, label, _ in samples], dtype=torch.int64)
    return images, labels


@dataclass(frozen=True)
class PassPlan:
    """One pass over a split: the sample order and, for training, each sample's seed."""

    code: int
    order: torch.Tensor
    seeds: torch.Tensor | None
    batch_size: int


class PlannedBatches(Sampler[list[SampleKey]]):
    """Yields the keys of the current plan's batches. Runs in the main process only.

    The plan is replaced before each pass, which lets one DataLoader (and its persistent
    workers) serve every split, batch size and mode.
    """

    def __init__(self, plan: PassPlan | None = None) -> None:
        self.plan = plan

    def __len__(self) -> int:
        plan = self.plan
        return 0 if plan is None else -(-plan.order.numel() // plan.batch_size)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        plan = self.plan
        if plan is None:
            return
        order = plan.order.tolist()
        seeds = plan.seeds.tolist() if plan.seeds is not None else [EVAL_SEED] * len(order)
        for start in range(0, len(order), plan.batch_size):
            stop = start + plan.batch_size
            yield [
                (plan.code, index, seed)
                for index, seed in zip(order[start:stop], seeds[start:stop], strict=True)
            ]


# --- the ImageData ---------------------------------------------------------------------------


class ImageFolderData:
    """Streaming ``ImageData`` over image files; see the module docstring for the rules.

    One DataLoader with ``workers`` persistent processes serves every pass. A pass started
    while another is still being iterated gets a temporary loader of its own, so nesting
    (e.g. evaluating in the middle of an epoch) stays correct.
    """

    def __init__(
        self,
        *,
        name: str,
        root: Path,
        classes: tuple[str, ...],
        splits: dict[str, SplitFiles],
        mode: str,
        image_size: int,
        device: torch.device,
        workers: int,
        recipe: Recipe | None = None,
        stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.classes = classes
        self.num_classes = len(classes)
        self.in_channels = 1 if mode == "L" else 3
        self.image_size = image_size
        self.device = torch.device(device)
        self.workers = workers
        self.recipe = recipe or Recipe.choose(None, image_size, self.in_channels, "imagenet")
        self.augmentation = self.recipe.augment
        self.mean, self.std = stats or normalisation(self.in_channels)
        self._files = splits
        self._samples = FolderSamples(root, splits, mode, image_size, self.recipe)
        self._pin = self.device.type == "cuda"
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float64).view(shape)
        std = torch.tensor(self.std, dtype=torch.float64).clamp_min(1e-6).view(shape)
        # x / 255 normalised in one fused multiply-add: x * (1 / (255 std)) - mean / std,
        # computed as Preprocess.normalise does, so a loaded model sees identical inputs
        self._scale = (1.0 / (255.0 * std)).to(self.device, torch.float32)
        self._shift = (-mean / std).to(self.device, torch.float32)
        self._sampler = PlannedBatches()
        self._loader: DataLoader | None = None
        self._busy = False

    @property
    def preprocessing(self) -> Preprocess:
        """What a model trained on these images needs at inference (``autoprune.preprocess``)."""
        return Preprocess(
            image_size=self.image_size,
            in_channels=self.in_channels,
            crop_fraction=self.recipe.crop_fraction,
            mean=self.mean,
            std=self.std,
            classes=self.classes,
        )

    def num_examples(self, split: str) -> int:
        """The number of samples in ``split`` in {'train', 'val', 'test'}."""
        return len(self._split_files(split))

    @cached_property
    def identity(self) -> str:
        """A short digest of the class names and every split's relative paths and labels.

        Two folders with the same name ('imagefolder') hold different data; caches keyed
        by the dataset name alone would mix them up. The digest ignores where the folder
        lies, so a moved copy keeps it; a different image list or split changes it.
        """
        digest = hashlib.sha256("\0".join(self.classes).encode())
        for split in SPLITS:
            files = self._files[split]
            digest.update(f"|{split}:{len(files)}|".encode())
            digest.update(b"\0".join(files.paths.tolist()))
            digest.update(files.labels.tobytes())
        return digest.hexdigest()[:16]

    def _split_files(self, split: str) -> SplitFiles:
        if split not in SPLIT_CODES:
            raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        return self._files[split]

    def _make_loader(self, sampler: PlannedBatches, persistent: bool) -> DataLoader:
        return DataLoader(
            self._samples,
            batch_sampler=sampler,
            num_workers=self.workers,
            collate_fn=collate_samples,
            pin_memory=self._pin,
            persistent_workers=persistent and self.workers > 0,
            # its own generator: drawing worker seeds must not consume the global torch RNG
            generator=torch.Generator().manual_seed(0),
        )

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over ``split``: float32 normalised images and int64 labels on the device.

        ``train=True`` shuffles with ``generator`` and draws one augmentation seed per
        sample from it; ``train=False`` yields the split in order with the evaluation
        transform. The last partial batch is kept in both modes.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        count = len(self._split_files(split))
        if train:
            order = torch.randperm(count, generator=generator)
            seeds = torch.randint(0, 2**62, (count,), generator=generator)
        else:
            order, seeds = torch.arange(count), None
        plan = PassPlan(SPLIT_CODES[split], order, seeds, batch_size)
        shared = not self._busy
        if shared:
            self._sampler.plan = plan  # before iter(): workers start prefetching at once
            if self._loader is None:
                self._loader = self._make_loader(self._sampler, persistent=True)
            loader = self._loader
            self._busy = True
        else:
            loader = self._make_loader(PlannedBatches(plan), persistent=False)
        try:
            for batch in loader:
                if isinstance(batch, str):
                    raise DatasetNotFoundError(batch)
                images, labels = batch
                yield self._normalise(images), labels.to(self.device, non_blocking=self._pin)
        finally:
            if shared:
                self._busy = False

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``B x H x W x C`` -> float32 ``B x C x H x W``, moved while still uint8."""
        moved = images.to(self.device, non_blocking=self._pin).permute(0, 3, 1, 2)
        floats = moved.to(torch.float32, memory_format=torch.contiguous_format)
        return floats.mul_(self._scale).add_(self._shift)

    def close(self) -> None:
        """Stop the worker processes now (they also stop when this object is collected)."""
        self._loader = None


# --- registry entries ------------------------------------------------------------------------


class ImageFolderSource(StreamingSource):
    """Opens an image folder found among ``candidates(data_dir)``; see the module docstring.

    ``default_size``: image side when none is asked; ``None`` means the median shorter side
    of the probed training images, at most 224.
    """

    def __init__(
        self,
        name: str,
        default_size: int | None,
        env: str | None = None,
        *,
        default_augment: str | None = None,
        own_stats: bool = True,
    ) -> None:
        self.name = name
        self.default_size = default_size
        self.env = env
        self.default_augment = default_augment  # None: chosen by image size
        self.own_stats = own_stats  # False: ImageNet's statistics

    def candidates(self, data_dir: Path | None) -> list[Path]:
        if self.env is None:
            return [data_dir] if data_dir is not None else []
        if data_dir is not None:  # a folder the caller gave is never replaced by the env's
            return [data_dir, data_dir / self.name]
        value = os.environ.get(self.env)
        return [Path(value).expanduser()] if value else []

    def locate(self, data_dir: Path | None) -> Path:
        searched = self.candidates(data_dir)
        for root in searched:
            if (root / "train").is_dir():
                return root
        if self.env is None:
            if data_dir is None:
                raise DatasetNotFoundError(
                    f"{self.name} needs a folder: pass `data_dir` pointing at a folder with "
                    "train/<class>/ images (and optionally val/<class>/, test/<class>/)"
                )
            return data_dir  # scan_image_folder says what is wrong with it
        if not searched:
            raise DatasetNotFoundError(
                f"{self.name} folder not given: pass `data_dir` or set {self.env} to a folder "
                "with train/<class>/ and val/<class>/ images"
            )
        if len(searched) == 1:
            return searched[0]
        raise DatasetNotFoundError(
            f"{self.name} not found in {', '.join(map(str, searched))}: pass `data_dir` "
            "pointing at a folder with train/<class>/ and val/<class>/ images, or leave it out "
            f"to use {self.env}"
        )

    def open(self, data_dir: Path | None, options: LoadOptions) -> ImageFolderData:
        root = self.locate(data_dir)
        scan = scan_image_folder(root)
        splits, how = form_splits(scan, options.val_fraction, options.seed, options.max_train)
        mode, median_side = probe_images(root, scan.folders["train"])
        size = options.image_size or self.default_size or min(median_side, MAX_DEFAULT_SIZE)
        workers = default_workers() if options.workers is None else options.workers
        channels = 1 if mode == "L" else 3
        recipe = Recipe.choose(options.augment, size, channels, self.default_augment)
        stats = (
            training_stats(root, splits["train"], mode, size, recipe)
            if self.own_stats
            else normalisation(channels)
        )
        # the padding of light crops shows the training mean, i.e. zero once normalised
        recipe = Recipe(
            recipe.augment,
            recipe.crop_fraction,
            recipe.padding,
            recipe.flip,
            tuple(round(255 * v) for v in stats[0]) * (3 // channels),
        )
        logger.info(
            "%s: %d train, %d val, %d test %s images (%s) of %d classes from %s at %dx%d, "
            "%d workers",
            self.name,
            len(splits["train"]),
            len(splits["val"]),
            len(splits["test"]),
            mode,
            how,
            len(scan.classes),
            root,
            size,
            size,
            workers,
        )
        return ImageFolderData(
            name=self.name,
            root=root,
            classes=scan.classes,
            splits=splits,
            mode=mode,
            image_size=size,
            device=options.device,
            workers=workers,
            recipe=recipe,
            stats=stats,
        )


register_dataset("imagefolder")(ImageFolderSource("imagefolder", default_size=None))
register_dataset("imagenet")(
    ImageFolderSource(
        IMAGENET_SUBDIR,
        default_size=IMAGENET_SIZE,
        env=IMAGENET_DIR_ENV,
        default_augment="imagenet",
        own_stats=False,
    )
)
