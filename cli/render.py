"""Rich rendering of library results: tables and progress. No computation lives here."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from autoprune.export import LayerChange, PruneReport
from autoprune.metrics import BITS_PER_MB
from autoprune.search import (
    GroupDecision,
    LayerwiseResult,
    SearchObserver,
    compact_bits,
    compact_ratios,
)
from autoprune.search.coverage import GroupsReport
from autoprune.search.pareto import UniformLead
from autoprune.search.record import TrialRecord, trial_ratios
from autoprune.train import CheckpointReport, EpochRecord, TrainedCheckpoint


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


def group_legend(groups: Sequence[str]) -> str:
    """``groups: 1 stem.0, 2 blocks.0.pointwise.0, ...``: the order of the ratio columns."""
    return "groups: " + ", ".join(f"{i} {name}" for i, name in enumerate(groups, 1))


def pareto_table(frame: pd.DataFrame, title: str) -> Table:
    groups = frame.attrs.get("groups") or []
    caption = f"ratios % in the order of the {group_legend(groups)}" if groups else None
    # confirmed trials show their confirmed score beside the search's
    confirmed = "confirmed_accuracy" in frame and bool(frame["confirmed_accuracy"].notna().any())
    steps = frame.attrs.get("confirmed_steps")
    if confirmed:
        how = (
            "mean of fresh fine-tune seeds"
            if steps is None
            else f"val acc after {steps} steps of the export recipe"
        )
        caption = "; ".join(filter(None, [f"confirmed %: {how}", caption]))
    table = Table(title=title, caption=caption)
    widths = "bits" in frame and bool(frame["bits"].astype(bool).any())  # searched bit-widths
    for column, justify in [
        ("trial", "right"),
        ("val acc %", "right"),
        *([("confirmed %", "right")] if confirmed else []),
        ("size MB", "right"),
        ("% of quantized", "right"),
        ("x vs fp32", "right"),
        ("GBOPs", "right"),
        ("MMACs", "right"),
        ("note", "left"),
        ("ratios % (per group)", "left"),
        *([("bits (per layer)", "left")] if widths else []),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in frame.itertuples(index=False):
        table.add_row(
            str(row.trial),
            _format(100 * row.val_accuracy, ".2f"),
            *([_format(100 * row.confirmed_accuracy, ".2f")] if confirmed else []),
            _format(row.size_mb, ".4f"),
            _format(row.size_pct_of_quantized, ".1f"),
            _format(row.compression_vs_fp32, ".1f"),
            _format(row.bops / 1e9 if row.bops is not None else None, ".3f"),
            _format(row.macs / 1e6 if row.macs is not None else None, ".2f"),
            row.reference or "",
            row.ratios,
            *([row.bits] if widths else []),
        )
    return table


def uniform_lead_line(lead: UniformLead) -> str:
    """One line: does a budget search's best trial beat uniform pruning beyond noise?"""
    if lead.lead <= 0:
        return (
            f"no trial beats uniform pruning at the same budget (trial {lead.uniform_trial}, "
            f"{100 * lead.uniform_accuracy:.2f} % val acc): the search found no better "
            "allocation"
        )
    if lead.steps is not None and lead.rescored:
        scores = f" (after {lead.steps} steps of the export recipe)"
    elif lead.rescored:
        scores = f" (means of {lead.rescored} fresh fine-tunes each)"
    else:
        scores = " (one fine-tune each)"
    text = (
        f"best trial {lead.best_trial} leads uniform pruning at the same budget (trial "
        f"{lead.uniform_trial}) by {100 * lead.lead:+.2f} pt of validation accuracy{scores}"
    )
    noise = lead.noise
    if noise is None:
        return text + " (the study did not record its validation images: no noise estimate)"
    if lead.within_noise:
        verdict = "within noise"
    elif lead.rescored:
        verdict = f"beyond noise; export it with autoprune export --trial {lead.best_trial}"
    else:
        verdict = (
            "beyond noise on the images, but the best of many single fine-tunes overstates "
            "itself: rerun the search with --confirm 2 before trusting it"
        )
    seeds_known = lead.seed_variance is not None and lead.rescored
    where = f"{lead.val_images:,} images" if lead.val_images else "the fresh seeds"
    if seeds_known and lead.val_images:
        where += " and the fresh seeds"
    return f"{text}; two standard errors on {where} are {100 * noise:.2f} pt: {verdict}"


def trial_line(trial: FrozenTrial, quantized_size_bits: int | None) -> str:
    """One line per finished trial."""
    record = TrialRecord.from_trial(trial)
    stopped = trial.state == TrialState.PRUNED and record.stopped_at in trial.intermediate_values
    if not stopped and (trial.state != TrialState.COMPLETE or trial.values is None):
        return f"trial {trial.number}: {trial.state.name.lower()}"
    size = "size ?"
    if record.size_bits is not None:
        size = f"size {record.size_bits / BITS_PER_MB:.4f} MB"
        if quantized_size_bits:
            size += f" ({100 * record.size_bits / quantized_size_bits:.1f} % of unpruned)"
    seconds = sum((record.seconds or {}).values())
    ratios = trial_ratios(trial)
    if stopped:  # by successive halving: its score is the rung's, on the validation subset
        score = 100 * trial.intermediate_values[record.stopped_at]
        return (
            f"trial {trial.number:>3}: stopped after {record.stopped_at} steps (subset acc "
            f"{score:6.2f} %)  {size}  {seconds:5.1f} s  ratios % {compact_ratios(ratios)}"
        )
    widths = compact_bits(ratios)
    return (
        f"trial {trial.number:>3}: val acc {100 * trial.values[0]:6.2f} %  "
        f"{size}  {seconds:5.1f} s  "
        f"ratios % {compact_ratios(ratios)}" + (f"  bits {widths}" if widths else "")
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
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):  # both count
            self.progress.advance(self.trials_task)
        self.progress.update(self.steps_task, visible=False)


class LayerwiseObserver(SearchObserver):
    """Progress of the layer-wise method: groups, the current group's evaluations, retraining."""

    def __init__(self, progress: Progress, *, groups: int) -> None:
        self.progress = progress
        self.groups_task = progress.add_task("groups", total=groups)
        self.steps_task = progress.add_task("retrain", total=1, visible=False)

    def group_started(self, position: int, total: int, group: str) -> None:
        self.progress.update(self.groups_task, completed=position, description=f"group {group}")

    def evaluation_finished(self, group: str, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            self.progress.console.print(f"  {group} evaluation {trial.number}: {trial.state.name}")
            return
        record = TrialRecord.from_trial(trial)
        self.progress.console.print(
            f"  {group} ratio {100 * trial.params[group]:5.1f} %: objective {trial.value:8.4f}, "
            f"val loss {record.val_loss:.4f}, val acc {100 * (record.val_accuracy or 0):.2f} %"
        )

    def finetune_step(self, done: int, total: int) -> None:
        self.progress.update(self.steps_task, completed=done, total=total, visible=done < total)

    def group_finished(self, decision: GroupDecision) -> None:
        self.progress.console.print(
            f"{decision.group}: pruned {100 * decision.ratio:.1f} %"
            f"{' and retrained' if decision.retrained else ''}"
        )
        self.progress.advance(self.groups_task)


def layerwise_table(result: LayerwiseResult, title: str) -> Table:
    table = Table(title=title)
    for column in ("order", "group", "ratio %", "kept", "objective", "val loss", "val acc %"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for decision in result.decisions:
        table.add_row(
            str(decision.position),
            decision.group,
            f"{100 * decision.ratio:.1f}",
            str(result.kept_channels.get(decision.group, "-")),
            f"{decision.objective:.4f}",
            f"{decision.val_loss:.4f}",
            f"{100 * decision.val_accuracy:.2f}",
        )
    return table


def epoch_line(record: EpochRecord, epochs: int) -> str:
    """One line per finished training epoch."""
    return (
        f"epoch {record.epoch:>3}/{epochs}: train loss {record.train_loss:.4f}  "
        f"val acc {100 * record.val_accuracy:6.2f} %  lr {record.lr:.2e}  {record.seconds:6.1f} s"
    )


def history_table(history: Sequence[EpochRecord], title: str = "Epochs") -> Table:
    table = Table(title=title)
    for column in ("epoch", "train loss", "val acc %", "lr (last step)", "seconds"):
        table.add_column(column, justify="right")
    for record in history:
        table.add_row(
            str(record.epoch),
            _format(record.train_loss, ".4f"),
            _format(100 * record.val_accuracy, ".2f"),
            _format(record.lr, ".2e"),
            _format(record.seconds, ".1f"),
        )
    return table


def _key_value_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in rows:
        table.add_row(key, value)
    return table


def training_summary_table(result: TrainedCheckpoint) -> Table:
    """The final results of ``autoprune train``."""
    rows = [
        ("val accuracy", f"{100 * result.val_accuracy:.2f} %"),
        ("test accuracy", f"{100 * result.test_accuracy:.2f} %"),
        ("parameters", f"{result.params:,}"),
        ("size", f"{result.size_bits / BITS_PER_MB:.4f} MB"),
        ("MACs", f"{result.macs / 1e6:,.2f} M"),
        ("BOPs", f"{result.bops / 1e9:,.3f} G"),
        ("training time (all epochs)", f"{result.seconds:.1f} s"),
        ("wall time (this run)", f"{result.wall_seconds:.1f} s"),
        ("precision", result.precision),
    ]
    if result.epochs_resumed:
        rows.append(("resumed after epoch", str(result.epochs_resumed)))
    return _key_value_table(f"Trained {result.path}", rows)


def layer_table(report: CheckpointReport) -> Table:
    """Per-layer cost with a totals row (MB and KiB mean 2**20 and 2**10 bytes)."""
    table = Table(title=f"Layers of {report.model.name} {report.quant_label}")
    columns = ("layer", "kind", "in ch", "out ch", "w bits", "in bits", "params", "size KiB")
    for column in (*columns, "MACs", "BOPs"):
        table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
    for layer in report.cost.layers:
        table.add_row(
            layer.name,
            layer.kind,
            str(layer.in_channels),
            str(layer.out_channels),
            str(layer.weight_bits),
            str(layer.input_bits),
            f"{layer.params:,}",
            f"{layer.size_bits / 8 / 1024:,.2f}",
            f"{layer.macs:,}",
            f"{layer.bops:,}",
        )
    cost = report.cost
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        "",
        "",
        "",
        f"{cost.params:,}",
        f"{cost.size_bits / 8 / 1024:,.2f}",
        f"{cost.macs:,}",
        f"{cost.bops:,}",
    )
    return table


def kept_channels_table(report: CheckpointReport) -> Table:
    table = Table(title="Kept channels (pruned groups)")
    for column in ("group", "kept", "of", "kept %"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for name, kept in report.kept_channels.items():
        total = report.original_channels.get(name)
        share = f"{100 * kept / total:.1f}" if total else "-"
        table.add_row(name, str(kept), str(total or "-"), share)
    return table


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def checkpoint_report(report: CheckpointReport) -> Group:
    """Everything ``autoprune inspect`` shows, top to bottom."""
    model = report.model
    cost = report.cost
    parts: list[object] = [
        f"[bold]{report.path}[/]: {model.name} {report.quant_label}, input "
        f"{'x'.join(map(str, model.input_shape))}, {model.num_classes} classes; "
        f"{cost.params:,} parameters, {cost.size_mb:.4f} MB, {cost.macs / 1e6:,.2f} MMACs, "
        f"{cost.bops / 1e9:,.3f} GBOPs",
        layer_table(report),
    ]
    if report.kept_channels:
        parts.append(kept_channels_table(report))
    rows = [
        ("val accuracy", _percent(report.val_accuracy)),
        ("test accuracy", _percent(report.test_accuracy)),
    ]
    if report.epochs_done is not None and report.train_config is not None:
        state = "complete" if report.training_complete else "resumable"
        rows.append(("epochs", f"{report.epochs_done} of {report.train_config.epochs} ({state})"))
    if report.seconds is not None:
        rows.append(("training time", f"{report.seconds:.1f} s"))
    if report.train_config is not None:
        rows += [(f"train.{k}", _plain(v)) for k, v in asdict(report.train_config).items()]
    for key, value in report.other_metadata.items():
        if isinstance(value, dict):  # e.g. the data config: one row per entry
            rows += [(f"{key}.{k}", _plain(v)) for k, v in value.items()]
        else:
            rows.append((key, _plain(value)))
    parts.append(_key_value_table("Metadata", rows))
    if report.history:
        parts.append(history_table(report.history, "Training history"))
    return Group(*parts)  # type: ignore[arg-type]


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f} %"


def report_json(report: CheckpointReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str) + "\n"


def _change(before: int, after: int, scale: float = 1.0, spec: str = ",.0f") -> str:
    if before == after:
        return format(before / scale, spec)
    return f"{format(before / scale, spec)} → {format(after / scale, spec)}"


def _prune_row(table: Table, row: LayerChange, *, channels: bool = True) -> None:
    table.add_row(
        row.name,
        _change(row.out_before, row.out_after) if channels else "",
        _change(row.params_before, row.params_after),
        _change(row.size_bits_before, row.size_bits_after, 8 * 1024, ",.2f"),
        _change(row.macs_before, row.macs_after),
        _change(row.bops_before, row.bops_after),
    )


def prune_table(report: PruneReport) -> Table:
    """Per-layer cost before → after pruning (conv and linear rows, BatchNorms summed), totals
    and the share kept (KiB: 2**10 bytes)."""
    table = Table(title=f"Pruned {report.source} → {report.path} ({report.criterion})")
    for column in ("layer", "out ch", "params", "size KiB", "MACs", "BOPs"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in report.compute_layers:
        _prune_row(table, row)
    if report.batchnorm_layers:
        _prune_row(table, report.batchnorm_total, channels=False)
    before, after = report.before, report.after
    table.add_section()
    table.add_row(
        "total",
        "",
        _change(before.params, after.params),
        _change(before.size_bits, after.size_bits, 8 * 1024, ",.2f"),
        _change(before.macs, after.macs),
        _change(before.bops, after.bops),
    )
    table.add_row(
        "kept %",
        "",
        *(
            f"{100 * new / old:.1f}" if old else "-"
            for old, new in (
                (before.params, after.params),
                (before.size_bits, after.size_bits),
                (before.macs, after.macs),
                (before.bops, after.bops),
            )
        ),
    )
    return table


def groups_table(report: GroupsReport, space: str = "the default search space") -> Table:
    """One row per channel group: channels, its share of the quantized size, searched or not
    (by ``space``, as the caption names it)."""
    shape = "x".join(map(str, report.input_shape))
    table = Table(
        title=f"Channel groups of {report.model} ({report.quant}, input {shape}, "
        f"{report.size_bits / BITS_PER_MB:.4f} MB quantized)",
        caption=f"{space} ({len(report.searched)} groups) controls "
        f"{100 * report.searched_share:.1f} % of the quantized size",
    )
    for column in ("group", "kind", "channels", "% of size", "searched"):
        table.add_column(column, justify="left" if column in ("group", "kind") else "right")
    searched = set(report.searched)
    for group in report.groups:
        table.add_row(
            group.name,
            "residual" if group.residual else "block",
            str(group.channels),
            f"{100 * group.share:.1f}",
            "yes" if group.name in searched else "no",
        )
    return table
