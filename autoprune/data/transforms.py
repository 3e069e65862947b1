"""ImageNet-style decoding and augmentation with Pillow alone (torchvision does not import here).

Every transform is "pick a box of the source image, resize that box to ``size x size``":

* training: ``RandomResizedCrop`` — a box covering a fraction ``s ~ U(0.08, 1)`` of the image
  area with aspect ratio ``r``, ``log r ~ U(log 3/4, log 4/3)``, then a horizontal flip with
  probability 1/2;
* evaluation: resize the shorter side to ``size * 256/224`` and centre-crop ``size``, which
  keeps the centred square of side ``min(W, H) * 224/256`` of the source (``crop_fraction``
  0.875); small images are not cropped (fraction 1: the centred square of the shorter side).

The ``light`` recipe for small images (``light_sample``) is the evaluation view (fraction 1)
shifted by a random crop of the zero-padded image (padding filled with the training mean)
and, where allowed, mirrored.

Doing crop and resize as one ``Image.resize(box=...)`` call never materialises the resized
full image. For JPEG files the decoder is also asked (``Image.draft``) to decode at 1/2, 1/4
or 1/8 scale whenever the box still covers at least ``size`` pixels per side afterwards:
DCT-domain downscaling is several times cheaper than decoding at full resolution.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

# the evaluation view is also the inference view: its geometry lives with ``Preprocess``
from autoprune.preprocess import (
    EVAL_RESIZE_RATIO,
    Box,
    BoxChooser,
    crop_fraction_box,
    resize_box,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# one grey channel: the mean of the three ImageNet channel statistics
GREY_MEAN = (0.449,)
GREY_STD = (0.226,)
TRAIN_SCALE = (0.08, 1.0)
TRAIN_RATIO = (3 / 4, 4 / 3)
RANDOM_CROP_ATTEMPTS = 10
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def random_resized_crop_box(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = TRAIN_SCALE,
    ratio: tuple[float, float] = TRAIN_RATIO,
) -> Box:
    """A random box of area ``s * W * H`` and aspect ``w / h = r`` that fits in the image.

    ``s ~ U(scale)``, ``log r ~ U(log ratio)``; up to 10 draws, as in the usual definition.
    If none fits (extreme aspect ratios), the largest centred box with ``r`` clamped to
    ``ratio`` is returned.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(RANDOM_CROP_ATTEMPTS):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_low, log_high))
        crop_w = round(math.sqrt(target * aspect))
        crop_h = round(math.sqrt(target / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left = rng.randint(0, width - crop_w)
            top = rng.randint(0, height - crop_h)
            return (left, top, left + crop_w, top + crop_h)
    aspect = width / height
    if aspect < ratio[0]:
        crop_w, crop_h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        crop_w, crop_h = round(height * ratio[1]), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return (left, top, left + crop_w, top + crop_h)


def load_crop(
    path: str | Path, mode: str, size: int, choose_box: BoxChooser, *, flip: bool = False
) -> np.ndarray:
    """Decode ``path`` in ``mode`` ('RGB' or 'L'), resize the chosen box to ``size x size``.

    Returns uint8 ``size x size x C``. The box is chosen from the header's size before any
    pixel is decoded, so JPEGs can be decoded at a reduced scale (see the module docstring).
    Raises whatever Pillow raises for an unreadable file (``OSError`` and friends).
    """
    from PIL import Image  # lazy: only the streaming datasets need Pillow

    with Image.open(path) as image:
        width, height = image.size
        left, top, right, bottom = choose_box(width, height)
        # the smallest decode size at which the box still spans >= size pixels per side
        needed = (
            max(1, math.ceil(width * size / max(right - left, 1e-6))),
            max(1, math.ceil(height * size / max(bottom - top, 1e-6))),
        )
        drafted = image.draft(mode, needed)  # None for formats other than JPEG
        if drafted is not None:
            factor = width / drafted[1][2]  # the decoder's reduction: 1, 2, 4 or 8
            left, top, right, bottom = (v / factor for v in (left, top, right, bottom))
        return resize_box(image, mode, size, (left, top, right, bottom), flip=flip)


def train_sample(path: str | Path, mode: str, size: int, seed: int) -> np.ndarray:
    """The training view of one image: random resized crop and random flip, fixed by ``seed``.

    All randomness comes from ``random.Random(seed)``, so a sample's augmentation depends on
    its seed only, not on which worker process decodes it.
    """
    rng = random.Random(seed)
    flip = rng.random() < 0.5
    return load_crop(path, mode, size, lambda w, h: random_resized_crop_box(w, h, rng), flip=flip)


def eval_sample(
    path: str | Path, mode: str, size: int, crop_fraction: float = 1 / EVAL_RESIZE_RATIO
) -> np.ndarray:
    """The evaluation view of one image: the centred square of ``crop_fraction`` of the
    shorter side resized to ``size`` (default: resize to ``size * 256/224``, crop ``size``)."""
    return load_crop(path, mode, size, crop_fraction_box(crop_fraction))


def light_sample(
    path: str | Path,
    mode: str,
    size: int,
    seed: int,
    *,
    padding: int,
    flip: bool,
    fill: tuple[int, ...],
) -> np.ndarray:
    """The ``light`` training view: the uncropped evaluation view, padded by ``padding`` pixels
    of ``fill`` (the training mean) and cut at a random offset, mirrored with probability 1/2
    if ``flip``; fixed by ``seed`` as in ``train_sample``."""
    rng = random.Random(seed)
    pixels = load_crop(path, mode, size, crop_fraction_box(1.0))
    if padding > 0:
        height, width, channels = pixels.shape
        padded = np.empty((height + 2 * padding, width + 2 * padding, channels), np.uint8)
        padded[...] = np.asarray(fill[:channels], dtype=np.uint8)
        padded[padding : padding + height, padding : padding + width] = pixels
        top, left = rng.randint(0, 2 * padding), rng.randint(0, 2 * padding)
        pixels = padded[top : top + height, left : left + width]
    if flip and rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def normalisation(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet ``(mean, std)`` of pixels in [0, 1]: per channel for RGB, averaged for grey."""
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GREY_MEAN, GREY_STD)
