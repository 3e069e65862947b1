"""Per-group sensitivity, and the greedy allocation built on it (AIMET's greedy selection).

``scan_sensitivity`` prunes each group alone at a few ratios, without fine-tuning, and
measures validation accuracy on a fixed subset (``autoprune.data.validation_subset``).
``greedy_ratios`` then gives every group the largest ratio whose accuracy drop stays within
one shared tolerance; bisection on that tolerance meets a cost budget. A search uses it
twice: as informed start-up trials (``warm_start_allocations``), and as a search-free method
to beat in the benchmark.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoprune.data import validation_subset
from autoprune.prune import prune_
from autoprune.search.budget import SHAPE_LOW, BudgetAllocator, CostModel, removed_channels
from autoprune.search.space import SearchSpace
from autoprune.train import evaluate_batches

SCAN_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of each group's ratio range
SCAN_IMAGES = 2000
# the sizes (fractions of the unpruned network) of a two-objective search's warm-start points
WARM_START_SIZES = (0.8, 0.6, 0.45)
_BISECTION_STEPS = 40


@dataclass(frozen=True)
class Sensitivity:
    """Accuracy after pruning each group alone (no fine-tune), on ``images`` validation images.

    ``accuracy[group][i]`` belongs to ``ratios[group][i]``; ratio 0 (the parent) is implied.
    """

    parent_accuracy: float
    images: int
    ratios: dict[str, tuple[float, ...]]
    accuracy: dict[str, tuple[float, ...]]

    def drop(self, group: str, ratio: float) -> float:
        """Accuracy lost when ``group`` alone is pruned by ``ratio``: linear between scanned
        ratios, never smaller than at a smaller ratio (a noisy rise is not a gain)."""
        points = [(0.0, 0.0)] + [
            (r, self.parent_accuracy - a)
            for r, a in zip(self.ratios[group], self.accuracy[group], strict=True)
        ]
        worst, previous = 0.0, (0.0, 0.0)
        for r, d in points:
            if ratio <= r:
                x0, d0 = previous
                interpolated = d0 + (d - d0) * (ratio - x0) / (r - x0) if r > x0 else d
                return max(worst, interpolated)
            worst, previous = max(worst, d), (r, max(worst, d))
        return worst

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent_accuracy": self.parent_accuracy,
            "images": self.images,
            "ratios": {g: list(r) for g, r in self.ratios.items()},
            "accuracy": {g: list(a) for g, a in self.accuracy.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sensitivity:
        return cls(
            parent_accuracy=float(data["parent_accuracy"]),
            images=int(data["images"]),
            ratios={g: tuple(r) for g, r in data["ratios"].items()},
            accuracy={g: tuple(a) for g, a in data["accuracy"].items()},
        )


def scan_sensitivity(
    baseline: nn.Module,
    data: Any,
    space: SearchSpace,
    *,
    criterion: str,
    input_shape: Sequence[int],
    calibration: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    fractions: Sequence[float] = SCAN_FRACTIONS,
    max_images: int = SCAN_IMAGES,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Sensitivity:
    """Prune each group of ``space`` alone at ``low + f * (high - low)`` for each fraction."""
    device = next(baseline.parameters()).device
    batches = validation_subset(data, images=max_images)
    example = torch.zeros(1, *input_shape, device=device)
    ratios: dict[str, tuple[float, ...]] = {}
    accuracy: dict[str, tuple[float, ...]] = {}
    plan = {
        group.name: tuple(
            sorted({round(group.low + f * (group.high - group.low), 6) for f in fractions} - {0})
        )
        for group in space.groups
    }
    total, done = sum(len(scanned) for scanned in plan.values()), 0
    for group in space.groups:
        scanned = plan[group.name]
        results = []
        for ratio in scanned:
            pruned = copy.deepcopy(baseline)
            with torch.inference_mode(False), torch.enable_grad():  # Torch-Pruning traces
                prune_(
                    pruned,
                    {group.name: ratio},
                    criterion=criterion,
                    example_input=example,
                    calibration=calibration,
                    seed=seed,
                    residual=True,
                )
            results.append(evaluate_batches(pruned, batches).accuracy)
            done += 1
            if progress is not None:
                progress(done, total)
        ratios[group.name], accuracy[group.name] = scanned, tuple(results)
    return Sensitivity(
        parent_accuracy=evaluate_batches(baseline, batches).accuracy,
        images=sum(labels.numel() for _, labels in batches),
        ratios=ratios,
        accuracy=accuracy,
    )


def greedy_ratios(
    sensitivity: Sensitivity, space: SearchSpace, tolerance: float, *, grid: float = 0.01
) -> dict[str, float]:
    """Per group, the largest ratio in its range (on a ``grid``) losing at most ``tolerance``."""
    ratios = {}
    for group in space.groups:
        best, steps = group.low, math.floor((group.high - group.low) / grid + 1e-9)
        for i in range(steps + 1):
            ratio = min(group.high, group.low + i * grid)
            if sensitivity.drop(group.name, ratio) <= tolerance:
                best = ratio
            else:
                break
        ratios[group.name] = round(best, 6)
    return ratios


def greedy_allocation(
    sensitivity: Sensitivity,
    space: SearchSpace,
    fits: Callable[[dict[str, float]], bool],
) -> dict[str, float] | None:
    """The greedy ratios of the smallest tolerance whose network ``fits`` (a budget check);
    None when even the largest ratios do not fit."""
    high = 1.0
    if not fits(greedy_ratios(sensitivity, space, high)):
        return None
    low = 0.0
    if fits(greedy_ratios(sensitivity, space, low)):
        return greedy_ratios(sensitivity, space, low)
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if fits(greedy_ratios(sensitivity, space, middle)):
            high = middle
        else:
            low = middle
    return greedy_ratios(sensitivity, space, high)


def shape_of(ratios: Mapping[str, float], space: SearchSpace) -> dict[str, float]:
    """The allocation shape (``autoprune.search.budget``) of ``ratios``: each group's
    position in its range, floored at the shape's lower bound (so a group at ``low`` becomes
    ``SHAPE_LOW``: the allocator then prunes it a little, in proportion)."""
    shape = {}
    for group in space.groups:
        width = group.high - group.low
        position = (ratios[group.name] - group.low) / width if width > 0 else 1.0
        shape[group.name] = min(1.0, max(SHAPE_LOW, position))
    return shape


def warm_start_allocations(
    sensitivity: Sensitivity,
    space: SearchSpace,
    size_of: Callable[[dict[str, float]], float],
    fractions: Sequence[float] = WARM_START_SIZES,
) -> list[dict[str, float]]:
    """Greedy allocations at a few sizes (``fractions`` of the unpruned ``size_of({})``),
    snapped to the space's steps: informed start-up points for a two-objective search."""
    unpruned = size_of({})
    found: list[dict[str, float]] = []
    for fraction in fractions:
        ratios = greedy_allocation(
            sensitivity, space, lambda r, f=fraction: size_of(r) <= f * unpruned
        )
        if ratios is None:
            continue
        snapped = {}
        for group in space.groups:
            steps = round((ratios[group.name] - group.low) / group.step)
            snapped[group.name] = round(min(group.high, group.low + steps * group.step), 10)
        if snapped not in found:
            found.append(snapped)
    return found


def budget_warm_start_shapes(
    sensitivity: Sensitivity, allocator: BudgetAllocator
) -> list[tuple[str, dict[str, float]]]:
    """Informed start-up shapes of a budget search, labelled: the greedy allocation at the
    budget, and halfway between it and the uniform shape (so the sampler sees a direction)."""
    space = allocator.space
    chosen = greedy_allocation(sensitivity, space, allocator.fits)
    if chosen is None:
        return []
    greedy = shape_of(chosen, space)
    halfway = {name: (value + 1.0) / 2 for name, value in greedy.items()}
    return [("sensitivity greedy", greedy), ("sensitivity half-greedy", halfway)]


def front_warm_start_points(
    sensitivity: Sensitivity, space: SearchSpace, costs: CostModel, measure: str = "size"
) -> list[tuple[str, dict[str, float]]]:
    """Informed start-up ratios of a two-objective search whose cost is ``measure`` (size or
    bops), labelled with their target as a percent of the unpruned network's."""

    def cost_of(ratios: dict[str, float]) -> float:
        removed = [
            removed_channels(c, ratios.get(n, 0.0))
            for n, c in zip(costs.names, costs.channels, strict=True)
        ]
        return costs.cost(measure, removed)

    points = warm_start_allocations(sensitivity, space, cost_of)
    unpruned = cost_of({})
    label = "" if measure == "size" else f" {measure}"
    return [(f"sensitivity {100 * cost_of(p) / unpruned:.0f}%{label}", p) for p in points]
