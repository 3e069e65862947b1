"""Everything ``autoprune search`` does, as a library call: prepare, then run trials.

``SearchSession(request)`` loads the data, obtains the baseline (checkpoint, cache or fresh
training), loads the search space, opens or resumes the study; ``run()`` adds trials.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
import torch

from autoprune.checkpoint import read_checkpoint
from autoprune.config import DataConfig, ModelConfig, TrainConfig
from autoprune.data import load_dataset
from autoprune.data.base import default_cache_dir
from autoprune.device import resolve_device
from autoprune.errors import CheckpointError, ConfigError
from autoprune.metrics import measure
from autoprune.models import build_model, load_checkpoint
from autoprune.models.external import is_external
from autoprune.prune import CRITERIA
from autoprune.quant import QuantSpec, parse_edge_bits
from autoprune.search.export import DATA_DIR_ATTR
from autoprune.search.layerwise import LayerwiseConfig, LayerwiseResult, LayerwiseSearch
from autoprune.search.objective import CandidateEvaluator, FinetuneConfig
from autoprune.search.samplers import SAMPLERS, DistinctSampler
from autoprune.search.space import load_search_space
from autoprune.search.storage import (
    DEFAULT_STORAGE,
    open_storage,
    storage_file,
    storage_liveness,
)
from autoprune.search.study import (
    BASELINE_PATH_ATTR,
    REFERENCE_ATTR,
    Reference,
    SearchObserver,
    enqueue_reference_trials,
    make_evaluation,
    open_study,
)
from autoprune.search.worker import StopControl, Worker, fail_dead_trials
from autoprune.train import Progress, evaluate, obtain_baseline
from autoprune.train.baseline import baseline_path

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "resnet18"
DEFAULT_BITS = 2
METHODS = ("joint", "layerwise")


@dataclass(frozen=True)
class SearchRequest:
    """What the user asked for. ``model`` and the quantization fields None: from the
    checkpoint, else the defaults (bits 2, bnn binary weights, float edge layers).

    Quantization (see ``QuantSpec.from_options``): ``bits`` sets weights and activations,
    ``wbits``/``abits`` override one side, ``binary_weights`` is ``bnn`` or ``xnor`` for
    1-bit weights, ``edge_bits`` is 32, 8 or ``"net"`` for the first conv and classifier.
    """

    model: str | None = None
    bits: int | None = None
    wbits: int | None = None
    abits: int | None = None
    binary_weights: str | None = None
    edge_bits: int | str | None = None
    # dataset, data_dir, image_size, augment None: the checkpoint's when there is one, else
    # digits and the dataset's defaults
    dataset: str | None = None
    data_dir: str | None = None
    workers: int | None = None  # data-loader processes of streaming datasets (None: default)
    image_size: int | None = None  # image side of streaming datasets (None: the dataset's)
    augment: str | None = None  # training augmentation (autoprune.data.AUGMENTATIONS)
    trials: int = 16
    sampler: str = "gp"
    criterion: str = "angle-next"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    checkpoint: str | None = None
    search_space: str | None = None
    device: str = "auto"
    seed: int = 0
    val_fraction: float = 0.1
    max_train: int | None = None
    method: str = "joint"  # "joint": all ratios at once; "layerwise": the paper's greedy method
    layerwise: LayerwiseConfig = field(default_factory=LayerwiseConfig)

    def quant_spec(self) -> QuantSpec:
        """The requested quantization with the defaults filled in (no checkpoint involved)."""
        return QuantSpec.from_options(
            bits=DEFAULT_BITS if self.bits is None else self.bits,
            wbits=self.wbits,
            abits=self.abits,
            binary_weights=self.binary_weights,
            edge_bits=self.edge_bits,
        )


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
    try:
        summaries = optuna.get_all_study_summaries(open_storage(str(path)))
    except Exception:  # unreadable: not ours to judge, leave it
        return
    if all(summary.n_trials == 0 for summary in summaries):
        for leftover in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)):
            leftover.unlink(missing_ok=True)


def _with_data_defaults(request: SearchRequest) -> SearchRequest:
    """``request`` with the dataset, data folder, image size and augmentation it leaves open
    taken from its checkpoint's record (what the baseline was trained on), else digits."""
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


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class SearchSession:
    def __init__(
        self, request: SearchRequest, *, baseline_progress: Progress | None = None
    ) -> None:
        self.request = request
        # a command that fails must not leave a new, empty storage file behind
        new_file = storage_file(request.storage)
        if new_file is not None and new_file.exists():
            new_file = None
        try:
            self._prepare(request, baseline_progress)
        except BaseException:
            if new_file is not None:
                _remove_if_empty(new_file)
            raise

    def _prepare(self, request: SearchRequest, baseline_progress: Progress | None) -> None:
        if request.method not in METHODS:
            raise ConfigError(
                f"unknown search method {request.method!r}: use one of {', '.join(METHODS)}"
            )
        SAMPLERS.get(request.sampler)  # unknown names fail before the study is touched
        CRITERIA.get(request.criterion)
        request = self.request = _with_data_defaults(request)
        self.device = resolve_device(request.device)
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
        # Everything that defines the study is known before any training, so a mismatching
        # study is refused before minutes of work.
        checkpoint_model = None
        if request.checkpoint:
            self.model_config, checkpoint_model, baseline_identity = self._from_checkpoint(
                Path(request.checkpoint)
            )
        else:
            self.model_config = ModelConfig.for_data(
                request.model or DEFAULT_MODEL, request.quant_spec(), self.data
            )
            baseline_identity = {"train": request.train.to_dict()}
        example = torch.zeros(1, *self.model_config.input_shape)
        self.space = load_search_space(
            self.model_config.name, build_model(self.model_config), example, request.search_space
        )
        self.study_name = request.study_name or (
            f"{self.model_config.name}-{self.model_config.spec.label}-{request.dataset}"
        )
        config = {
            "model": self.model_config.to_dict(),
            "data": self.data_config.to_dict(),
            "baseline": baseline_identity,
            "criterion": request.criterion,
            "finetune": request.finetune.to_dict(),
            "space": self.space.to_dict(),
            "seed": request.seed,
        }
        if request.method == "layerwise":
            # no per-trial fine-tuning in this method; its own schedule defines the study
            del config["finetune"]
            config.update(method="layerwise", layerwise=request.layerwise.to_dict())
        # Opened once the request is known to be valid, still before minutes of training.
        self.storage = open_storage(request.storage)
        self.study, self.created = open_study(self.storage, self.study_name, config=config)
        # Seeded per trial (seed + trial number): a resumed run, or a worker joining others,
        # draws new start-up points, and never one another trial holds.
        self.study.sampler = DistinctSampler(
            request.sampler,
            seed=request.seed,
            n_startup_trials=len(self.space.groups) // 2 + 6,
        )  # the layer-wise method makes one sampler per group instead

        if checkpoint_model is not None:
            self.baseline = checkpoint_model.to(self.device).eval()
            self.baseline_path = Path(request.checkpoint)
            self.baseline_reused = True
            self.baseline_val_accuracy = evaluate(self.baseline, self.data, "val").accuracy
        else:
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
                    progress=baseline_progress,
                )
            self.baseline, self.baseline_path = baseline.model, baseline.path
            self.baseline_reused = baseline.reused
            self.baseline_val_accuracy = baseline.val_accuracy
        self.reference = Reference(
            quantized_size_bits=measure(self.baseline, self.model_config.input_shape).size_bits,
            float_size_bits=measure(
                build_model(replace(self.model_config, quant=QuantSpec().to_dict())),
                self.model_config.input_shape,
            ).size_bits,
            baseline_val_accuracy=self.baseline_val_accuracy,
        )
        self.study.set_user_attr(REFERENCE_ATTR, self.reference.to_dict())
        self.study.set_user_attr(BASELINE_PATH_ATTR, str(Path(self.baseline_path).resolve()))
        if getattr(self.data, "root", None) is not None:  # `export` finds the images again
            self.study.set_user_attr(DATA_DIR_ATTR, str(Path(self.data.root).resolve()))  # type: ignore[attr-defined]
        if request.method == "joint":
            # a killed worker's trial (a reference point, say) is failed and queued again first
            fail_dead_trials(self.study, self.storage, storage_liveness(self.storage))
            enqueue_reference_trials(self.study, self.space, self.storage)
        self.evaluator = CandidateEvaluator(
            baseline=self.baseline,
            data=self.data,
            model_config=self.model_config,
            criterion=request.criterion,
            finetune_config=request.finetune,
        )

    def _from_checkpoint(self, path: Path) -> tuple[ModelConfig, torch.nn.Module, dict]:
        # a user-defined architecture is rebuilt only when the request names it; a registered
        # name given for another model is refused below, naming the option
        named = self.request.model
        loaded = load_checkpoint(path, model=named if named and is_external(named) else None)
        model_config = loaded.config
        if loaded.kept_channels:
            raise CheckpointError(
                f"checkpoint {path} is already pruned: search from the unpruned baseline checkpoint"
            )
        # every quantization option given must match what the checkpoint was trained with
        request, spec = self.request, model_config.spec
        wanted = {
            "model": request.model,
            "bits": request.bits,
            "wbits": request.wbits,
            "abits": request.abits,
            "weights": request.binary_weights,
            "edge-bits": None if request.edge_bits is None else parse_edge_bits(request.edge_bits),
        }
        held = {
            "model": model_config.name,
            "bits": spec.wbits if spec.wbits == spec.abits else spec.label,
            "wbits": spec.wbits,
            "abits": spec.abits,
            "weights": spec.weight_scheme,
            "edge-bits": spec.edge_bits,
        }
        for key, value in wanted.items():
            if value is not None and value != held[key]:
                raise CheckpointError(
                    f"checkpoint {path} holds {key} {held[key]} but --{key} {value} was given: "
                    f"drop --{key} or pass a matching checkpoint"
                )
        shape = (self.data.num_classes, self.data.in_channels, self.data.image_size)
        if (model_config.num_classes, model_config.in_channels, model_config.image_size) != shape:
            raise CheckpointError(
                f"checkpoint {path} was made for {model_config.num_classes} classes of "
                f"{model_config.in_channels}x{model_config.image_size}px images, dataset "
                f"{self.request.dataset} has {shape[0]} classes of {shape[1]}x{shape[2]}px: "
                "pass the dataset it was trained on"
            )
        return model_config, loaded.model, {"checkpoint": _file_digest(path)}

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
        ).run(observer)

    @property
    def layerwise_dir(self) -> Path:
        """Where the layer-wise method keeps its networks: one folder per storage and study."""
        storage = self.request.storage
        where = storage if "://" in storage else str(Path(storage).expanduser().resolve())
        identity = f"{where}\n{self.study_name}"
        return (
            default_cache_dir() / "layerwise" / hashlib.sha256(identity.encode()).hexdigest()[:16]
        )

    def run(
        self, observer: SearchObserver | None = None, *, control: StopControl | None = None
    ) -> int:
        """Run until the study has exactly ``request.trials`` complete trials, alongside any
        other workers on the same study; returns the trials this call completed.

        ``control`` stops it (signals, a wall-clock limit: ``worker.stop_on_signals``); a stop
        raises ``worker.Stop`` after failing and re-queueing the running trial.
        """
        distinct = 1
        for group in self.space.groups:
            distinct *= round((group.high - group.low) / group.step) + 1
        return Worker(
            study=self.study,
            storage=self.storage,
            evaluate=make_evaluation(self.evaluator, seed=self.request.seed),
            suggest=self.space.suggest,
            total_trials=self.request.trials,
            observer=observer or SearchObserver(),
            control=control or StopControl(),
            label=self.request.storage,
            liveness=storage_liveness(self.storage),
            distinct_points=distinct,
        ).run()
