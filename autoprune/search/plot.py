"""Pictures of a study's accuracy/size trade-off: a matplotlib figure and a terminal scatter.

The figure needs the ``plot`` extra (``pip install 'autoprune[plot]'``: matplotlib), imported
when a figure is drawn, never when this module is, so ``import autoprune`` stays light; the
terminal scatter needs nothing. The figure is built without ``pyplot`` (no global figure
state, any backend): a notebook shows the returned ``Figure`` inline, a script saves it
with ``save_front_plot``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autoprune.errors import ConfigError
from autoprune.paths import write_atomically
from autoprune.search.pareto import study_cost, trials_frame

PLOT_INSTALL_HINT = "pip install 'autoprune[plot]'"
SIZE_LABEL = "size (MB)"
BOPS_LABEL = "BOPs (billions)"
ACCURACY_LABEL = "validation accuracy (%)"
# Formats matplotlib's Agg canvas writes; anything else is refused before the work.
FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"drawing the front needs the {module.split('.')[0]} package, which is not "
            f"installed: {PLOT_INSTALL_HINT}"
        ) from error


def require_plotting() -> None:
    """Fail early, before any long work, when the ``plot`` extra is missing."""
    _require("matplotlib")


def plot_format(path: str | Path) -> str:
    """The image format of ``path``'s suffix; a ``ConfigError`` names those supported."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(
            f"cannot tell the image format of {path}: end the file name with "
            f"{', '.join('.' + f for f in FORMATS)}"
        )
    return suffix


def _frames(study: optuna.Study) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Every complete trial and the front, each with the cost axis as column ``x``, sorted
    along it, and the axis label: size, or BOPs for a study whose cost is BOPs."""
    every = trials_frame(study, pareto_only=False)
    if every.empty:
        raise ConfigError(
            f"study {study.study_name} has no complete trial to draw: run the search first"
        )
    front = trials_frame(study, pareto_only=True)
    bops = study_cost(study) == "bops"
    for frame in (every, front):
        frame["x"] = frame["bops"] / 1e9 if bops else frame["size_mb"]
    return every, front.sort_values("x"), BOPS_LABEL if bops else SIZE_LABEL


def plot_front(study: optuna.Study, *, ax: Any = None) -> Any:
    """A figure of every complete trial (grey), the Pareto front (highlighted, connected) and
    the labelled reference points (unpruned, uniform ratios); drawn on ``ax`` if given.

    Returns the matplotlib ``Figure``.
    """
    figure_module = _require("matplotlib.figure")
    every, front, x_label = _frames(study)
    if ax is None:
        figure = figure_module.Figure(figsize=(7, 4.5), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    ax.scatter(
        every["x"],
        100 * every["val_accuracy"],
        s=18,
        color="0.65",
        label=f"trials ({len(every)})",
        zorder=1,
    )
    ax.plot(
        front["x"],
        100 * front["val_accuracy"],
        marker="o",
        markersize=6,
        color="tab:blue",
        label=f"Pareto front ({len(front)})",
        zorder=2,
    )
    references = every[every["reference"].astype(str) != ""]
    ax.scatter(
        references["x"],
        100 * references["val_accuracy"],
        s=50,
        marker="D",
        facecolors="none",
        edgecolors="tab:red",
        label="reference points",
        zorder=3,
    )
    for _, row in references.iterrows():
        ax.annotate(
            str(row["reference"]),
            (row["x"], 100 * row["val_accuracy"]),
            textcoords="offset points",
            xytext=(5, -12),
            fontsize=8,
            color="tab:red",
        )
    ax.set_xlabel(x_label)
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title(f"Pareto front of {study.study_name}")
    ax.margins(x=0.1)  # room for the labels of the end points
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure


def save_front_plot(study: optuna.Study, path: str | Path) -> Path:
    """Draw ``plot_front`` and write it to ``path`` atomically, in the format of its suffix."""
    image_format = plot_format(path)
    figure = plot_front(study)
    _require("matplotlib.backends.backend_agg").FigureCanvasAgg(figure)
    return write_atomically(path, lambda partial: figure.savefig(partial, format=image_format))


def _cell(value: float, low: float, high: float, cells: int) -> int:
    return 0 if high <= low else round((value - low) / (high - low) * (cells - 1))


def scatter_text(study: optuna.Study, *, width: int = 64, height: int = 16) -> str:
    """The same picture as plain text for a terminal: ``.`` a trial, ``*`` a Pareto-optimal
    one, a digit a reference point (named below the plot); size (or BOPs) across, accuracy up.

    No package needed: a grid of characters, the same in a terminal, a log or a pipe.
    """
    every, front, x_label = _frames(study)
    sizes, accuracies = every["x"], 100 * every["val_accuracy"]
    x_low, x_high = float(sizes.min()), float(sizes.max())
    y_low, y_high = float(accuracies.min()), float(accuracies.max())
    grid = [[" "] * width for _ in range(height)]
    on_front = set(front["trial"])
    references: list[str] = []
    # references last, so their digits stay visible where points coincide
    ordered = sorted(every.itertuples(), key=lambda row: bool(str(row.reference)))
    for row in ordered:
        column = _cell(row.x, x_low, x_high, width)
        line = height - 1 - _cell(100 * row.val_accuracy, y_low, y_high, height)
        mark = "*" if row.trial in on_front else "."
        if str(row.reference):
            mark = str(len(references) % 10)
            references.append(f"{mark} {row.reference} (trial {row.trial})")
        if grid[line][column] != "*" or mark != ".":
            grid[line][column] = mark
    labels = [f"{y_high:6.2f} |", *["       |"] * (height - 2), f"{y_low:6.2f} |"]
    lines = [study.study_name, f"{ACCURACY_LABEL}"]
    lines += [label + "".join(cells) for label, cells in zip(labels, grid, strict=True)]
    lines.append("       +" + "-" * width)
    left, right = f"{x_low:.4g}", f"{x_high:.4g}"
    lines.append(" " * 8 + left + right.rjust(width - len(left)))
    lines.append(" " * 8 + x_label.center(width).rstrip())
    lines.append("  . trial   * Pareto-optimal trial")
    lines += [f"  {reference}" for reference in references]
    return "\n".join(lines) + "\n"
