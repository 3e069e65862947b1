"""``autoprune``: train quantized baselines, search per-layer pruning ratios, inspect fronts.

This module only parses options, calls the library and renders results. User errors
(``AutopruneError``) become one line on stderr and exit code 2; Ctrl-C exits 130 after
the study has saved every complete trial.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import optuna
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

import autoprune
from autoprune.config import (
    DATASET_TRAINING,
    EXPORT_FINETUNE,
    DataConfig,
    HalvingConfig,
    ModelConfig,
    TrainConfig,
)
from autoprune.data import load_dataset
from autoprune.device import resolve_device, tune_cpu_allocator
from autoprune.errors import AutopruneError, ConfigError
from autoprune.export import (
    DEFAULT_CRITERION,
    OnnxCheck,
    export_checkpoint_onnx,
    parse_ratios,
    prune_checkpoint,
    require_onnx,
)
from autoprune.metrics import BITS_PER_MB
from autoprune.models import MODELS
from autoprune.paths import check_output, write_text_atomically
from autoprune.quant import QuantSpec, parse_bit_choices
from autoprune.search import (
    DEFAULT_BITS,
    DEFAULT_MODEL,
    DEFAULT_STORAGE,
    FinetuneConfig,
    LayerwiseConfig,
    SearchRequest,
    SearchSession,
    load_existing_study,
    open_storage,
    study_summaries,
    trials_frame,
)
from autoprune.search.confirm import (
    DEFAULT_TOP,
    SEARCH_LENGTH,
    confirm_count,
    confirm_steps,
    default_seeds,
)
from autoprune.search.coverage import default_search_space, describe_groups
from autoprune.search.dryrun import plan_search
from autoprune.search.pareto import best_under, parse_size_limit, uniform_lead
from autoprune.search.plot import plot_format, require_plotting, save_front_plot, scatter_text
from autoprune.search.session import quant_from_options
from autoprune.search.storage import storage_file
from autoprune.search.study import delete_study, finished_trials
from autoprune.search.worker import StopControl, parse_duration, stop_on_signals
from autoprune.train import TrainingInterrupted, check_train_config, train_checkpoint
from autoprune_cli.choices import choices
from autoprune_cli.flags import cli_message, parse_sampler_options
from autoprune_cli.render import (
    LayerwiseObserver,
    RichSearchObserver,
    checkpoint_report,
    epoch_line,
    groups_table,
    history_table,
    layerwise_table,
    pareto_table,
    progress_bar,
    prune_table,
    report_json,
    training_summary_table,
    trial_line,
    uniform_lead_line,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Automatic pruning of quantized CNNs (BNN / DoReFa) with Bayesian optimisation.",
)
# Outside a terminal (logs, CI) rich would wrap tables at 80 columns; give them room.
console = Console(width=None if Console().is_terminal else 160)
errors = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)

ModelOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Model: {', '.join(MODELS.names())}; or your own network as "
        "package.module:factory (an importable function or class returning a float nn.Module, "
        "quantized for you; it gets num_classes/in_channels if it takes them).",
        show_default=DEFAULT_MODEL,
    ),
]
TrustModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="The package.module:factory the checkpoint or study was made from, when it is your "
        "own network: autoprune imports code named in a file only when you name it too.",
    ),
]
BitsOpt = Annotated[
    int | None,
    typer.Option(
        help="Weight and activation bits: 1 = binary (BNN), 2..8 = DoReFa k-bit, 32 = float.",
        show_default="2",
    ),
]
WbitsOpt = Annotated[int | None, typer.Option(help="Weight bits (1, 2..8, 32), overriding --bits.")]
AbitsOpt = Annotated[
    int | None, typer.Option(help="Activation bits (1, 2..8, 32), overriding --bits.")
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        help=f"1-bit weights: {choices('weights')}.",
        show_default="bnn",
    ),
]
EdgeBitsOpt = Annotated[
    str | None,
    typer.Option(
        help="First conv and classifier: 32 (float), 8, or net (the network's own bits).",
        show_default="32",
    ),
]
DatasetOpt = Annotated[
    str,
    typer.Option(help=f"{choices('dataset')}."),
]
SearchDatasetOpt = Annotated[
    str | None,
    typer.Option(
        help="As for train; with --checkpoint, the dataset (and data dir, image size) it records.",
        show_default="digits",
    ),
]
AugmentOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Training augmentation: {choices('augment')}.",
        show_default="light; imagefolder above 64 px and imagenet: imagenet",
    ),
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(envvar="AUTOPRUNE_DATA_DIR", help="Folder holding the dataset's files."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Data-loader processes decoding imagefolder/imagenet images (0: in this process).",
        show_default="min(4, CPUs)",
    ),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Image side for imagefolder/imagenet (other datasets have a fixed size).",
        show_default="224 for imagenet, median image side up to 224 for imagefolder",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA if present), cpu, cuda, cuda:N.")]
StorageOpt = Annotated[
    str,
    typer.Option(
        help="SQLite file, Optuna RDB URL (postgresql://...) "
        "or journal file (*.log) shared by workers."
    ),
]


def _recipe_default(field: str) -> str:
    """How a baseline-training default reads in --help: the general value, then the datasets
    with a recipe of their own (``DATASET_TRAINING``)."""
    general = getattr(TrainConfig(), field)
    own = [
        f"; {name}: {recipe[field]:g}"
        for name, recipe in DATASET_TRAINING.items()
        if field in recipe
    ]
    return f"{general:g}" + "".join(own)


EpochsOpt = Annotated[
    int | None,
    typer.Option(help="Baseline training epochs.", show_default=_recipe_default("epochs")),
]
TrainLrOpt = Annotated[
    float | None,
    typer.Option(
        help="Peak learning rate of baseline training (e.g. 5e-3 for Adam, 0.1 for SGD).",
        show_default=_recipe_default("lr"),
    ),
]
WarmupEpochsOpt = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="Linear learning-rate warmup of baseline training, in epochs.",
        show_default=_recipe_default("warmup_epochs"),
    ),
]
OnnxOpt = Annotated[
    Path | None,
    typer.Option(
        help="Also write the network as ONNX (quantizers as standard operators) to this path "
        "and check it with ONNX Runtime; needs pip install 'autoprune[onnx]'.",
    ),
]


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@app.command()
def search(
    model: ModelOpt = None,
    bits: BitsOpt = None,
    wbits: WbitsOpt = None,
    abits: AbitsOpt = None,
    weights: WeightsOpt = None,
    edge_bits: EdgeBitsOpt = None,
    dataset: SearchDatasetOpt = None,
    data_dir: DataDirOpt = None,
    workers: WorkersOpt = None,
    image_size: ImageSizeOpt = None,
    augment: AugmentOpt = None,
    trials: Annotated[int, typer.Option(min=1, help="Complete trials the study should hold.")] = 16,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check everything, list the groups, the reachable size range and an estimate "
            "of seconds per trial, then stop: no storage opened for writing, nothing trained.",
        ),
    ] = False,
    target_size: Annotated[
        str | None,
        typer.Option(
            help="Budget search: every trial's network at most this quantized size, as a "
            "percentage of the unpruned network (50%) or megabytes (0.1); one objective, accuracy."
        ),
    ] = None,
    target_bops: Annotated[
        str | None,
        typer.Option(
            help="Budget search on BOPs: a percentage of the unpruned network (40%) or a count."
        ),
    ] = None,
    warm_start: Annotated[
        str | None,
        typer.Option(
            help="sensitivity: scan each group pruned alone (no fine-tune) and queue the "
            "greedy allocations derived from it as the first trials."
        ),
    ] = None,
    cost: Annotated[
        str,
        typer.Option(
            help="Second objective without a target: size (quantized MB) or bops (GBOPs)."
        ),
    ] = "size",
    halving: Annotated[
        str | None,
        typer.Option(
            help="With a target: successive halving at these fine-tuning steps (e.g. 10 or "
            "0,10): a candidate goes on only if it ranks in the best third there, on 2,000 "
            "validation images; stopped trials count towards --trials.",
            metavar="STEPS",
        ),
    ] = None,
    confirm: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="With a target: after the trials, give the N best and every reference "
            "trial (uniform; greedy with --warm-start sensitivity) the export recipe "
            "(--confirm-steps); the pick and the verdict against uniform use those scores (a "
            "short fine-tune ranks deep prunings otherwise than the export does). 0 turns it "
            "off; rerunning a finished study adds only what is missing. "
            f"[default: {DEFAULT_TOP} with a target]",
            metavar="N",
            show_default=False,
        ),
    ] = None,
    confirm_steps_option: Annotated[
        str | None,
        typer.Option(
            "--confirm-steps",
            help="Length of --confirm: steps of the export recipe (one fine-tune per trial "
            "with the seed `autoprune export` uses, so the pick's score is its export's), or "
            f"'{SEARCH_LENGTH}': the search's own fine-tune, twice with fresh seeds. "
            f"[default: {EXPORT_FINETUNE.steps}, all of the export recipe]",
            metavar="STEPS",
            show_default=False,
        ),
    ] = None,
    search_bits: Annotated[
        str | None,
        typer.Option(
            help="On a DoReFa network: also search each inner layer's bit-width (weights "
            "and input together) among these, e.g. 2,4,8 (the network's own among them); "
            "costed exactly in size and BOPs, within the budget with a target.",
            metavar="BITS",
        ),
    ] = None,
    sampler: Annotated[str, typer.Option(help=f"{choices('sampler')}.")] = "gp",
    sampler_option: Annotated[
        list[str] | None,
        typer.Option(
            help="A keyword option of the sampler, key=value with a JSON value (repeatable), "
            "e.g. population_size=20 for nsga2, multivariate=false for tpe."
        ),
    ] = None,
    criterion: Annotated[
        str,
        typer.Option(help=f"Channel criterion: {choices('criterion')}."),
    ] = "angle-next",
    finetune_steps: Annotated[
        int, typer.Option(min=0, help="Fine-tuning steps per trial.")
    ] = FinetuneConfig.steps,
    finetune_lr: Annotated[
        float, typer.Option(help="Adam learning rate of fine-tuning.")
    ] = FinetuneConfig.lr,
    finetune_warmup: Annotated[
        float, typer.Option(help="Linear warmup of fine-tuning, as a fraction of its steps.")
    ] = FinetuneConfig.warmup,
    distill: Annotated[
        float,
        typer.Option(
            help="Weight of distillation from the unpruned network in fine-tuning (0: plain "
            "cross-entropy, 1: only the parent's soft targets)."
        ),
    ] = FinetuneConfig.distill,
    temperature: Annotated[
        float, typer.Option(help="Temperature of the distillation.")
    ] = FinetuneConfig.temperature,
    bn_batches: Annotated[
        int,
        typer.Option(
            min=0, help="Training batches that re-estimate BatchNorm statistics after pruning."
        ),
    ] = FinetuneConfig.bn_batches,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    epochs: EpochsOpt = None,
    lr: TrainLrOpt = None,
    warmup_epochs: WarmupEpochsOpt = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(help="Start from this trained checkpoint instead of training a baseline."),
    ] = None,
    search_space: Annotated[
        str | None, typer.Option(help="YAML search space (default: the model's bundled one).")
    ] = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    study: Annotated[
        str | None, typer.Option(help="Study name [default: model-quant-dataset].")
    ] = None,
    device: DeviceOpt = "auto",
    seed: int = 0,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Stop cleanly after this wall-clock time (e.g. 90m, 2h, 1h30m, 3600): the "
            "running trial is re-queued for the next run.",
        ),
    ] = None,
    max_train: Annotated[int | None, typer.Option(hidden=True)] = None,
    method: Annotated[
        str,
        typer.Option(help=f"{choices('method')}."),
    ] = "joint",
    evaluations: Annotated[
        int, typer.Option(min=2, help="layerwise: evaluations per group (3 probes first).")
    ] = 13,
    alpha: Annotated[
        float, typer.Option(help="layerwise: weight of the size terms in the objective.")
    ] = 1.0,
    retrain_steps: Annotated[
        int, typer.Option(min=0, help="layerwise: retraining steps after a group pruned >= 5 %.")
    ] = 200,
    final_steps: Annotated[
        int, typer.Option(min=0, help="layerwise: fine-tuning steps after the last group.")
    ] = 400,
) -> None:
    """Search per-group pruning ratios; rerunning the same command resumes the study.

    Start the same command N times (processes, GPUs with --device cuda:K, or machines sharing
    --storage) to run N workers on one study. SIGINT/SIGTERM stop it cleanly.
    """
    control = StopControl(parse_duration(timeout) if timeout is not None else None)
    quant = quant_from_options(
        checkpoint,
        bits=bits,
        wbits=wbits,
        abits=abits,
        binary_weights=weights,
        edge_bits=edge_bits,
    )
    request = SearchRequest(
        model=model,
        quant=quant,
        dataset=dataset,
        data_dir=data_dir,
        workers=workers,
        image_size=image_size,
        augment=augment,
        trials=trials,
        sampler=sampler,
        sampler_options=parse_sampler_options(sampler, sampler_option),
        criterion=criterion,
        finetune=FinetuneConfig(
            steps=finetune_steps,
            lr=finetune_lr,
            batch_size=batch_size,
            warmup=finetune_warmup,
            distill=distill,
            temperature=temperature,
            bn_batches=bn_batches,
        ),
        train=TrainConfig.recommended(
            dataset or DataConfig().name,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            warmup_epochs=warmup_epochs,
            seed=seed,
        ),
        storage=storage,
        study_name=study,
        checkpoint=checkpoint,
        search_space=search_space,
        device=device,
        seed=seed,
        max_train=max_train,
        method=method,
        target_size=target_size,
        target_bops=target_bops,
        warm_start=warm_start,
        cost=cost,
        halving=None if halving is None else HalvingConfig.parse(halving),
        search_bits=None if search_bits is None else parse_bit_choices(search_bits),
        layerwise=LayerwiseConfig(
            evaluations=evaluations,
            probes=min(3, evaluations),
            alpha=alpha,
            retrain_steps=retrain_steps,
            final_steps=final_steps,
            lr=finetune_lr,
            batch_size=batch_size,
        ),
    )
    budget = target_size is not None or target_bops is not None
    if confirm and not budget:
        raise AutopruneError(
            "--confirm rescores the best trials of a budget search: add --target-size or "
            "--target-bops, or drop --confirm (a front has no single best trial)"
        )
    top = confirm_count(confirm, budget=budget)
    if confirm_steps_option is not None and not top:
        raise AutopruneError(
            "--confirm-steps is the length of a budget search's confirmation, and this search "
            "confirms nothing (no target, or --confirm 0): drop --confirm-steps"
        )
    try:
        length = confirm_steps(confirm_steps_option)
    except ConfigError as error:
        raise AutopruneError(
            f"--confirm-steps {confirm_steps_option!r} is neither a number of steps >= 1 nor "
            f"'{SEARCH_LENGTH}': give e.g. --confirm-steps {EXPORT_FINETUNE.steps}"
        ) from error
    if dry_run:
        _print_plan(request, top, length)
        return
    session: SearchSession | None = None
    try:
        with stop_on_signals(control):
            session = _open_search(request)
            if method == "layerwise":
                _run_layerwise(session)
                return
            done = finished_trials(session.study)
            with progress_bar(console) as progress:
                observer = RichSearchObserver(
                    progress,
                    total_trials=trials,
                    done_trials=min(done, trials),
                    quantized_size_bits=session.reference.quantized_size_bits,
                )
                session.run(observer, control=control)
            if top:
                _confirm(session, top, length, control)
    except KeyboardInterrupt:
        # the run loop logs nothing (Optuna's optimize logged a traceback per failed trial)
        saved = (
            "every finished evaluation and group is saved"
            if method == "layerwise"
            else "every complete trial is saved and the running one re-queued"
        )
        _stopped(control, timeout, saved)  # exits, except at the --timeout limit
        if session is None or method == "layerwise":
            return
    frame = trials_frame(session.study)
    console.print(pareto_table(frame, f"Pareto front of {session.study_name}"))
    _print_uniform_lead(session.study)
    console.print(
        f"inspect again with: autoprune pareto --study {session.study_name} "
        f"--storage {request.storage}"
    )


def _stopped(control: StopControl, timeout: str | None, saved: str) -> None:
    """One line for a stop; exit 130 (SIGINT), 143 (SIGTERM), or return after --timeout."""
    reason = control.reason or "interrupt"
    if reason == "timeout":
        errors.print(f"time limit {timeout} reached: {saved}; rerun the same command to continue")
        return
    what = "terminated (SIGTERM)" if reason == "terminate" else "interrupted"
    errors.print(f"{what}: {saved}; rerun the same command to resume")
    raise typer.Exit(143 if reason == "terminate" else 130)


def _print_plan(
    request: SearchRequest, confirm_top: int = 0, confirm_length: int | None = None
) -> None:
    with console.status("checking the request, measuring sizes and timing a trial"):
        plan = plan_search(request)
    where = request.storage if isinstance(request.storage, str) else "the storage"
    console.print(
        f"dry run of study [bold]{plan.study_name}[/] in {where} ({plan.study}): nothing was "
        f"written or trained\ndata: {plan.dataset}, {plan.train_images:,} training and "
        f"{plan.val_images:,} validation images; device {plan.device}; baseline: {plan.baseline}"
    )
    space = "the default search space" if request.search_space is None else "the search space"
    console.print(groups_table(plan.groups, space))

    def size(bits: int) -> str:
        return f"{bits / BITS_PER_MB:.4g} MB ({100 * bits / plan.quantized_size_bits:.1f} %)"

    if plan.bit_choices is None:
        console.print(
            f"reachable size: {size(plan.smallest_size_bits)} with every group at its highest "
            f"ratio, to {size(plan.largest_size_bits)} at its lowest; the unpruned quantized "
            f"model is {plan.quantized_size_bits / BITS_PER_MB:.4g} MB"
        )
    else:
        widths = ",".join(map(str, plan.bit_choices))
        console.print(
            f"bit-widths searched: {widths} for each of {plan.bit_layers} inner layers "
            "(weights and input together)"
        )
        console.print(
            f"reachable size: {size(plan.smallest_size_bits)} with every group at its highest "
            f"ratio and every layer at {min(plan.bit_choices)} bits, to "
            f"{size(plan.largest_size_bits)} at the lowest ratios and {max(plan.bit_choices)} "
            f"bits; the unpruned quantized model is {plan.quantized_size_bits / BITS_PER_MB:.4g} MB"
        )
    if plan.lowerable_bits is not None:
        widths = ",".join(map(str, sorted({2, plan.lowerable_bits, 8})))
        console.print(
            f"hint: the inner layers are at {plan.lowerable_bits} bits; --search-bits {widths} "
            "searches each one's width with the ratios (lower precision can cost less accuracy "
            "than pruning at the same size: README, Mixed precision)"
        )
    if plan.budget is not None:
        console.print(f"budget: every trial's network {plan.budget}")
    parts = ", ".join(f"{name} {value:.2f}" for name, value in plan.seconds.items())
    total = plan.seconds_per_trial * plan.trials
    how = (
        f"fine-tuning extrapolated to {plan.finetune_steps} steps from a few timed"
        if plan.finetune_steps
        else "no fine-tuning per evaluation"
    )
    console.print(
        f"estimate: {plan.seconds_per_trial:.1f} s per trial ({parts}; {how}), about "
        f"{total / 60:.1f} min for {plan.trials} trials on this machine as loaded now"
    )
    if confirm_top:
        # the references a budget search queues: uniform, and the warm start's two
        contenders = confirm_top + 1 + 2 * (request.warm_start == "sensitivity")
        seeds = default_seeds(confirm_length)
        steps = plan.finetune_steps if confirm_length is None else confirm_length
        per_step = plan.seconds.get("finetune", 0.0) / max(plan.finetune_steps, 1)
        minutes = contenders * seeds * (steps * per_step + plan.seconds.get("evaluate", 0.0)) / 60
        how = (
            f"fine-tuned {seeds} more times each at the search's length"
            if confirm_length is None
            else f"given {confirm_length} steps of the export recipe"
        )
        console.print(
            f"then confirmation: the {confirm_top} best trials and the reference trials "
            f"(about {contenders} in all) {how}, about {minutes:.1f} min (--confirm 0 skips it)"
        )


def _open_search(request: SearchRequest) -> SearchSession:
    with progress_bar(console) as progress:
        task = progress.add_task("baseline training", total=None, visible=False)

        def on_step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, visible=True)

        session = SearchSession(request, baseline_progress=on_step)
        progress.update(task, visible=False)
    source = request.checkpoint or (
        f"cached baseline {session.baseline_path}"
        if session.baseline_reused
        else f"trained baseline, cached at {session.baseline_path}"
    )
    console.print(
        f"study [bold]{session.study_name}[/] in {request.storage} "
        f"({'new' if session.created else 'resumed'}); {len(session.space.groups)} groups "
        f"({', '.join(g.name for g in session.space.groups)}); "
        f"baseline val acc {100 * session.baseline_val_accuracy:.2f} % "
        f"({source}); device {session.device}"
    )
    return session


def _confirm(session: SearchSession, top: int, length: int | None, control: StopControl) -> None:
    how = (
        "with fresh fine-tune seeds"
        if length is None
        else f"with {length} steps of the export recipe (the seed `export` uses)"
    )
    console.print(f"confirming the {top} best trials and the reference trials {how}")
    what = "fresh seed" if length is None else f"after {length} steps, seed"

    def on_score(trial: int, round_: int, accuracy: float) -> None:
        console.print(f"  trial {trial}, {what} {round_ + 1}: val acc {100 * accuracy:.2f} %")

    found = session.confirm(
        top, steps=SEARCH_LENGTH if length is None else length, on_score=on_score, control=control
    )
    for each in found:
        rescored = " ".join(f"{100 * a:.2f}" for a in each.rescored)
        label = f" ({each.reference})" if each.reference else ""
        console.print(
            f"trial {each.trial}{label}: searched {100 * each.searched:.2f} %, confirmed "
            f"{rescored} %, mean {100 * each.mean:.2f} %",
            highlight=False,
        )


def _run_layerwise(session: SearchSession) -> None:
    with progress_bar(console) as progress:
        result = session.run_layerwise(
            LayerwiseObserver(progress, groups=len(session.space.groups))
        )
    console.print(layerwise_table(result, f"Layer-wise decisions of {session.study_name}"))
    console.print(
        f"result: val acc {100 * result.val_accuracy:.2f} %, test acc "
        f"{100 * result.test_accuracy:.2f} %, {result.params:,} parameters, "
        f"{result.size_bits / BITS_PER_MB:.4f} MB "
        f"({100 * result.size_bits / session.reference.quantized_size_bits:.1f} % of unpruned); "
        f"network saved at {result.checkpoint}"
    )
    console.print(pareto_table(trials_frame(session.study, pareto_only=False), session.study_name))
    console.print(
        f"export it with: autoprune export --study {session.study_name} "
        f"--storage {session.request.storage} --trial N --out PATH"
    )


@app.command()
def pareto(
    study: Annotated[str | None, typer.Option(help="Study name (optional if only one).")] = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    all_trials: Annotated[
        bool, typer.Option("--all", help="Every complete trial, not only the Pareto-optimal ones.")
    ] = False,
    csv: Annotated[
        str | None, typer.Option(help="Write CSV to this path ('-' for stdout).")
    ] = None,
    json: Annotated[
        str | None, typer.Option(help="Write JSON records to this path ('-' for stdout).")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw every trial, the front and the reference points to this image (.png, "
            ".pdf, .svg); needs pip install 'autoprune[plot]'.",
        ),
    ] = None,
    scatter: Annotated[
        bool,
        typer.Option(
            "--scatter", help="Also draw the trials and the front as text in the terminal."
        ),
    ] = False,
    best_under: Annotated[
        str | None,
        typer.Option(
            help="Only the most accurate trial of at most this size: MB (0.05) or percent of "
            "the unpruned quantized model (50%).",
        ),
    ] = None,
) -> None:
    """Show the accuracy/size Pareto front of a study."""
    if best_under is not None:
        parse_size_limit(best_under)  # a malformed size fails before the study is read
    if plot is not None:
        require_plotting()
        plot_format(plot)
    _require_existing(storage)
    study_file = {"the study's storage": storage_file(storage)}
    for flag, path in (("--csv", csv), ("--json", json), ("--plot", plot)):
        if path not in (None, "-"):
            check_output(path, inputs=study_file, what=flag)
    if csv not in (None, "-") and csv == json:
        raise AutopruneError(f"--csv and --json both name {csv}: give them different files")
    loaded = load_existing_study(open_storage(storage), study)
    frame = trials_frame(loaded, pareto_only=not all_trials)
    if best_under is not None:
        frame = _best_under(loaded, best_under)
    if plot is not None:
        console.print(f"wrote {save_front_plot(loaded, plot)}")
    if scatter:
        console.print(scatter_text(loaded), markup=False, highlight=False, end="")
    if csv is not None:
        text = frame.to_csv(index=False)
        sys.stdout.write(text) if csv == "-" else write_text_atomically(csv, text)
    if json is not None:
        text = frame.to_json(orient="records", indent=2) + "\n"
        sys.stdout.write(text) if json == "-" else write_text_atomically(json, text)
    if csv is None and json is None:
        what = "All complete trials" if all_trials else "Pareto front"
        if best_under is not None:
            what = f"Most accurate trial of at most {best_under}"
        console.print(pareto_table(frame, f"{what} of {loaded.study_name}"))
        if best_under is None:
            _print_uniform_lead(loaded)


def _print_uniform_lead(study: optuna.Study) -> None:
    lead = uniform_lead(study)
    if lead is not None:
        console.print(uniform_lead_line(lead), highlight=False)


def _best_under(study: optuna.Study, size: str) -> pd.DataFrame:
    """The one-row frame of ``best_under``, or a one-line error naming the smallest trial."""
    every = trials_frame(study, pareto_only=False)
    best = best_under(every, size)
    if best is None:
        smallest = (
            f"the smallest is {every['size_mb'].min():.4g} MB, "
            f"{every['size_pct_of_quantized'].min():.1f} %"
            if not every.empty
            else "it has no complete trial"
        )
        raise AutopruneError(
            f"no trial of study {study.study_name} is at most {size} ({smallest}): "
            "raise --best-under or search further"
        )
    frame = every.iloc[[int(best.name)]].reset_index(drop=True)
    frame.attrs["groups"] = every.attrs["groups"]
    return frame


@app.command()
def studies(
    storage: StorageOpt = DEFAULT_STORAGE,
    delete: Annotated[
        str | None,
        typer.Option(
            help="Delete this study and its trials from the storage (asks first, unless --yes)."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
) -> None:
    """List the studies in a storage with their trial counts."""
    _require_existing(storage)
    if delete is not None:
        _delete_study(storage, delete, yes)
        return
    rows = study_summaries(open_storage(storage))
    table = Table(title=f"Studies in {storage}")
    columns = (
        "study",
        "method",
        "model",
        "quant",
        "dataset",
        "complete",
        "stopped",
        "running",
        "failed",
    )
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Checkpoint file to write.")],
    model: ModelOpt = None,
    bits: BitsOpt = None,
    wbits: WbitsOpt = None,
    abits: AbitsOpt = None,
    weights: WeightsOpt = None,
    edge_bits: EdgeBitsOpt = None,
    dataset: DatasetOpt = "digits",
    data_dir: DataDirOpt = None,
    workers: WorkersOpt = None,
    image_size: ImageSizeOpt = None,
    augment: AugmentOpt = None,
    epochs: EpochsOpt = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    lr: TrainLrOpt = None,
    optimizer: Annotated[str, typer.Option(help=f"{choices('optimizer')}.")] = "adam",
    schedule: Annotated[str, typer.Option(help=f"{choices('schedule')}.")] = "cosine",
    warmup_epochs: WarmupEpochsOpt = None,
    weight_decay: Annotated[float, typer.Option(min=0, help="L2 weight decay.")] = 0.0,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="Mixed-precision training steps (bfloat16, else float16 with loss scaling).",
            show_default="on for CUDA, off on CPU",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Insist on continuing the unfinished run saved at --out.")
    ] = False,
    restart: Annotated[
        bool, typer.Option(help="Ignore what --out holds and train from scratch.")
    ] = False,
    pretrained: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Start from these weights instead of random ones: an autoprune checkpoint or a "
            "state dict (.pt/.pth), float or quantized, with this model's layer names and shapes.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    seed: int = 0,
    max_train: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Train a quantized baseline, saving --out after every epoch (``autoprune.load`` reads it).

    Rerunning the same command continues after the last saved epoch.
    """
    if resume and restart:
        raise AutopruneError("--resume and --restart exclude each other: pass only one")
    check_output(out, inputs={"the --pretrained weights": pretrained}, what="--out")
    train_config = TrainConfig.recommended(
        dataset,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        optimizer=optimizer,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        amp={None: "auto", True: "on", False: "off"}[amp],
    )
    check_train_config(train_config)  # before loading data
    spec = QuantSpec.from_options(  # before loading data: a bad combination fails at once
        bits=DEFAULT_BITS if bits is None else bits,
        wbits=wbits,
        abits=abits,
        binary_weights=weights,
        edge_bits=edge_bits,
    )
    resolved = resolve_device(device)
    data = load_dataset(
        dataset,
        data_dir=data_dir,
        seed=seed,
        device=resolved,
        max_train=max_train,
        workers=workers,
        image_size=image_size,
        augment=augment,
    )
    data_config = DataConfig.of(data, dataset, seed=seed, max_train=max_train)
    model_config = ModelConfig.for_data(model or DEFAULT_MODEL, spec, data)
    try:
        with progress_bar(console) as progress:
            task = progress.add_task("training", total=None)
            result = train_checkpoint(
                out,
                model_config,
                data_config,
                train_config,
                data,
                device=resolved,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                on_epoch=lambda record: progress.console.print(
                    epoch_line(record, train_config.epochs)
                ),
                resume="require" if resume else "restart" if restart else "auto",
                pretrained=pretrained,
            )
    except TrainingInterrupted as stopped:
        saved = (
            f"{stopped.path} holds {stopped.epochs_saved} of {stopped.epochs} epochs; "
            "rerun the same command to resume"
            if stopped.epochs_saved
            else "no epoch was complete, nothing was saved"
        )
        errors.print(f"interrupted: {saved}")
        raise typer.Exit(130) from None
    if result.epochs_resumed == train_config.epochs:
        console.print(
            f"{out} already holds all {train_config.epochs} epochs of this run: nothing to train"
        )
    console.print(history_table(result.history))
    console.print(training_summary_table(result))


@app.command()
def groups(
    target: Annotated[
        str,
        typer.Argument(
            help="A model name (see --model of train) or package.module:factory, or a checkpoint."
        ),
    ],
    bits: BitsOpt = None,
    in_channels: Annotated[int, typer.Option(min=1, help="Model input channels.")] = 3,
    image_size: Annotated[int, typer.Option(min=1, help="Model input side.")] = 32,
    num_classes: Annotated[int, typer.Option(min=1, help="Model classes.")] = 10,
    model: TrustModelOpt = None,
) -> None:
    """List a network's channel groups: channels and the share of the quantized size each
    controls, and whether the default search space covers it.

    A checkpoint brings its own quantization and input shape (and pruned channel counts).
    """
    info = describe_groups(
        target,
        bits=bits,
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        model=model,
    )
    console.print(groups_table(info))


@app.command("space")
def space_command(
    target: Annotated[
        str,
        typer.Argument(
            help="A model name (see --model of train) or package.module:factory, or a checkpoint."
        ),
    ],
    out: Annotated[Path, typer.Option(help="YAML file to write.")],
    bits: BitsOpt = None,
    in_channels: Annotated[int, typer.Option(min=1, help="Model input channels.")] = 3,
    image_size: Annotated[int, typer.Option(min=1, help="Model input side.")] = 32,
    num_classes: Annotated[int, typer.Option(min=1, help="Model classes.")] = 10,
    model: TrustModelOpt = None,
) -> None:
    """Write the search space a search uses by default (the model's bundled one, else every
    channel group) as an editable YAML file for search --search-space.
    """
    checkpoint = target if Path(target).is_file() else None
    check_output(out, inputs={"the checkpoint": checkpoint}, what="--out")
    default = default_search_space(
        target,
        bits=bits,
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        model=model,
    )
    origin = f"the bundled {default.bundled.name}" if default.bundled else "every channel group"
    header = (
        f"# The default search space of {target} ({origin}), written by `autoprune space`.\n"
        "# Ratios are fractions of channels removed: 'ratio' is every group's range, a group\n"
        "# written {name: ..., high: ...} overrides it; delete a group's line to leave it\n"
        f"# unpruned. Then: autoprune search --search-space {out.name} ...\n"
    )
    write_text_atomically(out, header + default.text)
    names = default.space.names
    shown = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
    console.print(f"wrote {out}: {len(names)} groups ({shown})")


@app.command("inspect")
def inspect_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (train, export, search).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    model: TrustModelOpt = None,
) -> None:
    """Per-layer size, MACs and BOPs of a checkpoint, its pruning and its recorded results."""
    report = autoprune.inspect(checkpoint, model=model)
    if as_json:
        sys.stdout.write(report_json(report))
    else:
        console.print(checkpoint_report(report))


@app.command()
def export(
    trial: Annotated[int, typer.Option(help="Trial number (see `autoprune pareto`).")],
    out: Annotated[Path, typer.Option(help="Checkpoint file to write.")],
    study: Annotated[str | None, typer.Option(help="Study name (optional if only one).")] = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    onnx: OnnxOpt = None,
    model: TrustModelOpt = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Steps of the export recipe (distilled from the unpruned network) "
            f"[default: {EXPORT_FINETUNE.steps}].",
        ),
    ] = None,
    epochs: Annotated[
        float | None,
        typer.Option(help="Length of the export recipe in epochs of the training split instead."),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay", help="Replay the trial's own short fine-tune (its search accuracy) instead."
        ),
    ] = False,
) -> None:
    """Rebuild a trial's pruned network, recover it with the export recipe (longer than a
    trial's fine-tune, distilled from the unpruned network) and save it physically smaller;
    the test split is scored once, here."""
    if onnx is not None:
        require_onnx()  # before the rebuild, not after it
    _require_existing(storage)
    study_file = {"the study's storage": storage_file(storage)}
    check_output(out, inputs=study_file, what="--out")
    if onnx is not None:
        check_output(onnx, inputs={**study_file, "the --out file": out}, what="--onnx")
    # a replay has its trial's own length; a length given twice is ambiguous
    lengths = [
        flag
        for flag, value in (("--finetune-steps", finetune_steps), ("--epochs", epochs))
        if value is not None
    ]
    if replay and lengths:
        raise AutopruneError(
            f"--replay repeats the trial's own fine-tune, whose length is stored: drop {lengths[0]}"
        )
    if len(lengths) == 2:
        raise AutopruneError("--finetune-steps and --epochs both set the export's length: keep one")
    recipe = (
        None if replay else replace(EXPORT_FINETUNE, steps=finetune_steps or EXPORT_FINETUNE.steps)
    )
    result = autoprune.export_trial(
        storage,
        trial,
        out,
        study=study,
        data_dir=data_dir,
        device=device,
        model=model,
        finetune=recipe,
        epochs=epochs,
    )
    how = "its own fine-tune replayed" if replay else f"{result.finetune_steps} export steps"
    if result.reused_promotion:  # fine-tuned once, when the search promoted it
        how += " (the search's promotion, reused)"
    console.print(
        f"wrote {result.path}: trial {result.trial}, {result.params:,} parameters, "
        f"{result.size_bits / BITS_PER_MB:.4f} MB; after {how}: val acc "
        f"{100 * result.val_accuracy:.2f} % (the search measured "
        f"{100 * result.searched_val_accuracy:.2f} % after its fine-tune), "
        f"test acc {100 * result.test_accuracy:.2f} %"
    )
    if onnx is not None:
        _write_onnx(result.path, onnx, model)


def _write_onnx(checkpoint: Path, path: Path, model: str | None) -> OnnxCheck:
    with console.status(f"exporting {path}"):
        check = export_checkpoint_onnx(checkpoint, path, model=model)
    console.print(f"wrote {path}; {check.summary()}")
    if not check.ok:
        errors.print(
            f"warning: {path} disagrees with PyTorch on more than "
            f"{100 * (1 - check.min_matching):.0f} % of the inputs: please report this"
        )
        raise typer.Exit(1)
    return check


@app.command()
def prune(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint to prune (from train, export or prune).")
    ],
    out: Annotated[Path, typer.Option(help="Pruned checkpoint to write.")],
    ratios: Annotated[
        str | None,
        typer.Option(
            help="Fraction of channels to remove per group: group=r,... (e.g. "
            "layers.0.0.conv1=0.5,residual:layers.1=0.25); an unknown name lists the groups."
        ),
    ] = None,
    uniform: Annotated[
        float | None, typer.Option(help="One fraction for every block-internal group.")
    ] = None,
    residual: Annotated[
        bool | None,
        typer.Option(
            "--residual/--no-residual",
            help="With --uniform: also prune the channels shared through residual additions "
            "(the default), or only the groups inside blocks.",
            show_default="--residual",
        ),
    ] = None,
    criterion: Annotated[
        str,
        typer.Option(
            help="Channel criterion: "
            f"{choices('criterion', taylor='calibrates on the checkpoint training data')}."
        ),
    ] = DEFAULT_CRITERION,
    seed: Annotated[int, typer.Option(help="Seed of the random criterion.")] = 0,
    data_dir: DataDirOpt = None,
    onnx: OnnxOpt = None,
    model: TrustModelOpt = None,
) -> None:
    """Prune a checkpoint physically by given ratios (no fine-tuning) and save it.

    A pruned checkpoint can be pruned again: ratios apply to the channels it has now.
    """
    check_output(out, inputs={"the checkpoint being pruned": checkpoint}, what="--out")
    if onnx is not None:
        require_onnx()
        pruned_files = {"the checkpoint being pruned": checkpoint, "the --out file": out}
        check_output(onnx, inputs=pruned_files, what="--onnx")
    report = prune_checkpoint(
        checkpoint,
        out,
        ratios=parse_ratios(ratios) if ratios is not None else None,
        uniform=uniform,
        residual=residual,
        criterion=criterion,
        seed=seed,
        data_dir=data_dir,
        model=model,
    )
    console.print(prune_table(report))
    after, before = report.after, report.before
    console.print(
        f"wrote {report.path}: {len(report.ratios)} groups pruned with {report.criterion}, "
        f"{after.params:,} parameters ({100 * after.params / before.params:.1f} %), "
        f"{after.size_mb:.4f} MB, {after.macs / 1e6:,.2f} MMACs "
        f"({100 * after.macs / before.macs:.1f} %); not fine-tuned"
    )
    if onnx is not None:
        _write_onnx(report.path, onnx, model)


def _delete_study(storage: str, name: str, yes: bool) -> None:
    opened = open_storage(storage)
    listed = {row["study"]: row for row in study_summaries(opened)}
    if name not in listed:
        where = "" if storage == DEFAULT_STORAGE else f" --storage {storage}"
        raise AutopruneError(f"no study named {name} in {storage}: see `autoprune studies{where}`")
    trials = f"{listed[name]['complete']} complete trials"
    if not yes:
        if not sys.stdin.isatty():
            raise AutopruneError(
                f"deleting study {name} ({trials}) needs confirmation: add --yes to delete "
                "without asking"
            )
        typer.confirm(f"delete study {name} ({trials}) from {storage}?", abort=True)
    deleted = delete_study(opened, name)
    groups = f" and its {len(deleted) - 1} layer-wise group studies" if len(deleted) > 1 else ""
    console.print(f"deleted study {name} ({trials}){groups} from {storage}")


def _require_existing(storage: str) -> None:
    """Reading commands must not create an empty SQLite file where none was."""
    path = storage_file(storage)  # a path, or a sqlite:/// URL's file; None for a server
    if path is not None and not path.exists():
        raise AutopruneError(
            f"storage {storage} does not exist: run `autoprune search` first or pass --storage"
        )


def main() -> None:
    _configure_logging()
    tune_cpu_allocator()  # process-wide, so the program asks for it, not the library
    try:
        app(standalone_mode=True)
    except AutopruneError as error:
        message = cli_message(error, app)  # the library names its parameters, not our flags
        # soft_wrap: one line however long (lists of model names exceed the 160 columns)
        errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


__all__ = ["app", "main", "trial_line"]
