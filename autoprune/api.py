"""The public API: build, quantize, prune, measure, train, search and export from Python.

Everything the ``autoprune`` command does is a few calls here::

    import autoprune

    result = autoprune.run_search("tiny_cnn", "digits", quant=autoprune.QuantSpec.from_bits(2),
                                  trials=8)
    result.pareto()                         # the front: one column per channel group
    trial = result.best(target_size="50%")  # most accurate trial at <= 50 % of the size
    network = result.build(trial)           # the pruned, fine-tuned network, as searched
    result.export(trial, "small.pt")        # saved physically smaller; autoprune.load reads it

The library prints nothing: pass an observer (``autoprune.progress``) to see progress. Search,
pandas and Optuna are imported on first use, so ``import autoprune`` stays light.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from autoprune.config import (
    EXPORT_FINETUNE,
    DataConfig,
    FinetuneConfig,
    HalvingConfig,
    LayerwiseConfig,
    ModelConfig,
    TrainConfig,
)
from autoprune.errors import ConfigError
from autoprune.metrics import ModelCost, measure
from autoprune.models import ModelSource, build_model, create_model, load
from autoprune.quant import QuantSpec, parse_bit_choices, quantize_

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial

    from autoprune.data import ImageData
    from autoprune.search.confirm import Confirmation
    from autoprune.search.export import ExportedTrial
    from autoprune.search.pareto import UniformLead
    from autoprune.search.session import SearchSession, Storage
    from autoprune.search.study import SearchObserver
    from autoprune.search.worker import StopControl
    from autoprune.train import CheckpointReport, Progress

__all__ = [
    "SearchResult",
    "create_model",
    "export_trial",
    "inspect",
    "load",
    "load_search",
    "measure",
    "prune_",
    "quantize_",
    "run_search",
    "train_baseline",
]

DEFAULT_CRITERION = "angle-next"


def _example(
    example_input: torch.Tensor | None, input_shape: Sequence[int] | None, model: nn.Module
) -> torch.Tensor:
    if example_input is not None:
        return example_input
    if input_shape is None:
        raise ConfigError("give example_input or input_shape (channels, height, width)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.zeros(1, *input_shape, device=device)


def prune_(
    model: nn.Module,
    ratios: Mapping[str, float] | float,
    *,
    example_input: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    criterion: str = DEFAULT_CRITERION,
    residual: bool | None = None,
    data: ImageData | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """Prune ``model`` in place, physically: the pruned channels are removed from the layers,
    so ``model`` itself becomes the smaller network (no masks). Returns the channels kept per
    group (what ``autoprune.models.build_model`` needs to rebuild the architecture).

    ``ratios``: the fraction of each named group's channels to remove (group names as
    ``autoprune groups`` lists them), or one fraction for every group (residual groups too
    unless ``residual=False``). ``criterion`` ranks channels (``autoprune.prune.CRITERIA``);
    ``seed`` drives ``random``; a criterion that needs data (``taylor``) scores on a few
    training batches of ``data``. ``example_input`` (or ``input_shape``) is traced to find
    the groups. Not fine-tuned: see ``run_search`` for pruning with recovery.
    """
    from autoprune.export.pruning import resolve_ratios
    from autoprune.prune import CRITERIA, find_groups
    from autoprune.prune import prune_ as prune_groups_

    example = _example(example_input, input_shape, model)
    needs_data = CRITERIA.get(criterion).needs_data
    if needs_data and data is None:
        raise ConfigError(f"criterion {criterion} scores channels on data: pass data")
    with torch.enable_grad():  # Torch-Pruning traces with autograd
        groups = find_groups(model, example, residual=True)
        if isinstance(ratios, Mapping):
            wanted = resolve_ratios(groups, ratios=ratios, uniform=None, residual=residual)
        else:
            wanted = resolve_ratios(groups, ratios=None, uniform=float(ratios), residual=residual)
        calibration = None
        if needs_data and data is not None:
            from autoprune.config import CalibrationConfig
            from autoprune.data import calibration_batches

            # the batches a search (and `prune`) with this seed scores on
            calibration = calibration_batches(data, **CalibrationConfig(seed=seed).to_dict())
        return prune_groups_(
            model,
            wanted,
            criterion=criterion,
            example_input=example,
            calibration=calibration,
            seed=seed,
        )


def inspect(
    target: str | Path | nn.Module,
    *,
    input_shape: Sequence[int] | None = None,
    model: ModelSource = None,
) -> CheckpointReport | ModelCost:
    """A summary of a checkpoint or a network.

    A checkpoint path gives a ``CheckpointReport`` (what ``autoprune inspect`` shows:
    architecture, per-layer cost, pruning, recorded results; ``.to_dict()`` is its JSON);
    ``model`` allows a checkpoint of your own architecture. An ``nn.Module`` gives its
    ``ModelCost`` (per-layer size, parameters, MACs, BOPs) for ``input_shape``.
    """
    if isinstance(target, nn.Module):
        if input_shape is None:
            raise ConfigError("inspecting a network needs input_shape (channels, height, width)")
        return measure(target, input_shape)
    from autoprune.train import describe_checkpoint

    return describe_checkpoint(target, model=model)


def _load_data(
    data: str | ImageData,
    *,
    device: torch.device,
    seed: int,
    max_train: int | None,
    data_dir: str | None,
) -> tuple[ImageData, DataConfig]:
    from autoprune.data import load_dataset

    if not isinstance(data, str):
        name = str(getattr(data, "name", "data"))
        return data, DataConfig.of(data, name, seed=seed, max_train=None)
    loaded = load_dataset(data, data_dir=data_dir, seed=seed, device=device, max_train=max_train)
    return loaded, DataConfig.of(loaded, data, seed=seed, max_train=max_train)


def _dataset_name(data: str | ImageData | None) -> str | None:
    """The name a baseline recipe is looked up by: a name, loaded data's, or the default."""
    if data is None:
        return DataConfig().name
    return data if isinstance(data, str) else getattr(data, "name", None)


def _baseline_recipe(
    train: TrainConfig | Literal["recommended"] | None, data: str | ImageData | None
) -> TrainConfig | None:
    """``run_search``'s ``train``: "recommended" is ``TrainConfig.recommended`` for the data."""
    if train == "recommended":
        return TrainConfig.recommended(_dataset_name(data))
    return train  # type: ignore[return-value]


def train_baseline(
    model: str | nn.Module,
    data: str | ImageData = "digits",
    *,
    quant: QuantSpec | None = None,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    max_train: int | None = None,
    data_dir: str | None = None,
) -> nn.Module:
    """Train a quantized network on ``data`` and return it (in eval mode).

    ``model``: a registered name or ``"package.module:factory"`` (built as ``quant`` says,
    default 2 bits), or an ``nn.Module``: quantized in place by ``quant`` if given (or if it is
    still float: 2 bits), then trained in place. ``config`` (``TrainConfig``) sets epochs,
    optimizer and schedule; None: ``TrainConfig.recommended`` for the dataset. ``out``: also
    save a resumable checkpoint there after every epoch (rerunning continues it); the network
    is then read back from it.
    ``progress(done, total)`` is called after each step.
    """
    from autoprune.device import resolve_device
    from autoprune.train import make_trainer, train_checkpoint

    with _quiet_import():
        from autoprune.search.session import DEFAULT_BITS, _is_quantized

    config = config or TrainConfig.recommended(_dataset_name(data))
    resolved = resolve_device(device)
    loaded, data_config = _load_data(
        data, device=resolved, seed=config.seed, max_train=max_train, data_dir=data_dir
    )
    spec = quant or QuantSpec.from_bits(DEFAULT_BITS)
    if out is not None:
        name = model if isinstance(model, str) else f"{type(model).__module__}:user"
        model_config = ModelConfig.for_data(name, spec, loaded)
        if isinstance(model, nn.Module):
            model_config = replace(model_config, source=model)
        train_checkpoint(
            out, model_config, data_config, config, loaded, device=resolved, progress=progress
        )
        return load(out, model=model_config.source, device=resolved)
    torch.manual_seed(config.seed)
    if isinstance(model, str):
        network = build_model(ModelConfig.for_data(model, spec, loaded))
    else:
        network = model
        if quant is not None or not _is_quantized(network):
            network = quantize_(network, spec)
    network.to(resolved)
    trainer = make_trainer(network, loaded, config, resolved)
    trainer.run(trainer.total_steps, progress)
    return network.eval()


# -- search ------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """A study of per-group pruning ratios and what it found.

    ``session`` is the prepared search when this process ran or opened it (``run_search``):
    ``build`` then replays trials with the very baseline and data in memory. A result read
    back from a storage (``load_search``) rebuilds them from the study's baseline file and
    dataset, as ``autoprune export`` does.
    """

    study: optuna.Study
    session: SearchSession | None = None
    model: ModelSource = None  # allows a study of your own architecture to be rebuilt
    data_dir: str | None = None
    device: str = "auto"
    _built: dict[int, tuple[nn.Module, dict[str, int]]] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def groups(self) -> list[str]:
        """The searched channel groups, in the search space's order."""
        from autoprune.search.pareto import group_names

        return group_names(self.study)

    def run(
        self, observer: SearchObserver | None = None, *, control: StopControl | None = None
    ) -> SearchResult:
        """Add trials until the study holds the requested number of complete ones."""
        if self.session is None:
            raise ConfigError("this result was read from a storage: call run_search to add trials")
        with _quiet_optuna():
            if self.session.request.method == "layerwise":
                self.session.run_layerwise(observer)
            else:
                self.session.run(observer, control=control)
        return self

    def pareto(self, *, all_trials: bool = False) -> pd.DataFrame:
        """The Pareto-optimal trials (every complete one with ``all_trials``), sorted by size:
        trial, val_accuracy, size_mb, size_pct_of_quantized, compression_vs_fp32, bops, macs,
        params, reference, then one column per group holding its pruning ratio."""
        from autoprune.search.pareto import RATIO_PREFIX, trials_frame

        frame = trials_frame(self.study, pareto_only=not all_trials)
        renamed = frame.drop(columns=["ratios"]).rename(
            columns=lambda c: c.removeprefix(RATIO_PREFIX)
        )
        renamed.attrs["groups"] = frame.attrs.get("groups", [])
        return renamed

    def plot(self, ax: Any = None) -> Any:
        """Every trial, the Pareto front and the reference points, drawn on ``ax`` or a new
        figure; returns the matplotlib ``Figure`` (shown inline in a notebook). Needs
        matplotlib (``pip install 'autoprune[plot]'``)."""
        from autoprune.search.plot import plot_front

        return plot_front(self.study, ax=ax)

    def trial(self, trial: int | FrozenTrial) -> FrozenTrial:
        """The complete trial ``trial`` (a number or a trial)."""
        from optuna.trial import TrialState

        number = trial if isinstance(trial, int) else trial.number
        found = [t for t in self.study.get_trials(deepcopy=False) if t.number == number]
        if not found or found[0].state != TrialState.COMPLETE:
            raise ConfigError(f"study {self.study.study_name!r} has no complete trial {number}")
        return found[0]

    def best(self, target_size: float | str | None = None) -> FrozenTrial:
        """The complete trial with the best validation accuracy, of at most ``target_size``:
        MB (``0.05``) or a percent of the unpruned quantized model (``"50%"``); ties go to
        the smaller network. Where trials that fit were confirmed (``confirm``), the best
        fresh-seed mean among them. ``ConfigError`` if no trial is small enough."""
        from autoprune.search.pareto import best_under

        frame = self.pareto(all_trials=True)
        if frame.empty:
            raise ConfigError(f"study {self.study.study_name!r} has no complete trial yet")
        if target_size is None:
            target_size = float(frame["size_mb"].max())
        row = best_under(frame, target_size)
        if row is None:
            raise ConfigError(
                f"no trial of study {self.study.study_name!r} is at most {target_size} "
                f"(smallest: {frame['size_mb'].min():.4f} MB): give a larger target_size"
            )
        return self.trial(int(row["trial"]))

    def uniform_lead(self) -> UniformLead | None:
        """A budget search's best trial against uniform pruning at the same budget (its
        reference trial): ``lead``, ``noise`` (two standard errors on the validation images)
        and ``within_noise``. None for a search without a budget, or before the reference
        trial completes."""
        from autoprune.search.pareto import uniform_lead

        return uniform_lead(self.study)

    def confirm(
        self, top: int | None = None, *, seeds: int | None = None, steps: int | str | None = None
    ) -> list[Confirmation]:
        """Confirm a budget search's ``top`` best trials (default 2) and its reference trials,
        best first: promoted to ``steps`` of the export recipe (default: all of it, so a
        trial's score is its export's validation accuracy), or with ``steps="search"``
        rescored at the search's own length with ``seeds`` fresh seeds each (default 2).
        ``best`` and ``uniform_lead`` then use those scores (``autoprune.search.confirm``).
        Stored on the study, so calling it again resumes. Needs the search's session (not a
        result read back from a storage)."""
        from autoprune.search.confirm import DEFAULT_TOP

        if self.session is None:
            raise ConfigError(
                "this result was read from a storage: run the search again (it resumes) to "
                "confirm its trials"
            )
        return self.session.confirm(DEFAULT_TOP if top is None else top, seeds=seeds, steps=steps)

    def _model_source(self) -> ModelSource:
        if self.model is not None or self.session is None:
            return self.model
        wanted = self.session.request.model
        return wanted if isinstance(wanted, nn.Module) or (wanted and ":" in wanted) else None

    def _in_memory_data(self) -> bool:
        return self.session is not None and not isinstance(self.session.request.dataset, str)

    def _build(self, trial: FrozenTrial) -> tuple[nn.Module, dict[str, int]]:
        from autoprune.models import load_checkpoint
        from autoprune.search.record import TrialRecord, trial_ratios

        saved = TrialRecord.from_trial(trial).checkpoint
        if saved is not None:  # a layer-wise trial: its network was saved by the search
            loaded = load_checkpoint(saved, model=self._model_source())
            return loaded.model, loaded.kept_channels
        assert self.session is not None
        seed = self.session.request.seed + trial.number
        return self.session.evaluator.build(trial_ratios(trial), seed=seed)

    def build(self, trial: int | FrozenTrial) -> nn.Module:
        """Trial ``trial``'s pruned network with its own fine-tuning replayed (same baseline,
        criterion, ratios, budget and seed), so it scores the accuracy the trial stored; in
        eval mode. A result read from a storage rebuilds it through ``export``."""
        found = self.trial(trial)
        if self.session is not None:
            network, _ = self._build(found)
            return network.eval()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"trial-{found.number}.pt"
            self.export(found, path, finetune=None)  # the trial's own fine-tune, replayed
            return load(path, model=self._model_source())

    def export(
        self,
        trial: int | FrozenTrial,
        path: str | Path,
        *,
        data_dir: str | None = None,
        finetune: FinetuneConfig | None = EXPORT_FINETUNE,
        epochs: float | None = None,
    ) -> ExportedTrial:
        """Rebuild trial ``trial``'s network, recover it with ``finetune``, evaluate it on the
        validation and test splits and save it physically smaller at ``path``
        (``autoprune.load`` reads it).

        ``finetune``: by default the export recipe (``autoprune.config.EXPORT_FINETUNE``:
        longer than a trial's fine-tune, distilled from the unpruned parent); None replays the
        trial's own fine-tune (the network ``build`` returns). ``epochs``: the recipe's length
        in epochs of the training split instead of its steps.
        """
        from autoprune.search.export import export_trial as export_study_trial

        found = self.trial(trial)
        in_memory = self._in_memory_data()
        return export_study_trial(
            self.study,
            found.number,
            path,
            data_dir=data_dir or self.data_dir,
            device=self.device,
            model=self._model_source(),
            finetune=finetune,
            epochs=epochs,
            data=self.session.data if in_memory and self.session else None,
            baseline=self.session.baseline if in_memory and self.session else None,
        )


@contextmanager
def _quiet_import() -> Iterator[None]:
    """Optuna imports ``tqdm.auto``, which warns in a notebook without ipywidgets although
    no Optuna progress bar is ever drawn here: that warning is dropped on first import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        yield


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's own INFO lines (a study created, each trial finished) and experimental-API
    warnings silenced for the call, and its verbosity restored after: the library is silent."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _is_checkpoint(model: object) -> bool:
    if isinstance(model, Path):
        return True
    return isinstance(model, str) and (
        model.endswith((".pt", ".pth")) or (Path(model).is_file() and ":" not in model)
    )


def run_search(
    model: str | Path | nn.Module | None = None,
    data: str | ImageData | None = None,
    *,
    quant: QuantSpec | None = None,
    storage: Storage = None,
    trials: int = 16,
    sampler: str = "gp",
    criterion: str = DEFAULT_CRITERION,
    finetune: FinetuneConfig | None = None,
    train: TrainConfig | Literal["recommended"] | None = "recommended",
    seed: int = 0,
    observer: SearchObserver | None = None,
    study_name: str | None = None,
    device: str = "auto",
    search_space: str | None = None,
    max_train: int | None = None,
    val_fraction: float = 0.1,
    data_dir: str | None = None,
    image_size: int | None = None,
    augment: str | None = None,
    method: str = "joint",
    layerwise: LayerwiseConfig | None = None,
    control: StopControl | None = None,
    run: bool = True,
    target_size: str | float | None = None,
    target_bops: str | float | None = None,
    warm_start: str | None = None,
    sampler_options: dict[str, Any] | None = None,
    cost: str = "size",
    halving: HalvingConfig | str | None = None,
    confirm: int | None = None,
    confirm_steps: int | str | None = None,
    search_bits: str | tuple[int, ...] | None = None,
) -> SearchResult:
    """Search per-group pruning ratios of ``model`` on ``data``; returns a ``SearchResult``.

    - ``model``: a registered name, ``"package.module:factory"``, an ``nn.Module`` (float:
      quantized by ``quant`` on a copy; quantized already: give its ``quant``), or a
      checkpoint path (``.pt``/``.pth`` or a ``Path``), whose network is the baseline.
      None: the default model (``resnet18``).
    - ``data``: a dataset name (``autoprune.data.DATASETS``) or loaded data (``DataSplits``).
      None: the checkpoint's dataset, else digits.
    - ``quant``: a ``QuantSpec``; None: the checkpoint's, else 2 bits.
    - ``train``: how the baseline is trained from the model's weights (cached across runs):
      a ``TrainConfig``, or "recommended" (``TrainConfig.recommended`` for the dataset: the
      general defaults unless ``DATASET_TRAINING`` has a recipe measured for it); None uses
      an ``nn.Module`` or checkpoint as it is.
    - ``storage``: None keeps the study in memory; a path (SQLite, or a journal ``*.log``), an
      Optuna RDB URL or an Optuna storage object keeps it, and rerunning resumes it.
    - ``trials``: finished trials the study should hold (complete, or stopped by halving);
      ``sampler`` (with its keyword ``sampler_options``), ``criterion``, ``finetune``
      (``FinetuneConfig``), ``seed``: the search's recipe.
    - ``target_size`` (``"50%"`` of the unpruned network, or MB) or ``target_bops``
      (``"40%"`` or a count): a budget search, one objective (validation accuracy), every
      trial within the budget (``autoprune.search.budget``). None: two objectives, accuracy
      against ``cost``: ``"size"`` (quantized MB) or ``"bops"`` (GBOPs).
    - ``warm_start="sensitivity"``: the first trials come from a per-group sensitivity scan.
    - ``halving`` (budget searches): successive halving, a ``HalvingConfig`` or its rungs in
      fine-tuning steps (``"10"``, ``"0,10"``): a candidate scored on a validation subset at
      each rung goes on only if it ranks in the best third there; stopped trials count
      towards ``trials``. None: every candidate is fine-tuned in full.
    - ``confirm`` (budget searches): after the trials, the best ``confirm`` trials and every
      reference trial (uniform; greedy with the warm start) are promoted to
      ``confirm_steps`` of the export recipe (None: all of it), or with
      ``confirm_steps="search"`` fine-tuned twice more at the search's length with fresh
      seeds; ``best()`` and ``uniform_lead()`` use those scores (``SearchResult.confirm``).
      None: 2 for a budget search, 0 otherwise.
    - ``search_bits`` (joint searches of DoReFa networks): the bit-widths every inner
      layer may take, weights and input together, searched with the ratios (``"2,4,8"`` or
      ``(2, 4, 8)``; the network's own must be one). None: every layer keeps its own.
    - ``observer``: an ``autoprune.search.SearchObserver`` told about progress (see
      ``autoprune.progress``); none by default, and the library prints nothing.
    - ``run=False`` prepares the study (baseline, reference trials) without running trials;
      ``result.run()`` runs them.
    """
    with _quiet_import():
        from autoprune.search.confirm import confirm_count
        from autoprune.search.confirm import confirm_steps as confirm_steps_of
        from autoprune.search.session import SearchRequest, SearchSession

    confirm_top = confirm_count(confirm, budget=target_size is not None or target_bops is not None)
    confirm_steps_of(confirm_steps)  # a bad length is refused before any work
    if confirm_steps is not None and not confirm_top:
        raise ConfigError(
            "confirm_steps is the length of a budget search's confirmation, and this search "
            "confirms nothing (no target, or confirm=0): drop confirm_steps"
        )
    checkpoint = str(model) if _is_checkpoint(model) else None
    request = SearchRequest(
        model=None if checkpoint else model,  # type: ignore[arg-type]
        quant=quant,
        dataset=data,
        data_dir=data_dir,
        image_size=image_size,
        augment=augment,
        trials=trials,
        sampler=sampler,
        criterion=criterion,
        finetune=finetune or FinetuneConfig(),
        train=None if checkpoint else _baseline_recipe(train, data),
        storage=storage,
        study_name=study_name,
        checkpoint=checkpoint,
        search_space=search_space,
        device=device,
        seed=seed,
        val_fraction=val_fraction,
        max_train=max_train,
        method=method,
        layerwise=layerwise or LayerwiseConfig(),
        target_size=target_size,
        target_bops=target_bops,
        warm_start=warm_start,
        sampler_options=dict(sampler_options or {}),
        cost=cost,
        halving=HalvingConfig.parse(halving) if isinstance(halving, str) else halving,
        search_bits=None if search_bits is None else parse_bit_choices(search_bits),
    )
    with _quiet_optuna():
        session = SearchSession(request)
    result = SearchResult(
        session.study,
        session=session,
        model=model if isinstance(model, nn.Module) else None,
        data_dir=data_dir,
        device=device,
    )
    if run:
        result.run(observer, control=control)
        if confirm_top:
            result.confirm(confirm_top, steps=confirm_steps)
    return result


def load_search(
    storage: Storage,
    study: str | None = None,
    *,
    model: ModelSource = None,
    data_dir: str | None = None,
    device: str = "auto",
) -> SearchResult:
    """A study saved in ``storage`` (a path, URL or Optuna storage), as a ``SearchResult``;
    ``study`` may be left out when the storage holds one. ``model`` allows a study of your
    own architecture to be rebuilt; ``data_dir`` is where its images are now."""
    from autoprune.errors import StorageError

    with _quiet_import():
        from autoprune.search.session import open_search_storage
        from autoprune.search.storage import storage_file
        from autoprune.search.study import load_existing_study

    if isinstance(storage, str):
        path = storage_file(storage)
        if path is not None and not path.exists():  # reading must not create a storage file
            raise StorageError(f"storage {storage} does not exist: check the path")
    if storage is None:
        raise ConfigError("storage is None: an in-memory study lives only in its SearchResult")
    opened = open_search_storage(storage)
    return SearchResult(
        load_existing_study(opened, study), model=model, data_dir=data_dir, device=device
    )


def export_trial(
    source: SearchResult | optuna.Study | Storage,
    trial: int,
    out: str | Path,
    *,
    study: str | None = None,
    model: ModelSource = None,
    data_dir: str | None = None,
    device: str = "auto",
    finetune: FinetuneConfig | None = EXPORT_FINETUNE,
    epochs: float | None = None,
) -> ExportedTrial:
    """Export trial ``trial`` of a search (a ``SearchResult``, an Optuna study, or a storage
    holding ``study``) as a physically smaller checkpoint at ``out``: the network is pruned
    as the search pruned it, recovered by ``finetune`` (default: the export recipe; None: the
    trial's own fine-tune; ``epochs`` sets its length in epochs of the training split),
    evaluated and saved (``SearchResult.export``)."""
    if isinstance(source, SearchResult):
        result = source
    elif source is not None and type(source).__name__ == "Study":
        result = SearchResult(source, model=model, data_dir=data_dir, device=device)  # type: ignore[arg-type]
    else:
        result = load_search(source, study, model=model, data_dir=data_dir, device=device)  # type: ignore[arg-type]
    return result.export(trial, out, data_dir=data_dir, finetune=finetune, epochs=epochs)
