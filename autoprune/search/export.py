"""Export a trial of a study as a physically smaller checkpoint.

A joint-search trial's candidate is pruned exactly as the search pruned it (same baseline,
criterion, ratios and seed), then recovered by the export recipe (``EXPORT_FINETUNE``: longer
than a trial's fine-tune, distilled from the unpruned parent) or, with
``finetune=None``, by the trial's own fine-tune replayed, which reproduces the accuracy the
search measured. A layer-wise trial's network was saved by the search and is read back (the
recipe then continues from it). Either is saved with its kept channels per group, so
``autoprune.load`` returns the pruned network. The test split is scored once, here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from torch import nn

from autoprune.checkpoint import file_digest, save_checkpoint
from autoprune.config import EXPORT_FINETUNE, FinetuneConfig, ModelConfig, RunConfig, require_number
from autoprune.data import load_dataset
from autoprune.device import resolve_device
from autoprune.errors import CheckpointError, ConfigError
from autoprune.metrics import measure
from autoprune.models import ModelSource, allow_source, load_checkpoint
from autoprune.paths import check_output
from autoprune.preprocess import preprocess_of
from autoprune.quant import QuantSpec
from autoprune.search.confirm import promoted_network
from autoprune.search.objective import CandidateEvaluator, recover
from autoprune.search.record import TrialRecord, trial_ratios
from autoprune.search.space import split_params
from autoprune.search.study import BASELINE_PATH_ATTR, run_config_of
from autoprune.train import evaluate

# the study attribute holding the image folder a search read (streaming datasets only)
DATA_DIR_ATTR = "autoprune_data_dir"


@dataclass(frozen=True)
class ExportedTrial:
    path: Path
    trial: int
    kept_channels: dict[str, int]
    size_bits: int
    params: int
    val_accuracy: float
    searched_val_accuracy: float
    test_accuracy: float
    finetune_steps: int = 0  # of the recipe applied (the trial's own when replayed)
    reused_promotion: bool = False  # the network the search's promotion fine-tuned, reloaded


def _load_searched_baseline(
    path: str, config: RunConfig, model_config: ModelConfig, device: Any, what: str
) -> nn.Module:
    """The study's baseline, refused if it is no longer the network the study searched (the
    checkpoint rewritten since, say): its trials' ratios would prune another network."""
    if config.baseline.checkpoint is not None and file_digest(path) != config.baseline.checkpoint:
        raise CheckpointError(
            f"the baseline {path} has changed since {what} searched it: restore that "
            "checkpoint, or search the new one in a new study"
        )
    loaded = load_checkpoint(
        path, model=model_config.source, device=device, what=f"baseline {path}"
    )

    held, searched = loaded.config, model_config
    # the quantization compared as specs, not dicts: a study stored before an option existed
    # lacks that key where the checkpoint holds its default
    fields = ("name", "num_classes", "in_channels", "image_size")
    compared = [(k, getattr(held, k), getattr(searched, k)) for k in fields]
    compared.append(("quantization", held.spec, searched.spec))
    for key, have, want in compared:
        if have != want:
            have, want = (v.label if isinstance(v, QuantSpec) else v for v in (have, want))
            raise CheckpointError(
                f"the baseline {path} holds {key} {have} where {what} searched {key} {want}: "
                "restore the network it searched, or search this one in a new study"
            )
    return loaded.model


def export_trial(
    study: optuna.Study,
    trial_number: int,
    out: str | Path,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    model: ModelSource = None,
    finetune: FinetuneConfig | None = EXPORT_FINETUNE,
    epochs: float | None = None,
    data: Any = None,
    baseline: Any = None,
) -> ExportedTrial:
    """Rebuild trial ``trial_number``'s network, recover it with ``finetune`` (None: the
    trial's own fine-tune, replayed) and save it at ``out``.

    ``model`` allows a study of a user-defined architecture (see
    ``autoprune.models.load_checkpoint``). ``data`` and ``baseline``: the loaded data and the
    unpruned network, for a study whose data a storage cannot reload (held in memory).
    ``epochs``: the recipe's length in epochs of the training split instead of its steps.
    """
    config = run_config_of(study)  # a study from an older autoprune is read upgraded
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    trial = trials.get(trial_number)
    if trial is None or trial.state != TrialState.COMPLETE:
        complete = sorted(n for n, t in trials.items() if t.state == TrialState.COMPLETE)
        raise ConfigError(
            f"study {study.study_name!r} has no complete trial {trial_number}: choose one of "
            f"{', '.join(map(str, complete)) or 'none'} (see the study's Pareto table)"
        )
    baseline_path = study.user_attrs.get(BASELINE_PATH_ATTR)
    if baseline is None and (not baseline_path or not Path(baseline_path).is_file()):
        raise CheckpointError(
            f"the study's baseline {baseline_path} is gone: rerun the study's search (with its "
            "number of trials) to rebuild it"
        )
    saved = TrialRecord.from_trial(trial).checkpoint  # a layer-wise trial's saved network
    out = check_output(
        out,
        inputs={"the study's baseline": baseline_path, f"trial {trial_number}'s network": saved},
        what="exported checkpoint",
    )
    resolved = resolve_device(device)
    what = f"study {study.study_name!r}"
    model_config = allow_source(config.model, model, what)
    if saved is not None and not Path(saved).is_file():
        raise CheckpointError(
            f"trial {trial_number}'s network {saved} is gone: rerun the study's layer-wise "
            "search to rebuild it"
        )
    data_config = config.data
    if data_dir is None:  # the folder the search read its images from
        data_dir = study.user_attrs.get(DATA_DIR_ATTR)
    reloaded = data is None  # data handed over is the caller's to vouch for
    if data is None:
        data = load_dataset(
            data_config.name,
            data_dir=data_dir,
            val_fraction=data_config.val_fraction,
            seed=data_config.seed,
            device=resolved,
            max_train=data_config.max_train,
            image_size=model_config.image_size,  # a streaming dataset: rebuilt at its size
            augment=data_config.augment,
        )
    if (
        reloaded
        and data_config.content is not None
        and getattr(data, "identity", None) != data_config.content
    ):
        raise ConfigError(
            f"the images in {data_dir or 'the data folder'} differ from those study "
            f"{study.study_name!r} searched: pass the data folder (data_dir) it was run with"
        )
    if finetune is None and epochs is not None:
        raise ConfigError(
            "`epochs` sets the export recipe's length, and a replayed trial has none: drop `epochs`"
        )
    if finetune is not None and epochs is not None:
        require_number("export epochs", epochs, low=0.0, strict=True)
        per_epoch = math.ceil(data.num_examples("train") / finetune.batch_size)
        finetune = replace(finetune, steps=max(1, round(epochs * per_epoch)))
    if baseline is None:
        baseline = _load_searched_baseline(baseline_path, config, model_config, resolved, what)
    baseline = baseline.eval()
    seed = config.search.seed + trial.number
    # a trial promoted with the export recipe at this length is that recipe's network (the
    # rebuild is deterministic with the same seed): reuse it rather than fine-tune again
    promoted = (
        promoted_network(study, trial_number, finetune.steps)
        if saved is None
        and finetune is not None
        and finetune == replace(EXPORT_FINETUNE, steps=finetune.steps)
        else None
    )
    if saved is not None or promoted is not None:
        # a layer-wise trial's network (recovered below), or the promotion's (recovered already)
        path = saved if saved is not None else promoted
        kind = "network" if saved is not None else "promoted network"
        loaded = load_checkpoint(
            path,
            model=model_config.source,
            device=resolved,
            what=f"trial {trial_number}'s {kind} {path}",
        )
        network, kept = loaded.model, loaded.kept_channels
        if saved is not None and finetune is not None:
            recover(finetune, network, data, teacher=baseline, seed=seed)
        steps = 0 if finetune is None else finetune.steps
    else:
        evaluator = CandidateEvaluator.for_run(config, baseline, data, model_config=model_config)
        if finetune is not None:
            evaluator = replace(evaluator, finetune_config=finetune)
        network, kept = evaluator.build(trial_ratios(trial), seed=seed)
        steps = evaluator.finetune_config.steps
    ratios, bits = split_params(trial_ratios(trial))
    val, test = evaluate(network, data, "val"), evaluate(network, data, "test")
    cost = measure(network, model_config.input_shape)
    save_checkpoint(
        out,
        network,
        model_config,
        kept_channels=kept,
        metadata={
            "study": study.study_name,
            "trial": trial_number,
            "ratios": ratios,
            "layer_bits": bits,
            "val_accuracy": val.accuracy,
            "test_accuracy": test.accuracy,
            "finetune": None if finetune is None else finetune.to_dict(),
            "run_config": config.to_dict(),  # the search that chose it, every default stated
        },
        preprocess=preprocess_of(data),
    )
    return ExportedTrial(
        path=Path(out),
        trial=trial_number,
        kept_channels=kept,
        size_bits=cost.size_bits,
        params=cost.params,
        val_accuracy=val.accuracy,
        searched_val_accuracy=trial.values[0],
        test_accuracy=test.accuracy,
        finetune_steps=steps,
        reused_promotion=promoted is not None,
    )
