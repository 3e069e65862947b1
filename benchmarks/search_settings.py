"""What the search benchmarks (``search_quality.py``, ``search_fronts.py``) share: the trained
checkpoints they start from, the criterion, the search space, and where a search's time goes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from autoprune.search.record import TrialRecord
from autoprune.search.space import bundled_search_space_file

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


@dataclass(frozen=True)
class Setting:
    """A trained checkpoint and where its dataset lies on this machine."""

    checkpoint: str
    data_dir: str


SETTINGS = {
    "w2a2-fmnist": Setting("benchmarks/checkpoints/resnet20-w2a2-fmnist.pt", FASHION_MNIST),
    "w4a4-fmnist": Setting("benchmarks/checkpoints/resnet20-w4a4-fmnist.pt", FASHION_MNIST),
    "bnn-fmnist": Setting("benchmarks/checkpoints/resnet20-bnn-fmnist.pt", FASHION_MNIST),
    # the JPEG copy of CIFAR-10 beside the project (../shared/data/README.md)
    "w2a2-cifar10": Setting(
        "benchmarks/checkpoints/resnet20-w2a2-cifar10.pt", "../shared/data/cifar10-jpg.tar.gz"
    ),
}
CRITERION = "angle-next"
PHASES = ("finetune", "evaluate", "prune")


def residual_space_file(out: Path, model: str) -> Path:
    """The bundled space plus every residual group, written to ``out``: every method of a
    benchmark searches or allocates over the same groups."""
    bundled = bundled_search_space_file(model)
    path = out / f"space-{model}-residual.yaml"
    text = bundled.read_text() if bundled else f"model: {model}\n"
    path.write_text(text.rstrip("\n") + "\nresidual: true\n")
    return path


def time_split(study: optuna.Study) -> dict[str, float]:
    """Seconds of the study's finished trials (complete, or stopped by halving) per phase: the
    fine-tune, the evaluation (rungs included), the pruning with its tracing (each trial's
    record), and ``other`` (sampler, storage, anything else between a trial's start and end)."""
    totals = dict.fromkeys((*PHASES, "other"), 0.0)
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name not in ("COMPLETE", "PRUNED") or trial.datetime_complete is None:
            continue
        wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
        seconds = TrialRecord.from_trial(trial).seconds or {}
        for phase in PHASES:
            totals[phase] += seconds.get(phase, 0.0)
        totals["other"] += wall - sum(seconds.values())
    return totals


def time_split_rows(storage: str) -> list[str]:
    """Markdown rows (after ``TIME_SPLIT_HEADER``) of ``time_split`` for every study."""
    rows = []
    for name in sorted(optuna.study.get_all_study_names(storage)):
        if "/" in name:  # one group's study of the layer-wise method: it times nothing
            continue
        totals = time_split(optuna.load_study(study_name=name, storage=storage))
        wall = sum(totals.values())
        if wall > 0:
            shares = " | ".join(f"{100 * totals[p] / wall:.1f}" for p in (*PHASES, "other"))
            rows.append(f"| {name} | {wall:.0f} | {shares} |")
    return rows


TIME_SPLIT_HEADER = [
    "| study | trials' wall s | fine-tune % | evaluate % | prune+trace % | other % |",
    "|---|---:|---:|---:|---:|---:|",
]
