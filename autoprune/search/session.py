"""Everything ``autoprune search`` does, as a library call: prepare, then run trials.

``SearchSession(request)`` prepares a search in readable steps (``_check_request``,
``_load_data``, ``_describe_model``, ``_open_study``, ``_obtain_baseline``,
``_record_reference``, ``_prepare_trials``): the data, the model description, the search
space and the study are all known before any training, so a mismatching study is refused
before minutes of work; ``run()`` then adds trials.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from autoprune.checkpoint import file_digest, read_checkpoint, save_checkpoint
from autoprune.config import (
    EXPORT_FINETUNE,
    SEARCH_METHODS,
    BaselineConfig,
    CalibrationConfig,
    DataConfig,
    HalvingConfig,
    ModelConfig,
    RunConfig,
    SearchConfig,
    TrainConfig,
    check_halving,
    check_search_bits,
    check_search_cost,
    config_key,
)
from autoprune.data import DataSplits, ImageData, load_dataset
from autoprune.data.base import default_cache_dir
from autoprune.device import resolve_device
from autoprune.errors import CheckpointError, ConfigError
from autoprune.metrics import measure
from autoprune.models import build_model, load_checkpoint
from autoprune.models.external import is_external
from autoprune.preprocess import preprocess_of
from autoprune.prune import CRITERIA
from autoprune.quant import (
    QuantConv2d,
    QuantLinear,
    QuantSpec,
    check_bit_choices,
    parse_edge_bits,
)
from autoprune.search.budget import Budget, BudgetAllocator, CostModel
from autoprune.search.confirm import (
    DEFAULT_TOP,
    Confirmation,
    confirm,
    confirm_steps,
    default_seeds,
    fresh_seed,
    remember_promoted,
)
from autoprune.search.export import DATA_DIR_ATTR
from autoprune.search.halving import RungPruner
from autoprune.search.layerwise import LayerwiseConfig, LayerwiseResult, LayerwiseSearch
from autoprune.search.objective import CandidateEvaluator, FinetuneConfig
from autoprune.search.record import trial_ratios
from autoprune.search.samplers import DistinctSampler, check_sampler_options
from autoprune.search.sensitivity import (
    Sensitivity,
    budget_warm_start_shapes,
    front_warm_start_points,
    scan_sensitivity,
)
from autoprune.search.space import load_search_space
from autoprune.search.storage import open_storage, storage_file, storage_liveness
from autoprune.search.study import (
    BASELINE_PATH_ATTR,
    REFERENCE_ATTR,
    SENSITIVITY_ATTR,
    Reference,
    SearchObserver,
    enqueue_budget_reference,
    enqueue_labelled,
    enqueue_reference_trials,
    make_evaluation,
    open_study,
)
from autoprune.search.worker import StopControl, Worker, fail_dead_trials
from autoprune.train import Progress, check_train_config, evaluate, obtain_baseline
from autoprune.train.baseline import baseline_path

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "resnet18"
DEFAULT_BITS = 2
WARM_STARTS = (None, "sensitivity")

Storage = str | optuna.storages.BaseStorage | None
"""Where a study lives: a path or URL (``autoprune.search.storage.open_storage``), an Optuna
storage object, or None for an in-memory study that ends with the process."""


@dataclass(frozen=True)
class SearchRequest:
    """What to search, in the library's terms.

    - ``model``: a registered model name, ``"package.module:factory"``, or an ``nn.Module``
      (float: quantized as ``quant`` says, on a copy; or quantized already, then ``quant``
      must say how). None: the checkpoint's model, else ``DEFAULT_MODEL``.
    - ``quant``: a ``QuantSpec`` (``QuantSpec.from_options``); None: the checkpoint's, else
      ``QuantSpec.from_bits(DEFAULT_BITS)``. With a checkpoint, a given spec must match it.
    - ``dataset``: a registered dataset name or loaded data (``DataSplits``, any
      ``ImageData``); None: the checkpoint's dataset, else digits. ``data_dir``,
      ``image_size``, ``augment`` None: the checkpoint's, else the dataset's defaults.
    - ``train``: how the baseline is trained (and cached) from the model's initial weights;
      None uses an ``nn.Module`` or checkpoint as it is, untrained.
    - ``storage``: see ``Storage``.
    - ``target_size``/``target_bops``: a budget search (at most one of them).
    """

    model: str | nn.Module | None = None
    quant: QuantSpec | None = None
    dataset: str | ImageData | None = None
    data_dir: str | None = None
    workers: int | None = None  # data-loader processes of streaming datasets (None: default)
    image_size: int | None = None  # image side of streaming datasets (None: the dataset's)
    augment: str | None = None  # training augmentation (autoprune.data.AUGMENTATIONS)
    trials: int = 16
    sampler: str = "gp"
    # keyword options of the sampler (see autoprune.search.samplers.sampler_options)
    sampler_options: dict[str, Any] = field(default_factory=dict)
    criterion: str = "angle-next"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig | None = field(default_factory=TrainConfig)
    storage: Storage = None
    study_name: str | None = None
    checkpoint: str | None = None
    search_space: str | None = None
    device: str = "auto"
    seed: int = 0
    val_fraction: float = 0.1
    max_train: int | None = None
    method: str = "joint"  # "joint": all ratios at once; "layerwise": the paper's greedy method
    layerwise: LayerwiseConfig = field(default_factory=LayerwiseConfig)
    # A budget search: one objective (validation accuracy), every trial's network at most this
    # quantized size ("50%" of the unpruned network, or megabytes) or these BOPs ("40%", or
    # operations); see autoprune.search.budget. None: two objectives, accuracy and size.
    target_size: str | float | None = None
    target_bops: str | float | None = None
    # "sensitivity": informed start-up trials from a scan of each group pruned alone
    # (autoprune.search.sensitivity), queued before the sampler's own; None: random start-up
    warm_start: str | None = None
    # the second objective of a two-objective search: "size" (MB) or "bops" (GBOPs)
    cost: str = "size"
    # successive halving of a budget search's candidates (autoprune.config.HalvingConfig);
    # None: every candidate is fine-tuned in full
    halving: HalvingConfig | None = None
    # bit-widths every inner DoReFa layer may take (weights and input together), searched
    # with the ratios, e.g. (2, 4, 8); None: every layer keeps the network's own
    search_bits: tuple[int, ...] | None = None

    def quant_spec(self) -> QuantSpec:
        """The requested quantization with the default filled in (no checkpoint involved)."""
        return self.quant if self.quant is not None else QuantSpec.from_bits(DEFAULT_BITS)

    @property
    def dataset_name(self) -> str | None:
        """The dataset's name, whether it was named or handed over loaded."""
        if self.dataset is None or isinstance(self.dataset, str):
            return self.dataset
        return str(getattr(self.dataset, "name", "data"))


# the options ``QuantSpec.from_options`` takes, and how each reads off a built spec
def _held_options(spec: QuantSpec) -> dict[str, Any]:
    return {
        "bits": spec.wbits if spec.wbits == spec.abits else spec.label,
        "wbits": spec.wbits,
        "abits": spec.abits,
        "binary_weights": spec.weight_scheme,
        "edge_bits": spec.edge_bits,
    }


def checkpoint_quant(path: str | Path) -> QuantSpec:
    """The quantization the checkpoint at ``path`` was trained with."""
    payload = read_checkpoint(path)
    try:
        return ModelConfig.from_dict(payload["model"]).spec
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint {path} has an invalid model description ({error}): re-create it"
        ) from error


def quant_from_options(
    checkpoint: str | Path | None = None,
    *,
    bits: int | None = None,
    wbits: int | None = None,
    abits: int | None = None,
    binary_weights: str | None = None,
    edge_bits: int | str | None = None,
) -> QuantSpec | None:
    """The ``QuantSpec`` that quantization options ask for (see ``QuantSpec.from_options``).

    Without a checkpoint, unset options take their defaults (``bits`` ``DEFAULT_BITS``).
    With one, every option given must match what the checkpoint was trained with
    (``ConfigError`` naming the option otherwise) and the checkpoint's spec is returned;
    None when no option was given (the checkpoint decides).
    """
    given = {
        "bits": bits,
        "wbits": wbits,
        "abits": abits,
        "binary_weights": binary_weights,
        "edge_bits": None if edge_bits is None else parse_edge_bits(edge_bits),
    }
    if checkpoint is None:
        return QuantSpec.from_options(**{**given, "bits": DEFAULT_BITS if bits is None else bits})
    if all(value is None for value in given.values()):
        return None
    spec = checkpoint_quant(checkpoint)
    held = _held_options(spec)
    for key, value in given.items():
        if value is not None and value != held[key]:
            raise CheckpointError(
                f"checkpoint {checkpoint} holds `{key}={held[key]!r}` but `{key}={value!r}` "
                f"was requested: drop `{key}` or pass a matching checkpoint"
            )
    return spec


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created); waits for the holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


def _remove_if_empty(path: Path) -> None:
    """Delete a storage file (and its SQLite side files) that holds no trial of any study."""
    if not path.is_file():
        return
    storage: optuna.storages.BaseStorage | None = None
    try:
        storage = open_storage(str(path))
        summaries = optuna.get_all_study_summaries(storage)
    except Exception:  # unreadable: not ours to judge, leave it
        return
    finally:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.engine.dispose()  # no connection outlives the file
    if all(summary.n_trials == 0 for summary in summaries):
        for leftover in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)):
            leftover.unlink(missing_ok=True)


class _StorageClaim:
    """A shared lock on a storage file held while a session prepares on it.

    A command that fails must not leave a new, empty storage file behind, but workers started
    together on one new file must not lose it either: a session that failed removes the file
    only when it found none, the file holds no trial, and no other session is still preparing
    on it (none holds the lock)."""

    def __init__(self, storage: object) -> None:
        self.path = storage_file(storage) if isinstance(storage, str) else None
        self.found_none = self.path is not None and not self.path.exists()
        self.descriptor: int | None = None

    def hold(self) -> None:
        """Lock the file (created empty: an empty file is an empty SQLite database or
        journal) before the storage opens it."""
        if self.path is None or not self.path.parent.is_dir():
            return  # a server, or a folder that is missing: opening the storage says so
        while True:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
            fcntl.flock(descriptor, fcntl.LOCK_SH)
            try:
                current = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                current = False
            if current:
                self.descriptor = descriptor
                return
            os.close(descriptor)  # removed by a failing session meanwhile: lock the new one

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None

    def abandon(self) -> None:
        """After a failure: remove the file if this session's lock was the only one on it."""
        try:
            if self.found_none and self.descriptor is not None and self.path is not None:
                try:
                    fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another session is preparing on this file
                _remove_if_empty(self.path)
        finally:
            self.release()


def _with_data_defaults(request: SearchRequest) -> SearchRequest:
    """``request`` with the dataset, data folder, image size and augmentation it leaves open
    taken from its checkpoint's record (what the baseline was trained on), else digits."""
    if request.dataset is not None and not isinstance(request.dataset, str):
        return request  # loaded data: nothing to look up
    recorded: dict = {}
    if request.checkpoint and None in (request.dataset, request.data_dir, request.image_size):
        payload = read_checkpoint(request.checkpoint)
        metadata = payload.get("metadata") or {}
        data = metadata.get("data") if isinstance(metadata.get("data"), dict) else {}
        model = payload.get("model") if isinstance(payload.get("model"), dict) else {}
        if request.dataset is None or request.dataset == data.get("name"):
            # the folder and the size belong to the recorded dataset only
            recorded = {
                "dataset": data.get("name"),
                "data_dir": metadata.get("data_dir"),
                "image_size": model.get("image_size"),
                "augment": data.get("augment"),
            }
    chosen = {
        key: getattr(request, key) if getattr(request, key) is not None else recorded.get(key)
        for key in ("dataset", "data_dir", "image_size", "augment")
    }
    if chosen["dataset"] is None:
        chosen["dataset"] = "digits"
    if chosen["image_size"] is not None and not isinstance(chosen["image_size"], int):
        chosen["image_size"] = None
    return replace(request, **chosen)


def _tensors_digest(tensors: Iterator[torch.Tensor] | list[torch.Tensor]) -> str:
    """A digest of tensors' shapes and values: identifies a caller's model or data."""
    digest = hashlib.sha256()
    for tensor in tensors:
        value = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d tensors too
        digest.update(f"{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def _is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantConv2d | QuantLinear) for m in model.modules())


def _on_device(data: ImageData, device: torch.device) -> ImageData:
    """In-memory splits moved to ``device`` (a copy) when they live elsewhere."""
    if not isinstance(data, DataSplits) or data.train_x.device == device:
        return data
    moved = {
        f.name: getattr(data, f.name).to(device)
        for f in fields(data)
        if isinstance(getattr(data, f.name), torch.Tensor)
    }
    return replace(data, **moved)


def storage_label(storage: Storage) -> str:
    """How a storage is named in messages and keys: its path or URL, else its kind."""
    if storage is None:
        return "memory"
    if isinstance(storage, str):
        return storage
    url = getattr(storage, "url", None)  # RDBStorage
    return str(url) if url else type(storage).__name__


def open_search_storage(storage: Storage) -> optuna.storages.BaseStorage:
    """``storage`` opened: a path or URL by ``open_storage``, None as an in-memory storage."""
    if storage is None:
        return optuna.storages.InMemoryStorage()
    if isinstance(storage, str):
        return open_storage(storage)
    if not isinstance(storage, optuna.storages.BaseStorage):
        raise ConfigError(
            f"storage must be a path, a URL, an Optuna storage or None (in memory), got a "
            f"{type(storage).__name__}"
        )
    return storage


class SearchSession:
    """A prepared search: data, baseline, search space and study; ``run()`` adds trials.

    Attributes set by the steps: ``device``, ``data``, ``data_config``, ``model_config``,
    ``space``, ``study_name``, ``storage``, ``study``, ``created``, ``baseline``,
    ``baseline_path``, ``baseline_reused``, ``baseline_val_accuracy``, ``reference``,
    ``evaluator``.
    """

    def __init__(
        self, request: SearchRequest, *, baseline_progress: Progress | None = None
    ) -> None:
        self.request = request
        claim = _StorageClaim(request.storage)
        try:
            self._check_request()
            self._load_data()
            self._describe_model()
            claim.hold()
            self._open_study()
            self._obtain_baseline(baseline_progress)
            self._record_reference()
            self._prepare_trials()
        except BaseException:
            claim.abandon()
            raise
        claim.release()

    # -- the steps, in order ------------------------------------------------------------------

    def _check_request(self) -> None:
        """Unknown names fail before anything is loaded or the study is touched."""
        request = self.request
        if request.method not in SEARCH_METHODS:
            raise ConfigError(
                f"unknown search method {request.method!r}: use one of {', '.join(SEARCH_METHODS)}"
            )
        check_sampler_options(request.sampler, request.sampler_options)
        if request.train is not None:
            check_train_config(request.train)
        CRITERIA.get(request.criterion)
        if request.target_size is not None and request.target_bops is not None:
            raise ConfigError(
                "give `target_size` or `target_bops`, not both: a search has one budget"
            )
        if request.warm_start not in WARM_STARTS:
            raise ConfigError(
                f"unknown warm start {request.warm_start!r}: use sensitivity or leave it out"
            )
        check_search_cost(
            request.cost, budget=self.budget_target is not None, method=request.method
        )
        check_halving(
            request.halving,
            budget=self.budget_target is not None,
            method=request.method,
            steps=request.finetune.steps,
        )
        check_search_bits(request.search_bits, method=request.method)
        if request.method == "layerwise" and request.warm_start is not None:
            raise ConfigError(
                "the layerwise method has no warm start: drop `warm_start` or use `method='joint'`"
            )
        if request.method == "layerwise" and self.budget_target is not None:
            raise ConfigError(
                "the layerwise method has no budget: drop `target_size`/`target_bops` or use "
                "`method='joint'`"
            )
        if (
            request.train is None
            and request.checkpoint is None
            and (request.model is None or isinstance(request.model, str))
        ):
            raise ConfigError(
                "train is None but the model is a name: a named model needs a baseline "
                "training config (train), or pass a checkpoint or a trained nn.Module"
            )
        self.request = _with_data_defaults(request)
        self.device = resolve_device(self.request.device)

    def _load_data(self) -> None:
        """The dataset by name (``load_dataset``), or the caller's loaded data."""
        request = self.request
        if isinstance(request.dataset, str):
            self.data = load_dataset(
                request.dataset,
                data_dir=request.data_dir,
                val_fraction=request.val_fraction,
                seed=request.seed,
                device=self.device,
                max_train=request.max_train,
                workers=request.workers,
                image_size=request.image_size,
                augment=request.augment,
            )
            self.data_config = DataConfig.of(
                self.data,
                request.dataset,
                val_fraction=request.val_fraction,
                seed=request.seed,
                max_train=request.max_train,
            )
            return
        if not isinstance(request.dataset, ImageData):
            raise ConfigError(
                f"dataset must be a dataset name or loaded data (DataSplits), got a "
                f"{type(request.dataset).__name__}"
            )
        self.data = _on_device(request.dataset, self.device)
        # identified by content: two different in-memory datasets never share a study
        content = getattr(self.data, "identity", None)
        if content is None and isinstance(self.data, DataSplits):
            content = _tensors_digest(
                [self.data.train_x, self.data.train_y, self.data.val_x, self.data.val_y]
            )
        augment = getattr(self.data, "augmentation", None)
        self.data_config = DataConfig(
            str(request.dataset_name),
            val_fraction=request.val_fraction,
            seed=request.seed,
            content=content,
            augment=None if augment == "light" else augment,
        )

    def _describe_model(self) -> None:
        """The model description, the search space and the study name; a checkpoint is read
        and checked against the request (its network becomes the baseline)."""
        request = self.request
        self._checkpoint_model: nn.Module | None = None
        self._baseline_file: Path | None = None
        if request.checkpoint:
            self.model_config, self._checkpoint_model, self.baseline_identity = (
                self._from_checkpoint(Path(request.checkpoint))
            )
            self._baseline_file = Path(request.checkpoint)
        elif isinstance(request.model, nn.Module):
            self.model_config, self.baseline_identity = self._from_module(request.model)
        else:
            self.model_config = ModelConfig.for_data(
                request.model or DEFAULT_MODEL, request.quant_spec(), self.data
            )
            assert request.train is not None  # _check_request
            self.baseline_identity = {"train": request.train.to_dict()}
        example = torch.zeros(1, *self.model_config.input_shape)
        architecture = build_model(self.model_config)
        self.space = load_search_space(
            self.model_config.name, architecture, example, request.search_space
        )
        if request.search_bits is not None:
            spec = self.model_config.spec
            check_bit_choices(tuple(request.search_bits), spec)
            self.space = self.space.with_bits(architecture, tuple(request.search_bits), spec.wbits)
        self.study_name = request.study_name or (
            f"{self.model_config.name}-{self.model_config.spec.label}-{request.dataset_name}"
        )
        self.allocator = self._budget_allocator(architecture)

    @property
    def budget_target(self) -> tuple[str, str | float] | None:
        """``(metric, target)`` of a budget search, else None."""
        if self.request.target_size is not None:
            return "size", self.request.target_size
        if self.request.target_bops is not None:
            return "bops", self.request.target_bops
        return None

    def _budget_allocator(self, architecture: nn.Module) -> BudgetAllocator | None:
        """A budget search's allocator: its exact cost model is fitted to the architecture,
        and a budget the space cannot reach is refused before any study or training."""
        if self.budget_target is None:
            return None
        metric, target = self.budget_target
        input_shape = self.model_config.input_shape
        spec = self.model_config.spec
        costs = CostModel.fit(
            architecture,  # fit copies it
            input_shape,
            self.space.names,
            bit_layers=() if self.space.bits is None else self.space.bits.layers,
            own_bits=(spec.wbits, spec.abits),
        )
        budget = Budget.parse(metric, target, unpruned=costs.unpruned[metric])
        return BudgetAllocator(self.space, costs, budget)

    def _open_study(self) -> None:
        """Open or resume the study whose stored config must equal this request's."""
        request = self.request
        layerwise = request.method == "layerwise"
        self.run_config = RunConfig(
            model=self.model_config,
            data=self.data_config,
            baseline=BaselineConfig.from_dict(self.baseline_identity),
            # no per-trial fine-tuning in the layer-wise method: its own schedule defines it
            finetune=None if layerwise else request.finetune,
            search=SearchConfig(
                criterion=request.criterion,
                seed=request.seed,
                sampler=request.sampler,
                method=request.method,
                space=self.space.to_dict(),
                layerwise=request.layerwise if layerwise else None,
                calibration=CalibrationConfig(seed=request.seed)
                if CRITERIA.get(request.criterion).needs_data
                else None,
                budget=None if self.allocator is None else self.allocator.budget.to_dict(),
                warm_start=request.warm_start,
                sampler_options=dict(request.sampler_options),
                cost=request.cost,
                halving=request.halving,
                search_bits=None if self.space.bits is None else self.space.bits.choices,
            ),
        )
        # Opened once the request is known to be valid, still before minutes of training.
        self.storage = open_search_storage(request.storage)
        self.study, self.created = open_study(self.storage, self.study_name, config=self.run_config)
        # Seeded per trial (seed + trial number): a resumed run, or a worker joining others,
        # draws new start-up points, and never one another trial holds.
        self.study.sampler = DistinctSampler(
            request.sampler,
            seed=request.seed,
            n_startup_trials=len(self.space.groups) // 2 + 6,
            options=request.sampler_options,
        )  # the layer-wise method makes one sampler per group instead
        if request.halving is not None:
            self.study.pruner = RungPruner(request.halving)

    def _obtain_baseline(self, progress: Progress | None) -> None:
        """The unpruned network: the checkpoint's or the module as given, else trained (or
        found in the cache) from the model's initial weights."""
        request = self.request
        if self._checkpoint_model is not None or request.train is None:
            model = self._checkpoint_model
            if model is None:  # an nn.Module used as it is
                model = build_model(self.model_config)
            self.baseline = model.to(self.device).eval()
            self.baseline_reused = True
            self.baseline_val_accuracy = evaluate(self.baseline, self.data, "val").accuracy
            self.baseline_path = self._baseline_file or self._save_module_baseline()
            return
        cache_dir = default_cache_dir()
        # Workers started together on one machine (or sharing the cache folder) train the
        # baseline once: the first holds the lock, the others then load its checkpoint.
        lock = baseline_path(cache_dir, self.model_config, self.data_config, request.train)
        with _file_lock(lock.with_suffix(".lock")):
            baseline = obtain_baseline(
                self.model_config,
                self.data_config,
                request.train,
                self.data,
                cache_dir=cache_dir,
                device=self.device,
                progress=progress,
            )
        self.baseline, self.baseline_path = baseline.model, baseline.path
        self.baseline_reused = baseline.reused
        self.baseline_val_accuracy = baseline.val_accuracy

    def _record_reference(self) -> None:
        """The study records its reference sizes, its baseline file and its data folder."""
        float_config = replace(self.model_config, quant=QuantSpec().to_dict())
        self.reference = Reference(
            quantized_size_bits=measure(self.baseline, self.model_config.input_shape).size_bits,
            float_size_bits=measure(
                build_model(float_config), self.model_config.input_shape
            ).size_bits,
            baseline_val_accuracy=self.baseline_val_accuracy,
            val_images=self.data.num_examples("val"),
        )
        self.study.set_user_attr(REFERENCE_ATTR, self.reference.to_dict())
        self.study.set_user_attr(BASELINE_PATH_ATTR, str(Path(self.baseline_path).resolve()))
        if getattr(self.data, "root", None) is not None:  # `export` finds the images again
            self.study.set_user_attr(DATA_DIR_ATTR, str(Path(self.data.root).resolve()))  # type: ignore[attr-defined]

    def _prepare_trials(self) -> None:
        """Reference trials queued (joint method) and the candidate evaluator."""
        if self.request.method == "joint":
            # a killed worker's trial (a reference point, say) is failed and queued again first
            fail_dead_trials(self.study, self.storage, storage_liveness(self.storage))
            if self.allocator is not None:
                enqueue_budget_reference(self.study, self.allocator, self.storage)
            else:
                enqueue_reference_trials(self.study, self.space, self.storage)
        self.evaluator = CandidateEvaluator(
            baseline=self.baseline,
            data=self.data,
            model_config=self.model_config,
            criterion=self.request.criterion,
            finetune_config=self.request.finetune,
            calibration_config=self.run_config.search.calibration or CalibrationConfig(),
            halving=self.request.halving,
        )
        if self.request.method == "joint" and self.request.warm_start == "sensitivity":
            self._enqueue_warm_start()

    def _enqueue_warm_start(self) -> None:
        """Queue the sensitivity scan's allocations; the scan is stored on the study, so a
        resumed run or another worker reuses it (it costs about one short fine-tune)."""
        stored = self.study.user_attrs.get(SENSITIVITY_ATTR)
        if stored is not None:
            table = Sensitivity.from_dict(stored)
        else:
            table = scan_sensitivity(
                self.baseline,
                self.data,
                self.space,
                criterion=self.request.criterion,
                input_shape=self.model_config.input_shape,
                calibration=self.evaluator.calibration(),
                seed=self.request.seed,
            )
            self.study.set_user_attr(SENSITIVITY_ATTR, table.to_dict())
        if self.allocator is not None:
            points = budget_warm_start_shapes(table, self.allocator)
            distributions = self.allocator.distributions()
        else:
            costs = CostModel.fit(
                build_model(self.model_config), self.model_config.input_shape, self.space.names
            )
            points = front_warm_start_points(table, self.space, costs, self.request.cost)
            distributions = self.space.distributions()
        if self.space.bits is not None:  # pruning-only points: every layer at its own width
            unchanged = self.space.bits.unchanged()
            points = [(label, {**unchanged, **params}) for label, params in points]
        for label, params in points:
            enqueue_labelled(self.study, self.storage, params, distributions, label)

    # -- helpers of the steps -----------------------------------------------------------------

    def _from_module(self, module: nn.Module) -> tuple[ModelConfig, dict]:
        """The description of a caller's network: named after its class and weights, so two
        different networks never share a cached baseline or a study."""
        request = self.request
        if _is_quantized(module) and request.quant is None:
            raise ConfigError(
                f"model {type(module).__name__} is quantized already: pass quant, the "
                "QuantSpec it was quantized with"
            )
        digest = _tensors_digest(list(module.state_dict().values()))
        kind = type(module)
        model_config = replace(
            ModelConfig.for_data(
                f"{kind.__module__}:{kind.__qualname__}@{digest[:8]}",
                request.quant_spec(),
                self.data,
            ),
            source=module,
        )
        trained = request.train.to_dict() if request.train is not None else None
        return model_config, {"module": digest, "train": trained}

    def _save_module_baseline(self) -> Path:
        """A caller's network used as it is, saved to the cache so that ``export_trial`` (and
        ``autoprune export`` with the network) can rebuild trials later."""
        config = self.model_config
        # named by everything that makes it differ: the same float weights quantized another
        # way, or measured on other data, is another baseline (and another study's)
        key = config_key(config, self.data_config)
        name = f"{config.name.replace(':', '-')}-{config.spec.label}-{key}.pt"
        path = default_cache_dir() / "baselines" / name
        metadata = {"data": self.data_config.to_dict(), "val_accuracy": self.baseline_val_accuracy}
        save_checkpoint(
            path, self.baseline, config, metadata=metadata, preprocess=preprocess_of(self.data)
        )
        return path

    def _from_checkpoint(self, path: Path) -> tuple[ModelConfig, nn.Module, dict]:
        # a user-defined architecture is rebuilt only when the request names it (or hands
        # over the network); a registered name given for another model is refused below
        named = self.request.model
        source = named if isinstance(named, nn.Module) or (named and is_external(named)) else None
        loaded = load_checkpoint(path, model=source)
        model_config = loaded.config
        if loaded.kept_channels:
            raise CheckpointError(
                f"checkpoint {path} is already pruned: search from the unpruned baseline checkpoint"
            )
        request = self.request
        if isinstance(named, str) and named != model_config.name:
            raise CheckpointError(
                f"checkpoint {path} holds model {model_config.name} but model {named} was "
                "requested: drop `model` or pass a matching checkpoint"
            )
        # the quantization asked for must be the checkpoint's, option by option
        if request.quant is not None and request.quant != model_config.spec:
            held, wanted = model_config.spec.to_dict(), request.quant.to_dict()
            key = next(k for k in held if held[k] != wanted[k])
            raise CheckpointError(
                f"checkpoint {path} holds {key} {held[key]} but {key} {wanted[key]} was "
                "requested: drop `quant` or pass a matching checkpoint"
            )
        shape = (self.data.num_classes, self.data.in_channels, self.data.image_size)
        if (model_config.num_classes, model_config.in_channels, model_config.image_size) != shape:
            raise CheckpointError(
                f"checkpoint {path} was made for {model_config.num_classes} classes of "
                f"{model_config.in_channels}x{model_config.image_size}px images, dataset "
                f"{request.dataset_name} has {shape[0]} classes of {shape[1]}x{shape[2]}px: "
                "pass the dataset it was trained on"
            )
        return model_config, loaded.model, {"checkpoint": file_digest(path)}

    # -- running ------------------------------------------------------------------------------

    def run_layerwise(self, observer: SearchObserver | None = None) -> LayerwiseResult:
        """Run or resume the paper's layer-wise method; its result is a trial of the study."""
        return LayerwiseSearch(
            parent=self.study,
            storage=self.storage,
            space=self.space,
            baseline=self.baseline,
            data=self.data,
            model_config=self.model_config,
            criterion=self.request.criterion,
            config=self.request.layerwise,
            sampler=self.request.sampler,
            seed=self.request.seed,
            state_dir=self.layerwise_dir,
            calibration_config=self.run_config.search.calibration,
        ).run(observer)

    @property
    def layerwise_dir(self) -> Path:
        """Where the layer-wise method keeps its networks (``state_dir``)."""
        return self.state_dir("layerwise")

    def state_dir(self, kind: str) -> Path:
        """Where networks of ``kind`` (layer-wise states, promoted trials) are kept: one folder
        per storage and study (an in-memory storage's lives as long as this process)."""
        storage = self.request.storage
        if isinstance(storage, str):
            where = storage if "://" in storage else str(Path(storage).expanduser().resolve())
        elif storage_label(storage) != type(storage).__name__:
            where = storage_label(storage)
        else:
            where = f"{storage_label(storage)}-{os.getpid()}-{id(self.storage)}"
        identity = f"{where}\n{self.study_name}"
        return default_cache_dir() / kind / hashlib.sha256(identity.encode()).hexdigest()[:16]

    def run(
        self, observer: SearchObserver | None = None, *, control: StopControl | None = None
    ) -> int:
        """Run until the study has exactly ``request.trials`` complete trials, alongside any
        other workers on the same study; returns the trials this call completed.

        ``control`` stops it (signals, a wall-clock limit: ``worker.stop_on_signals``); a stop
        raises ``worker.Stop`` after failing and re-queueing the running trial.
        """
        distinct = self.space.distinct_points()
        budget = self.allocator is not None
        if budget:  # shapes are continuous: networks repeat only within one channel's width
            distinct = max(distinct, 10**9)
        return Worker(
            study=self.study,
            storage=self.storage,
            evaluate=make_evaluation(
                self.evaluator, seed=self.request.seed, budget=budget, cost=self.request.cost
            ),
            suggest=self.allocator.suggest if self.allocator is not None else self.space.suggest,
            total_trials=self.request.trials,
            observer=observer or SearchObserver(),
            control=control or StopControl(),
            label=storage_label(self.request.storage),
            liveness=storage_liveness(self.storage),
            distinct_points=distinct,
        ).run()

    def confirm(
        self,
        top: int = DEFAULT_TOP,
        *,
        seeds: int | None = None,
        steps: int | str | None = None,
        on_score: Callable[[int, int, float], None] | None = None,
        control: StopControl | None = None,
    ) -> list[Confirmation]:
        """Confirm a budget search's ``top`` best trials and its reference trials
        (``autoprune.search.confirm``): promoted to ``steps`` of the export recipe (None: its
        own length, ``EXPORT_FINETUNE.steps``), or with ``steps="search"`` rescored at the
        search's own length; ``seeds`` per trial (None: one promoted, the export's seed, so the
        score is the export's; two fresh ones at the search's length). Stored on the study,
        so a rerun resumes; ``control`` stops it between fine-tunes. Best first."""
        length = confirm_steps(steps)
        seed = self.request.seed
        evaluator = self.evaluator
        if length is not None:  # what `autoprune export --trial N` recovers the network with
            evaluator = replace(evaluator, finetune_config=replace(EXPORT_FINETUNE, steps=length))

        def rescore(trial: optuna.trial.FrozenTrial, round_: int) -> float:
            ratios = trial_ratios(trial)
            if length is None or round_ > 0:  # fresh seeds (a promotion's after the export's)
                fresh = fresh_seed(seed, trial.number, round_ - (length is not None))
                return evaluator.rescore(ratios, seed=seed + trial.number, finetune_seed=fresh)
            # the first round is the export itself (its seed): kept for `export` to reuse
            network, kept = evaluator.build(ratios, seed=seed + trial.number)
            accuracy = evaluate(network, self.data, "val").accuracy
            path = self.state_dir("promoted") / f"trial-{trial.number}-{length}-steps.pt"
            save_checkpoint(
                path,
                network,
                self.model_config,
                kept_channels=kept,
                metadata={"study": self.study_name, "trial": trial.number, "steps": length},
                preprocess=preprocess_of(self.data),
            )
            remember_promoted(self.study, trial.number, length, path)
            return accuracy

        return confirm(
            self.study,
            rescore,
            top=top,
            seeds=default_seeds(length) if seeds is None else seeds,
            steps=length,
            on_score=on_score,
            control=control,
        )
