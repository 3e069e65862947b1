"""A search previewed, not run: what a dry run of ``autoprune search`` reports.

``plan_search(request)`` checks the request as a search would (names, data, checkpoint, search
space), then measures instead of searching: the groups and the size shares they control, the
size at every group's lowest and highest ratio (networks actually pruned and measured), and
the seconds one trial should take, timed on the real data with a few fine-tuning steps and
one validation pass. It opens no storage for writing, trains no baseline and writes no file.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from dataclasses import dataclass, replace

import optuna
import torch
from torch import nn

from autoprune.data.base import default_cache_dir
from autoprune.metrics import measure
from autoprune.models import build_model
from autoprune.prune import prune_
from autoprune.quant import bit_layers, set_layer_bits_, takes_mixed_bits
from autoprune.quant.dorefa import DOREFA_BITS
from autoprune.search.coverage import GroupsReport, report_groups
from autoprune.search.objective import CandidateEvaluator
from autoprune.search.session import SearchRequest, SearchSession, open_search_storage
from autoprune.search.space import split_params
from autoprune.search.storage import storage_file
from autoprune.search.study import finished_trials
from autoprune.train import evaluate
from autoprune.train.baseline import baseline_path

TIMED_STEPS = 3  # fine-tuning steps timed (after one untimed warm-up step)


@dataclass(frozen=True)
class SearchPlan:
    """What a search would do, measured without running it."""

    study_name: str
    study: str  # "new study in a new file", "new study", "resumes: 5 complete trials, 2 stopped"
    baseline: str  # where the unpruned network would come from
    dataset: str
    train_images: int
    val_images: int
    device: str
    groups: GroupsReport  # the searched groups are those of the request's space
    quantized_size_bits: int
    smallest_size_bits: int  # every group at its highest ratio (searched widths: the lowest)
    largest_size_bits: int  # every group at its lowest ratio (searched widths: the highest)
    finetune_steps: int  # per trial; 0 for the layer-wise method (it retrains per group)
    budget: str | None  # a budget search's limit, described; None for a two-objective search
    seconds: dict[str, float]  # per trial: prune, finetune (all its steps), evaluate
    trials: int
    bit_choices: tuple[int, ...] | None = None  # widths searched per layer, if any
    bit_layers: int = 0  # layers whose width is searched
    # the inner layers' width when widths are not searched but a lower one could be (a DoReFa
    # network above the lowest width); None otherwise
    lowerable_bits: int | None = None

    @property
    def seconds_per_trial(self) -> float:
        return sum(self.seconds.values())


class _Preview(SearchSession):
    """Only the steps of a session that read: the request checked, the data loaded, the
    model described and its space loaded; nothing is opened, trained or written."""

    def __init__(self, request: SearchRequest) -> None:
        self.request = request
        self._check_request()
        self._load_data()
        self._describe_model()


def _study_state(request: SearchRequest, name: str) -> str:
    storage = request.storage
    if storage is None:
        return "new study, in memory"
    path = storage_file(storage) if isinstance(storage, str) else None
    if isinstance(storage, str) and path is not None and not path.exists():
        return f"new study in a new file {path}"
    opened = open_search_storage(storage)
    if name not in optuna.study.get_all_study_names(storage=opened):
        return "new study"
    study = optuna.load_study(study_name=name, storage=opened)
    complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    stopped = finished_trials(study) - complete
    return f"resumes: {complete} complete trials" + (f", {stopped} stopped" if stopped else "")


def _baseline(preview: _Preview) -> tuple[nn.Module, str]:
    """The unpruned network to measure and time (untrained when it would be trained: sizes
    and speed do not depend on the weights), and where the search would take it from."""
    request = preview.request
    checkpoint = getattr(preview, "_checkpoint_model", None)
    if checkpoint is not None:
        return checkpoint, f"checkpoint {request.checkpoint}"
    # a caller's network too is measured as the search holds it: a quantized copy
    network = build_model(preview.model_config)
    if request.train is None:
        return network, "your network as given"
    cached = baseline_path(
        default_cache_dir(), preview.model_config, preview.data_config, request.train
    )
    if cached.is_file():
        return network, f"cached baseline {cached}"
    return network, f"trained first ({request.train.epochs} epochs, not timed here)"


def _pruned_size(
    network: nn.Module, ratios: dict[str, float], shape: tuple[int, ...], device: torch.device
) -> int:
    ratios, bits = split_params(ratios)
    pruned = set_layer_bits_(copy.deepcopy(network), bits)
    example = torch.zeros(1, *shape, device=device)
    with torch.inference_mode(False), torch.enable_grad():  # tracing the groups needs autograd
        prune_(pruned, ratios, criterion="l1", example_input=example)  # sizes: any criterion
    return measure(pruned, shape).size_bits


def _time_trial(
    preview: _Preview, network: nn.Module, ratios: dict[str, float]
) -> dict[str, float]:
    """Seconds of one trial at ``ratios``: pruning, fine-tuning extrapolated from a few timed
    steps to the configured count, and one validation pass."""
    request = preview.request
    steps = request.finetune.steps if request.method == "joint" else 0
    run = 1 + TIMED_STEPS if steps else 0  # steps are timed between the ends of two steps

    def build(
        steps: int, seconds: dict[str, float], stamps: list[float]
    ) -> tuple[nn.Module, dict[str, int]]:
        return CandidateEvaluator(
            baseline=network,
            data=preview.data,
            model_config=preview.model_config,
            criterion=request.criterion,
            finetune_config=replace(request.finetune, steps=steps),
        ).build(
            ratios,
            seed=request.seed,
            # the ends of steps; recover's call at step 0 (before any step) is no step's end
            progress=lambda done, total: stamps.append(time.perf_counter()) if done else None,
            seconds=seconds,
        )

    build(min(run, 1), {}, [])  # the first build of a process pays one-off costs: untimed
    stamps: list[float] = []
    seconds: dict[str, float] = {}
    model, _ = build(run, seconds, stamps)
    finetune = 0.0
    if steps and len(stamps) == run:
        # the median step: one slow step (another process, a page fault) does not count
        per_step = statistics.median(b - a for a, b in itertools.pairwise(stamps))
        fixed = max(seconds["finetune"] - run * per_step, 0.0)  # BatchNorm re-estimation, set-up
        finetune = fixed + per_step * steps
    started = time.perf_counter()
    evaluate(model, preview.data, "val")
    evaluation = time.perf_counter() - started
    return {"prune": seconds["prune"], "finetune": finetune, "evaluate": evaluation}


def _budget(preview: _Preview) -> str | None:
    allocator = getattr(preview, "allocator", None)  # built (and checked) by a budget search
    if allocator is None:
        return None
    budget = allocator.budget
    return budget.describe(allocator.costs.unpruned[budget.metric])


def _lowerable_bits(preview: _Preview, network: nn.Module) -> int | None:
    """The network's own width when its inner layers could be searched down from it: lowering
    precision may buy more size than pruning does (a W4A4 ResNet-20 at 30 % of its size,
    README). None when widths are searched already or cannot be."""
    spec = preview.model_config.spec
    if preview.space.bits is not None or preview.request.method != "joint":
        return None
    if not takes_mixed_bits(spec):
        return None
    if spec.wbits <= min(DOREFA_BITS) or not bit_layers(network):
        return None
    return spec.wbits


def plan_search(request: SearchRequest) -> SearchPlan:
    """Check ``request`` as ``SearchSession`` would and measure what its search would do; see
    the module docstring. Raises the errors the search would raise before its first trial
    (except a resumed study's configuration, which is compared when the search opens it)."""
    preview = _Preview(request)
    config, space, data = preview.model_config, preview.space, preview.data
    network, baseline = _baseline(preview)
    network = network.to(preview.device).eval()
    shape = config.input_shape
    low = {group.name: group.low for group in space.groups}
    high = {group.name: group.high for group in space.groups}
    middle = {g.name: g.low + round((g.high - g.low) / g.step / 2) * g.step for g in space.groups}
    if space.bits is not None:  # the size range spans the widths too
        low.update(space.bits.at(max(space.bits.choices)))
        high.update(space.bits.at(min(space.bits.choices)))
        middle.update(space.bits.unchanged())
    cpu_network = copy.deepcopy(network).cpu()
    return SearchPlan(
        study_name=preview.study_name,
        study=_study_state(preview.request, preview.study_name),
        baseline=baseline,
        dataset=str(preview.request.dataset_name),
        train_images=data.num_examples("train"),
        val_images=data.num_examples("val"),
        device=str(preview.device),
        groups=report_groups(config, cpu_network, space),
        quantized_size_bits=measure(network, shape).size_bits,
        smallest_size_bits=_pruned_size(network, high, shape, preview.device),
        largest_size_bits=_pruned_size(network, low, shape, preview.device),
        finetune_steps=request.finetune.steps if request.method == "joint" else 0,
        budget=_budget(preview),
        seconds=_time_trial(preview, network, middle),
        trials=request.trials,
        bit_choices=None if space.bits is None else space.bits.choices,
        bit_layers=0 if space.bits is None else len(space.bits.layers),
        lowerable_bits=_lowerable_bits(preview, cpu_network),
    )


__all__ = ["SearchPlan", "plan_search"]
