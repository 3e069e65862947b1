"""The plain-data description of a run, saved next to its results and used as cache keys.

Every config is a frozen dataclass that round-trips through ``to_dict``/``from_dict`` (JSON
types only), so a checkpoint or an Optuna study records exactly what produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from autoprune.errors import ConfigError
from autoprune.quant import QuantSpec

if TYPE_CHECKING:
    from autoprune.data import DataSplits

C = TypeVar("C", bound="_Plain")

SEED_LIMIT = 2**32  # NumPy (Optuna's samplers) accepts seeds in [0, 2**32)


def require_number(
    what: str,
    value: Any,
    *,
    low: float,
    strict: bool = False,
    below: float | None = None,
    integer: bool = False,
) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite number ``>= low`` (``> low`` if
    ``strict``), ``< below`` if given, and an integer if ``integer``; ``what`` names it in
    the message, e.g. "finetune lr must be a finite number > 0, got nan"."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    ok = (is_int if integer else is_number) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low)
    ok = ok and (below is None or value < below)
    if not ok:
        # "an integer" only where the value is not one: "epochs must be >= 1, got 0"
        kind = "a finite number " if not integer else "" if is_int else "an integer "
        bound = (
            f"in [{low:g}, {below:.10g})"
            if below is not None
            else f"{'>' if strict else '>='} {low:g}"
        )
        raise ConfigError(f"{what} must be {kind}{bound}, got {value!r}")


class _Plain:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ModelConfig(_Plain):
    """Which network: architecture, quantization and input/output shape.

    ``quant`` is ``QuantSpec.to_dict()`` (plain data); ``spec`` rebuilds the ``QuantSpec``.
    """

    name: str
    quant: dict[str, Any]
    num_classes: int
    in_channels: int
    image_size: int
    # What may build a user-defined architecture ("package.module:factory"): that name when the
    # caller gave it, the factory itself, or a model object. Never stored: a config read from a
    # file has none, so rebuilding it imports nothing the caller did not name
    # (``autoprune.models.build_model``).
    source: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def for_data(cls, name: str, spec: QuantSpec | int, data: DataSplits) -> ModelConfig:
        """``name`` quantized as ``spec``, shaped for ``data``; the caller named the model.

        ``spec`` is a ``QuantSpec`` (see ``QuantSpec.from_options``); an int is the shorthand
        ``QuantSpec.from_bits(spec)``.
        """
        if not isinstance(spec, QuantSpec):
            spec = QuantSpec.from_bits(spec)
        return cls(
            name=name,
            quant=spec.to_dict(),
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            image_size=data.image_size,
            source=name,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        return json.loads(json.dumps(data))  # a deep copy of plain data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return super().from_dict({k: v for k, v in data.items() if k != "source"})

    @property
    def spec(self) -> QuantSpec:
        return QuantSpec.from_dict(self.quant)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)


@dataclass(frozen=True)
class DataConfig(_Plain):
    """Which data, and how the validation split is carved from the training set."""

    name: str = "digits"
    val_fraction: float = 0.1
    seed: int = 0
    max_train: int | None = None  # cap on training images (quick runs and tests)
    # a digest of an image folder's content (ImageFolderData.identity): two different folders
    # used as `imagefolder` must not share a cached baseline or a study
    content: str | None = None
    # the training augmentation (autoprune.data.AUGMENTATIONS); None: an in-memory dataset's
    # default, left out of to_dict so the keys of existing caches and studies do not change
    augment: str | None = None

    def __post_init__(self) -> None:
        require_number("data val_fraction", self.val_fraction, low=0.0, below=1.0)
        require_number("data seed", self.seed, low=0, below=SEED_LIMIT, integer=True)
        if self.max_train is not None:
            require_number("data max_train", self.max_train, low=1, integer=True)

    @classmethod
    def of(cls, data: Any, name: str, **fields: Any) -> DataConfig:
        """The config of loaded ``data``, with its content digest where it has one, and the
        augmentation it uses unless that is an in-memory dataset's default (``light``)."""
        content = getattr(data, "identity", None)
        augment = getattr(data, "augmentation", None)
        if content is None and augment == "light":
            augment = None
        return cls(name, content=content, augment=augment, **fields)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("content", "augment"):  # None: keys of existing caches unchanged
            if data[name] is None:
                del data[name]
        return data


# TrainConfig fields added after the first release, with the defaults that reproduce the
# earlier behaviour. ``to_dict`` leaves them out while they hold these defaults, so the cache
# keys of existing baselines and the identity of existing studies do not change.
_LATER_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "schedule": "cosine",
    "warmup_epochs": 0.0,
    "amp": "auto",
}


@dataclass(frozen=True)
class TrainConfig(_Plain):
    """Baseline training (quantized nets train well with the default, Adam with cosine decay).

    - ``optimizer``: ``adam`` (L2 ``weight_decay``) or ``sgd`` (momentum 0.9, Nesterov).
    - ``schedule``, the learning rate at optimisation step ``t`` of ``T`` after a linear warmup
      of ``W = round(warmup_epochs * steps_per_epoch)`` steps (``lr * (t + 1) / W`` for
      ``t < W``), with progress ``p = (t - W) / (T - W)``:
      ``cosine``: ``lr * (1 + cos(pi * p)) / 2``; ``step``: ``lr * 0.1 ** n`` where ``n`` counts
      the milestones ``p >= 0.5`` and ``p >= 0.75`` passed (the CIFAR ResNet recipe).
    - ``amp``: mixed precision of the training steps: ``auto`` (on for CUDA, off on CPU),
      ``on`` (CUDA required) or ``off``. Evaluation always runs in float32.
    """

    epochs: int = 15
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 0.0
    seed: int = 0
    optimizer: str = "adam"
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    amp: str = "auto"

    def __post_init__(self) -> None:
        # before any data is loaded or a model built: a NaN or negative rate fails at once
        require_number("train epochs", self.epochs, low=1, integer=True)
        require_number("train batch_size", self.batch_size, low=1, integer=True)
        # lr 0 is allowed: it keeps a --pretrained start's weights (e.g. to evaluate them)
        require_number("train lr", self.lr, low=0.0)
        require_number("train weight_decay", self.weight_decay, low=0.0)
        require_number("train seed", self.seed, low=0, below=SEED_LIMIT, integer=True)
        require_number("train warmup_epochs", self.warmup_epochs, low=0.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name, default in _LATER_TRAIN_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data


def config_key(*configs: _Plain) -> str:
    """A short stable hash of configs, for cache file names."""
    payload = json.dumps([c.to_dict() for c in configs], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
