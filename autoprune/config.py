"""The plain-data description of a run, saved next to its results and used as cache keys.

Every config is a frozen dataclass that round-trips through ``to_dict``/``from_dict`` (JSON
types only), so a checkpoint or an Optuna study records exactly what produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from autoprune.errors import ConfigError
from autoprune.quant import QuantSpec

if TYPE_CHECKING:
    from autoprune.data import DataSplits

C = TypeVar("C", bound="_Plain")

SEED_LIMIT = 2**32  # NumPy (Optuna's samplers) accepts seeds in [0, 2**32)
AMP_CHOICES = ("auto", "on", "off")  # mixed precision of training steps, see TrainConfig


def require_number(
    what: str,
    value: Any,
    *,
    low: float,
    strict: bool = False,
    below: float | None = None,
    high: float | None = None,
    integer: bool = False,
) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite number ``>= low`` (``> low`` if
    ``strict``), ``< below`` / ``<= high`` if given, and an integer if ``integer``; ``what``
    names it in the message, e.g. "finetune lr must be a finite number > 0, got nan"."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    # an int is finite however large (math.isfinite overflows on 10**400)
    ok = (is_int if integer else is_number) and (is_int or math.isfinite(value))
    ok = ok and (value > low if strict else value >= low)
    ok = ok and (below is None or value < below) and (high is None or value <= high)
    if not ok:
        # "an integer" only where the value is not one: "epochs must be >= 1, got 0"
        kind = "a finite number " if not integer else "" if is_int else "an integer "
        opening = "(" if strict else "["
        if below is not None:
            bound = f"in {opening}{low:g}, {below:.10g})"
        elif high is not None:
            bound = f"in {opening}{low:g}, {high:.10g}]"
        else:
            bound = f"{'>' if strict else '>='} {low:g}"
        raise ConfigError(f"{what} must be {kind}{bound}, got {value!r}")


class _Plain:
    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults included (JSON types only)."""
        return asdict(self)  # type: ignore[call-overload]

    def key_dict(self) -> dict[str, Any]:
        """What ``config_key`` hashes; ``to_dict`` unless a config keeps an older key form."""
        return self.to_dict()

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
    # default
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

    def key_dict(self) -> dict[str, Any]:
        # The cache key leaves out the fields added later while they are None: keying on the
        # full form would orphan (and retrain) every baseline cached before they existed.
        data = asdict(self)
        for name in ("content", "augment"):
            if data[name] is None:
                del data[name]
        return data


# TrainConfig fields added after the first release, with the values that reproduce the earlier
# behaviour: what a stored config without them means. ``key_dict`` leaves them out while they
# hold these values, so the cache keys of existing baselines do not change.
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
        # lr 0 is allowed: it keeps a pretrained start's weights (e.g. to evaluate them)
        require_number("train lr", self.lr, low=0.0)
        require_number("train weight_decay", self.weight_decay, low=0.0)
        require_number("train seed", self.seed, low=0, below=SEED_LIMIT, integer=True)
        require_number("train warmup_epochs", self.warmup_epochs, low=0.0)
        # optimizer and schedule names are checked against their registries (in
        # autoprune.train, which imports this module) by train.check_train_config
        if self.amp not in AMP_CHOICES:
            raise ConfigError(
                f"train amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}"
            )

    @classmethod
    def recommended(cls, dataset: str | None, **given: Any) -> TrainConfig:
        """The baseline recipe for ``dataset``: these defaults, changed where
        ``DATASET_TRAINING`` has a recipe measured for it, then by every ``given`` field that
        is not None (what a user asked for wins). A recipe's warmup is a share of its length:
        other ``epochs`` without a ``warmup_epochs`` keep that share."""
        recipe = dict(DATASET_TRAINING.get((dataset or "").lower(), {}))
        asked = {name: value for name, value in given.items() if value is not None}
        if "epochs" in asked and "warmup_epochs" in recipe and "warmup_epochs" not in asked:
            share = recipe["warmup_epochs"] / recipe.get("epochs", cls.epochs)
            recipe["warmup_epochs"] = share * asked["epochs"]
        return cls(**{**recipe, **asked})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A stored config without the later fields means their earlier behaviour."""
        return super().from_dict({**_LATER_TRAIN_DEFAULTS, **data})

    def key_dict(self) -> dict[str, Any]:
        # the form cached baselines are keyed on (see _LATER_TRAIN_DEFAULTS)
        data = asdict(self)
        for name, default in _LATER_TRAIN_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data


# Baseline recipes measured for datasets the defaults fit badly. digits has 10 training steps
# per epoch: 15 epochs at 5e-3 (150 steps) left ResNet-18 W2A2 at 84.6 % validation accuracy,
# 60 epochs at 2e-3 after a 2-epoch warmup reach 97.2 % (94-98 % over the last ten epochs;
# 143 images; benchmarks/README.md).
DATASET_TRAINING: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 60, "lr": 2e-3, "warmup_epochs": 2.0},
}


def config_key(*configs: _Plain) -> str:
    """A short stable hash of configs, for cache file names."""
    payload = json.dumps([c.key_dict() for c in configs], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FinetuneConfig(_Plain):
    """How each candidate is recovered before it is scored: a short fixed budget.

    - ``bn_batches``: training batches on which every BatchNorm's statistics are re-estimated
      right after pruning (0: off), see ``autoprune.train.recalibrate_batchnorm``.
    - ``steps`` Adam steps at peak ``lr``, reached after a linear warmup over ``warmup`` (a
      fraction of the steps), then cosine decay to 0.
    - ``distill``: weight of knowledge distillation from the unpruned network at
      ``temperature`` (0: plain cross-entropy), see ``autoprune.train.Distillation``.

    ``autoprune.search.objective.recover`` applies it. The defaults (since 2026-11-30) are the
    export recipe cut to 40 steps: BatchNorm re-estimated, a short warmup, distilled from the
    parent. Plain cross-entropy from a fresh Adam (the defaults before) cost a converged digits
    ResNet-18 4.2 points of its 97.2 % validation accuracy (this recipe: 0.7); on
    Fashion-MNIST the same without the warmup ranked 19 candidates closer to their exports
    (Kendall tau 0.59 against 0.48, overlapping intervals) for 40 % more time per trial
    (benchmarks/README.md).
    """

    steps: int = 40
    lr: float = 1e-3
    batch_size: int = 128
    warmup: float = 0.05
    distill: float = 1.0
    temperature: float = 4.0
    bn_batches: int = 8

    def __post_init__(self) -> None:
        require_number("finetune steps", self.steps, low=0, integer=True)
        require_number("finetune lr", self.lr, low=0.0, strict=True)
        require_number("finetune batch_size", self.batch_size, low=1, integer=True)
        require_number("finetune warmup", self.warmup, low=0.0, below=1.0)
        require_number("finetune distill", self.distill, low=0.0, high=1.0)
        require_number("finetune temperature", self.temperature, low=0.0, strict=True)
        require_number("finetune bn_batches", self.bn_batches, low=0, integer=True)


# What a study stored before its fine-tuning had these fields used: a legacy config without
# them means this recipe, whatever the defaults above become.
_LEGACY_FINETUNE: dict[str, Any] = {
    "warmup": 0.0,
    "distill": 0.0,
    "temperature": 4.0,
    "bn_batches": 0,
}


@dataclass(frozen=True)
class LayerwiseConfig(_Plain):
    """The layer-wise schedule; defaults follow the paper, budgets are in optimiser steps."""

    evaluations: int = 13  # per group: probes, then random, then guided points
    probes: int = 3  # fixed at the low end, middle and high end of the group's range
    alpha: float = 1.0  # paper: 1 on CIFAR; 5 (XNOR) to 7 (DoReFa) on ImageNet
    retrain_threshold: float = 0.05  # retrain after a group pruned at least this much
    retrain_steps: int = 200  # the paper retrains 5 epochs; steps keep small datasets cheap
    final_steps: int = 400
    lr: float = 1e-3
    batch_size: int = 128

    def __post_init__(self) -> None:
        require_number("layerwise evaluations", self.evaluations, low=1, integer=True)
        require_number("layerwise probes", self.probes, low=1, integer=True)
        if self.probes > self.evaluations:
            raise ConfigError(
                f"layerwise probes ({self.probes}) exceed the evaluations per group "
                f"({self.evaluations}): give at least as many evaluations as probes"
            )
        require_number("layerwise alpha", self.alpha, low=0.0)
        require_number("layerwise retrain_threshold", self.retrain_threshold, low=0.0, below=1.0)
        require_number("layerwise retrain_steps", self.retrain_steps, low=0, integer=True)
        require_number("layerwise final_steps", self.final_steps, low=0, integer=True)
        require_number("layerwise lr", self.lr, low=0.0, strict=True)
        require_number("layerwise batch_size", self.batch_size, low=1, integer=True)

    @property
    def random_points(self) -> int:
        """Half the non-probe budget is random start-up points, as in the paper (5 of 10)."""
        return (self.evaluations - self.probes) // 2


@dataclass(frozen=True)
class CalibrationConfig(_Plain):
    """The training batches a data-driven criterion (``taylor``) scores channels on:
    ``batches`` batches of ``batch_size``, shuffled and augmented with ``seed``
    (``autoprune.data.calibration_batches`` draws them)."""

    batches: int = 4  # a few: taylor's scores converge fast
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        require_number("calibration batches", self.batches, low=1, integer=True)
        require_number("calibration batch_size", self.batch_size, low=1, integer=True)
        require_number("calibration seed", self.seed, low=0, below=SEED_LIMIT, integer=True)


@dataclass(frozen=True)
class HalvingConfig(_Plain):
    """Successive halving of a budget search's candidates (multi-fidelity, asynchronous:
    Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020).

    Each candidate is scored at every rung, after ``rungs`` fine-tuning steps (0: right after
    pruning and the BatchNorm re-estimate), on ``subset`` validation images (a fixed,
    class-balanced subset, ``autoprune.data.validation_subset``). It stops there unless it
    ranks in the best ``1 / reduction`` of all candidates scored at that rung so far; a rung
    stops nothing before ``min_trials`` candidates reached it, and reference points never
    stop. A stopped trial is PRUNED: it counts towards the trials and is no front member; the
    fine-tuning of those that go on is exactly that of a search without halving.
    """

    rungs: tuple[int, ...] = (10,)
    reduction: int = 3
    min_trials: int = 4
    subset: int = 2000

    def __post_init__(self) -> None:
        rungs = tuple(self.rungs)
        if not rungs:
            raise ConfigError("halving needs at least one rung (fine-tuning steps, e.g. 10)")
        for rung in rungs:
            require_number("halving rung", rung, low=0, integer=True)
        if list(rungs) != sorted(set(rungs)):
            raise ConfigError(f"halving rungs must increase, got {list(rungs)}")
        object.__setattr__(self, "rungs", rungs)
        require_number("halving reduction", self.reduction, low=2, integer=True)
        require_number("halving min_trials", self.min_trials, low=2, integer=True)
        require_number("halving subset", self.subset, low=1, integer=True)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rungs": list(self.rungs)}

    @classmethod
    def parse(cls, text: str) -> HalvingConfig:
        """``"10"`` or ``"0,10,20"``: the rungs, every other field at its default."""
        try:
            rungs = tuple(int(part) for part in text.replace(" ", "").split(","))
        except ValueError:
            raise ConfigError(
                f"`halving` {text!r}: give the rungs as fine-tuning steps, e.g. '10' or '0,10,20'"
            ) from None
        return cls(rungs=rungs)


def check_halving(
    halving: HalvingConfig | None, *, budget: bool, method: str, steps: int | None = None
) -> None:
    """``ConfigError`` unless ``halving`` fits the search: one objective (a budget search of
    the joint method), and every rung before the last of a trial's ``steps``."""
    if halving is None:
        return
    if not budget or method != "joint":
        raise ConfigError(
            "successive halving ranks candidates on one objective: it needs a budget search "
            "(`target_size` or `target_bops`) of the joint method, or drop `halving`"
        )
    if steps is not None and halving.rungs[-1] >= steps:
        raise ConfigError(
            f"halving rung {halving.rungs[-1]} is not below the {steps} fine-tuning steps of "
            "a trial: choose rungs below them or fine-tune longer"
        )


@dataclass(frozen=True)
class BaselineConfig(_Plain):
    """The unpruned network a search starts from, by digest where it is not autoprune's own:

    - ``checkpoint``: read from a checkpoint file with this content digest;
    - ``module``: a caller's network with this weights digest, trained further with ``train``
      or (None) used as it is;
    - else ``train``: an autoprune model trained from scratch with it.

    Only configs stored before version 1 may name none (the study did not record it).
    """

    train: TrainConfig | None = None
    checkpoint: str | None = None
    module: str | None = None

    def __post_init__(self) -> None:
        if self.checkpoint is not None and (self.train is not None or self.module is not None):
            raise ConfigError(
                "a baseline read from a checkpoint is used as it is: give no train or module"
            )

    def to_dict(self) -> dict[str, Any]:
        train = None if self.train is None else self.train.to_dict()
        return {"train": train, "checkpoint": self.checkpoint, "module": self.module}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineConfig:
        train = data.get("train")
        return cls(
            train=None if train is None else TrainConfig.from_dict(train),
            checkpoint=data.get("checkpoint"),
            module=data.get("module"),
        )


SEARCH_METHODS = ("joint", "layerwise")  # all ratios at once; the paper's greedy method
# The second objective of a two-objective search: quantized size (MB) or BOPs (billions).
SEARCH_COSTS = ("size", "bops")


def _plain_copy(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data))  # tuples become lists, as after a JSON round trip


def check_search_bits(bits: Any, *, method: str) -> None:
    """``ConfigError`` unless searched bit-widths (see ``SearchConfig``) fit the kind of
    search; the widths themselves are checked against the network
    (``autoprune.quant.check_bit_choices``)."""
    if bits is None:
        return
    if method == "layerwise":
        raise ConfigError(
            "`search_bits` applies to the joint search only (the layerwise method prunes at "
            "the network's own widths): drop `search_bits` or use `method='joint'`"
        )
    if isinstance(bits, str) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in bits
    ):
        raise ConfigError(f"searched bit-widths must be whole numbers such as 2,4,8, got {bits!r}")


def check_search_cost(cost: str, *, budget: bool, method: str) -> None:
    """``ConfigError`` unless ``cost`` (see ``SearchConfig``) fits the kind of search."""
    if cost not in SEARCH_COSTS:
        raise ConfigError(f"unknown search cost {cost!r}: use one of {', '.join(SEARCH_COSTS)}")
    if cost != "size" and (budget or method == "layerwise"):
        raise ConfigError(
            f"`cost` {cost!r} applies to the two-objective joint search only (a budget sets "
            "its own measure; the layerwise method trades accuracy for size): drop `cost`"
        )


@dataclass(frozen=True)
class SearchConfig(_Plain):
    """How the ratios are searched.

    - ``sampler``: the name in ``autoprune.search.SAMPLERS``; None only in configs stored
      before version 1, which did not record it.
    - ``space``: ``SearchSpace.to_dict()``, with ``residual`` always present.
    - ``layerwise``: the schedule of the ``layerwise`` method (None for ``joint``).
    - ``calibration``: the batches a data-driven criterion scores on (None for a data-free one).
    - ``budget``: ``Budget.to_dict()`` of a budget search (one objective, every trial within
      the budget, see ``autoprune.search.budget``); None: two objectives, accuracy and size.
    - ``warm_start``: ``"sensitivity"``: start-up trials derived from a per-group sensitivity
      scan (``autoprune.search.sensitivity``) are queued first; None: random start-up trials.
    - ``sampler_options``: the sampler's keyword options (``autoprune.search.samplers``).
    - ``cost``: the second objective of a two-objective search, ``"size"`` (quantized MB) or
      ``"bops"`` (billions of bit operations); a budget search has one objective and keeps
      ``"size"``. Configs stored before it existed read as ``"size"``.
    - ``halving``: successive halving of a budget search's candidates (``HalvingConfig``);
      None (and configs stored before it existed): every candidate is fine-tuned in full.
    - ``search_bits``: the widths every inner DoReFa layer may take, searched with the ratios
      (``autoprune.quant.mixed``), ascending; None (and configs stored before it existed):
      every layer keeps the network's own.
    """

    criterion: str = "angle-next"
    seed: int = 0
    sampler: str | None = "gp"
    method: str = "joint"
    space: dict[str, Any] = field(default_factory=dict)
    layerwise: LayerwiseConfig | None = None
    calibration: CalibrationConfig | None = None
    budget: dict[str, Any] | None = None
    warm_start: str | None = None
    sampler_options: dict[str, Any] = field(default_factory=dict)
    cost: str = "size"
    halving: HalvingConfig | None = None
    search_bits: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        require_number("search seed", self.seed, low=0, below=SEED_LIMIT, integer=True)
        check_search_bits(self.search_bits, method=self.method)
        if self.search_bits is not None:  # a stored list reads back equal to the tuple
            object.__setattr__(self, "search_bits", tuple(sorted(set(self.search_bits))))
        check_search_cost(self.cost, budget=self.budget is not None, method=self.method)
        check_halving(self.halving, budget=self.budget is not None, method=self.method)
        if self.method not in SEARCH_METHODS:
            raise ConfigError(
                f"unknown search method {self.method!r}: use one of {', '.join(SEARCH_METHODS)}"
            )
        if self.method == "layerwise" and self.layerwise is None:
            object.__setattr__(self, "layerwise", LayerwiseConfig())
        if self.method != "layerwise" and self.layerwise is not None:
            raise ConfigError(
                f"a layerwise schedule was given for the {self.method} method: "
                "choose method 'layerwise' or leave the schedule out"
            )
        object.__setattr__(self, "space", {"residual": False, **_plain_copy(self.space)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "seed": self.seed,
            "sampler": self.sampler,
            "method": self.method,
            "space": _plain_copy(self.space),
            "layerwise": None if self.layerwise is None else self.layerwise.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "budget": None if self.budget is None else dict(self.budget),
            "warm_start": self.warm_start,
            "sampler_options": _plain_copy(self.sampler_options),
            "cost": self.cost,
            "halving": None if self.halving is None else self.halving.to_dict(),
            "search_bits": None if self.search_bits is None else list(self.search_bits),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        nested = ("layerwise", "calibration", "halving")
        layerwise, calibration, halving = (data.get(name) for name in nested)
        plain = {k: v for k, v in data.items() if k not in nested}
        return replace(
            super().from_dict(plain),
            layerwise=None if layerwise is None else LayerwiseConfig.from_dict(layerwise),
            calibration=None if calibration is None else CalibrationConfig.from_dict(calibration),
            halving=None if halving is None else HalvingConfig.from_dict(halving),
        )


# The export recipe (``autoprune export``, ``SearchResult.export``): longer than a trial's
# fine-tune, distilled from the unpruned parent, BatchNorm re-estimated first. Its peak rate
# was 3e-4 until benchmarks/search_quality.py (--export-lr) measured 1e-3 on the W2A2
# ResNet-20 (Fashion-MNIST, 10,000 test images, one seed): pruned to 30 % of the quantized
# size, uniform 83.29 -> 86.37 % and greedy 84.28 -> 86.66 %; the unpruned parent 89.36 ->
# 89.21 % (noise). A pruned network must relearn, not only settle.
EXPORT_FINETUNE = FinetuneConfig(
    steps=400, lr=1e-3, warmup=0.05, bn_batches=16, distill=1.0, temperature=4.0
)


CONFIG_VERSION = 1  # of RunConfig.to_dict; a reader refuses newer ones, upgrades older ones


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a search run and makes its trials comparable: the study's
    identity, stored with every default explicitly (``to_dict``) and read back, from this or an
    older version, with ``from_dict``.

    ``finetune`` is how each candidate of the ``joint`` method is recovered; the ``layerwise``
    method retrains on its own schedule (``search.layerwise``) and has none.
    """

    model: ModelConfig
    data: DataConfig
    baseline: BaselineConfig
    finetune: FinetuneConfig | None
    search: SearchConfig

    def __post_init__(self) -> None:
        layerwise = self.search.method == "layerwise"
        if layerwise and self.finetune is not None:
            raise ConfigError(
                "the layerwise method retrains on its own schedule: leave finetune out "
                "(its retrain steps are set in the layerwise schedule)"
            )
        if not layerwise and self.finetune is None:
            object.__setattr__(self, "finetune", FinetuneConfig())
        check_halving(
            self.search.halving,
            budget=self.search.budget is not None,
            method=self.search.method,
            steps=None if self.finetune is None else self.finetune.steps,
        )
        # every quantization field explicit, also for a spec stored before it existed
        quant = QuantSpec.from_dict(self.model.quant).to_dict()
        object.__setattr__(self, "model", replace(self.model, quant=quant))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CONFIG_VERSION,
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "baseline": self.baseline.to_dict(),
            "finetune": None if self.finetune is None else self.finetune.to_dict(),
            "search": self.search.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, *, what: str = "run config") -> RunConfig:
        """Read a config ``to_dict`` wrote, in this version or an older one (a study's config
        from before versions existed included); ``ConfigError`` on a newer or malformed one.
        ``what`` names it in messages ("study config")."""
        if not isinstance(data, dict):
            raise ConfigError(f"{what} is not a mapping: it was not written by autoprune")
        version = data.get("version")
        if version is not None and (
            not isinstance(version, int) or isinstance(version, bool) or version < 1
        ):
            raise ConfigError(f"{what} has an unreadable version {version!r}: it is damaged")
        if version is not None and version > CONFIG_VERSION:
            raise ConfigError(
                f"{what} version {version} is newer than this autoprune reads "
                f"({CONFIG_VERSION}): upgrade autoprune"
            )
        try:
            if version is None:
                return cls._from_unversioned(data)
            finetune = data.get("finetune")
            return cls(
                model=ModelConfig.from_dict(data["model"]),
                data=DataConfig.from_dict(data["data"]),
                baseline=BaselineConfig.from_dict(data["baseline"]),
                finetune=None if finetune is None else FinetuneConfig.from_dict(finetune),
                search=SearchConfig.from_dict(data["search"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ConfigError(
                f"{what} is malformed ({type(error).__name__}: {error}): it was not written by "
                "this autoprune"
            ) from None

    @classmethod
    def _from_unversioned(cls, data: dict[str, Any]) -> RunConfig:
        """The flat dict studies stored before version 1, with the then-defaults filled in."""
        method = data.get("method", "joint")
        layerwise = LayerwiseConfig.from_dict(data.get("layerwise") or {})
        finetune = (
            None
            if method == "layerwise"
            else FinetuneConfig.from_dict({**_LEGACY_FINETUNE, **(data.get("finetune") or {})})
        )
        criterion = data.get("criterion", SearchConfig.criterion)
        calibration = None
        if _needs_data(criterion):
            # then: four batches of the fine-tuning (or retraining) batch size, seed 0
            batch_size = layerwise.batch_size if finetune is None else finetune.batch_size
            calibration = CalibrationConfig(batches=4, batch_size=batch_size, seed=0)
        return cls(
            model=ModelConfig.from_dict(data["model"]),
            data=DataConfig.from_dict(data["data"]),
            baseline=BaselineConfig.from_dict(data.get("baseline") or {}),
            finetune=finetune,
            search=SearchConfig(
                criterion=criterion,
                seed=data.get("seed", 0),
                sampler=None,  # not recorded then
                method=method,
                space=data.get("space") or {},
                layerwise=layerwise if method == "layerwise" else None,
                calibration=calibration,
            ),
        )


def _needs_data(criterion: str) -> bool:
    """Whether ``criterion`` scores channels on calibration batches (an unknown name: no)."""
    from autoprune.prune import CRITERIA  # only to upgrade a legacy config: a heavy import

    try:
        return CRITERIA.get(criterion).needs_data
    except ConfigError:
        return False
