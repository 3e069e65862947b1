"""What a trained model needs at inference, stored in every checkpoint: ``Preprocess``.

A checkpoint's ``preprocess`` section (``Preprocess.to_dict``) records the input size, the
number of channels, the resize rule, the per-channel normalisation and the class names of the
data the network was trained on. ``autoprune.load(path, with_preprocess=True)`` returns it as
a callable that turns raw images into the batch the network takes::

    model, preprocess = autoprune.load("model.pt", with_preprocess=True)
    logits = model(preprocess(Image.open("seven.png")))          # a PIL image
    logits = model(preprocess(uint8_array))                       # H x W [x C], C x H x W, N x ...
    label = preprocess.classes[int(logits.argmax(1)[0])]

Resize rule (as at evaluation time during training): the centred square whose side is
``crop_fraction`` of the image's shorter side is resized (bilinear) to ``image_size``; fraction
1 keeps the whole square (small images are never cropped), 0.875 is the ImageNet centre crop.
Colour is converted to the model's channels (grey = ITU-R 601 luma, as Pillow's ``L``), then
each channel becomes ``(x / 255 - mean) / std``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autoprune.errors import ConfigError

Box = tuple[float, float, float, float]
"""``(left, top, right, bottom)`` in source pixels, as ``PIL.Image.resize(box=...)`` takes it."""

BoxChooser = Callable[[int, int], Box]
"""``choose(width, height) -> box``: where to crop an image of that size."""

EVAL_RESIZE_RATIO = 256 / 224  # ImageNet evaluation: resize to 256, centre-crop 224

FIELDS = ("image_size", "in_channels", "crop_fraction", "mean", "std", "classes")
LUMA = (0.299, 0.587, 0.114)  # Pillow's RGB -> L weights, so both paths agree


@dataclass(frozen=True)
class Preprocess:
    """Raw images -> the normalised float32 batch ``N x in_channels x image_size x image_size``.

    Accepts a PIL image, a uint8 array or tensor (``H x W``, ``H x W x C``, ``C x H x W``, or a
    batch ``N x ...`` of either layout; C of 1, 3 or 4 (alpha dropped)), a float tensor of
    pixels in [0, 1] in the same layouts, or a list of any of these. uint8 input goes through
    exactly the resize of the training pipeline (Pillow); float input that needs resizing is
    rounded to 8 bits first and resized the same way.
    """

    image_size: int
    in_channels: int
    crop_fraction: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()

    def validate(self) -> Preprocess:
        """Itself, or ``ValueError`` naming what cannot describe an image model's input."""
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(f"mean and std need {self.in_channels} values each")
        if not 0.0 < self.crop_fraction <= 1.0 or self.image_size < 1:
            raise ValueError("crop_fraction must be in (0, 1] and image_size >= 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint or ONNX metadata."""
        return {
            "image_size": int(self.image_size),
            "in_channels": int(self.in_channels),
            "crop_fraction": float(self.crop_fraction),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "classes": [str(c) for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Preprocess:
        """The inverse of ``to_dict``; ``ValueError`` naming what is missing or wrong."""
        if not isinstance(data, dict):
            raise ValueError("the preprocess section is not a mapping")
        missing = [name for name in FIELDS if name not in data]
        if missing:
            raise ValueError(f"the preprocess section lacks {', '.join(missing)}")
        return cls(
            image_size=int(data["image_size"]),
            in_channels=int(data["in_channels"]),
            crop_fraction=float(data["crop_fraction"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            classes=tuple(str(c) for c in data["classes"]),
        ).validate()

    @property
    def mode(self) -> str:
        """The Pillow mode the images are decoded in."""
        return "L" if self.in_channels == 1 else "RGB"

    def __call__(self, images: Any) -> torch.Tensor:
        """The normalised float32 batch of ``images`` (see the class docstring)."""
        return self.normalise(self.pixels(images))

    def pixels(self, images: Any) -> torch.Tensor:
        """``images`` resized and colour-converted: float32 in [0, 255], ``N x C x S x S``."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise ConfigError("preprocess got an empty list of images")
            return torch.cat([self.pixels(image) for image in images])
        if hasattr(images, "convert") and hasattr(images, "size"):  # a PIL image
            return self._from_pil([images])
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.array(images, copy=not images.flags.writeable, order="C"))
        if not isinstance(images, torch.Tensor):
            raise ConfigError(
                f"preprocess takes PIL images, arrays or tensors, not {type(images).__name__}"
            )
        batch = _to_nchw(images.detach().cpu())
        if batch.dtype == torch.uint8:
            size_ok = batch.shape[-2:] == (self.image_size, self.image_size)
            if size_ok and batch.shape[1] == self.in_channels and self.crop_fraction == 1.0:
                return batch.to(torch.float32)
            return self._from_pil([_to_pil(image) for image in batch])
        if not batch.is_floating_point():
            raise ConfigError(f"preprocess takes uint8 or float pixels, not {batch.dtype}")
        size_ok = batch.shape[-2:] == (self.image_size, self.image_size)
        if size_ok and self.crop_fraction == 1.0:
            return self._channels(batch.to(torch.float32)) * 255.0
        # resized as in training (Pillow, on 8-bit pixels): rounding costs at most 1/510
        as_uint8 = (batch.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        return self._from_pil([_to_pil(image) for image in as_uint8])

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 255] -> ``(x / 255 - mean) / std``, computed as the data loaders do."""
        mean = torch.tensor(self.mean, dtype=torch.float64)
        std = torch.tensor(self.std, dtype=torch.float64).clamp_min(1e-6)
        shape = (1, -1, 1, 1)
        scale = (1.0 / (255.0 * std)).to(torch.float32).view(shape)
        shift = (-mean / std).to(torch.float32).view(shape)
        return pixels.to(torch.float32).mul(scale).add(shift)

    def _from_pil(self, images: Sequence[Any]) -> torch.Tensor:
        choose = crop_fraction_box(self.crop_fraction)
        arrays = [
            resize_box(image, self.mode, self.image_size, choose(*image.size)) for image in images
        ]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.float32)

    def _channels(self, batch: torch.Tensor) -> torch.Tensor:
        channels = batch.shape[1]
        if channels == 4:  # RGBA: the alpha channel is not part of the image
            batch, channels = batch[:, :3], 3
        if channels == self.in_channels:
            return batch
        if channels == 3:  # to grey
            weights = torch.tensor(LUMA, dtype=batch.dtype).view(1, 3, 1, 1)
            return (batch * weights).sum(1, keepdim=True)
        if channels == 1:
            return batch.expand(-1, 3, -1, -1)
        raise ConfigError(f"preprocess takes images of 1, 3 or 4 channels, not {channels}")


def _to_nchw(images: torch.Tensor) -> torch.Tensor:
    """``H x W``, ``H x W x C``, ``C x H x W`` or a batch of them -> ``N x C x H x W``.

    A leading (or trailing) axis of 1, 3 or 4 is taken for channels; channels-first wins
    when both ends could be channels.
    """
    if images.dim() == 2:
        return images[None, None]
    if images.dim() == 3:
        images = (
            images[None]
            if images.shape[0] in (1, 3, 4) or images.shape[-1] in (1, 3, 4)
            else images[:, None]
        )
    if images.dim() != 4:
        raise ConfigError(f"preprocess takes 2 to 4 dimensional images, got {images.dim()}")
    if images.shape[1] in (1, 3, 4):
        return images
    if images.shape[-1] in (1, 3, 4):
        return images.permute(0, 3, 1, 2)
    raise ConfigError(
        f"preprocess cannot tell the channel axis of images shaped {tuple(images.shape)}: "
        "give H x W x C or C x H x W with 1, 3 or 4 channels"
    )


def _to_pil(image: torch.Tensor) -> Any:
    """One uint8 ``C x H x W`` image as a PIL image."""
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3])


def preprocess_of(data: Any) -> dict[str, Any] | None:
    """The ``preprocess`` checkpoint section of a loaded dataset (``ImageData``), or None for
    data that describes none (a caller's own ``ImageData``)."""
    preprocessing = getattr(data, "preprocessing", None)
    return preprocessing.to_dict() if isinstance(preprocessing, Preprocess) else None


def center_crop_box(width: int, height: int, resize_ratio: float = EVAL_RESIZE_RATIO) -> Box:
    """The centred square that "resize shorter side to ``size * ratio``, crop ``size``" keeps.

    Resizing by ``size * ratio / min(W, H)`` and cutting ``size`` pixels keeps a square of
    side ``min(W, H) / ratio`` of the source, whatever ``size`` is.
    """
    side = min(width, height) / resize_ratio
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def crop_fraction_box(fraction: float) -> BoxChooser:
    """The box chooser of the evaluation view keeping the centred ``fraction`` of the shorter
    side (1.0: the whole square, no crop; 0.875: the ImageNet centre crop)."""
    return lambda width, height: center_crop_box(width, height, 1.0 / fraction)


def resize_box(image: object, mode: str, size: int, box: Box, *, flip: bool = False) -> np.ndarray:
    """A PIL ``image`` converted to ``mode``, its ``box`` resized (bilinear) to ``size x size``.

    Returns uint8 ``size x size x C``. The one resize rule of training, evaluation and
    ``autoprune.preprocess``, so a raw image given to a loaded model is treated exactly alike.
    """
    from PIL import Image

    converted = image.convert(mode)  # type: ignore[attr-defined]
    resized = converted.resize((size, size), Image.Resampling.BILINEAR, box=box)
    if flip:
        resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(resized, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels
