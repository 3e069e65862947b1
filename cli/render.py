"""Rich rendering of library results: tables and progress. No computation lives here."""

from __future__ import annotations

import math

import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from autoprune.metrics import BITS_PER_MB
from autoprune.search import SearchObserver, compact_ratios


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _format(value: object, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def pareto_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column, justify in [
        ("trial", "right"),
        ("val acc %", "right"),
        ("size MB", "right"),
        ("% of quantized", "right"),
        ("x vs fp32", "right"),
        ("GBOPs", "right"),
        ("MMACs", "right"),
        ("note", "left"),
        ("ratios % (per group)", "left"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in frame.itertuples(index=False):
        table.add_row(
            str(row.trial),
            _format(100 * row.val_accuracy, ".2f"),
            _format(row.size_mb, ".4f"),
            _format(row.size_pct_of_quantized, ".1f"),
            _format(row.compression_vs_fp32, ".1f"),
            _format(row.bops / 1e9 if row.bops is not None else None, ".3f"),
            _format(row.macs / 1e6 if row.macs is not None else None, ".2f"),
            row.reference or "",
            row.ratios,
        )
    return table


def trial_line(trial: FrozenTrial, quantized_size_bits: int | None) -> str:
    """One line per finished trial."""
    if trial.state != TrialState.COMPLETE or trial.values is None:
        return f"trial {trial.number}: {trial.state.name.lower()}"
    size_bits = trial.user_attrs.get("size_bits", trial.values[1] * BITS_PER_MB)
    share = (
        f" ({100 * size_bits / quantized_size_bits:.1f} % of unpruned)"
        if quantized_size_bits
        else ""
    )
    seconds = sum(trial.user_attrs.get("seconds", {}).values())
    return (
        f"trial {trial.number:>3}: val acc {100 * trial.values[0]:6.2f} %  "
        f"size {trial.values[1]:.4f} MB{share}  {seconds:5.1f} s  "
        f"ratios % {compact_ratios(trial.params)}"
    )


class RichSearchObserver(SearchObserver):
    """Progress bars for trials and fine-tuning steps, and one printed line per trial."""

    def __init__(
        self, progress: Progress, *, total_trials: int, done_trials: int, quantized_size_bits: int
    ) -> None:
        self.progress = progress
        self.quantized_size_bits = quantized_size_bits
        self.trials_task = progress.add_task("trials", total=total_trials, completed=done_trials)
        self.steps_task = progress.add_task("fine-tune", total=1, visible=False)

    def trial_started(self, number: int, ratios: dict[str, float]) -> None:
        self.progress.update(
            self.steps_task, description=f"trial {number} fine-tune", completed=0, visible=True
        )

    def finetune_step(self, done: int, total: int) -> None:
        self.progress.update(self.steps_task, completed=done, total=total)

    def trial_finished(self, trial: FrozenTrial) -> None:
        self.progress.console.print(trial_line(trial, self.quantized_size_bits))
        if trial.state == TrialState.COMPLETE:
            self.progress.advance(self.trials_task)
        self.progress.update(self.steps_task, visible=False)
