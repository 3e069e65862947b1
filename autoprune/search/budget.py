"""Budgets: every trial of a budget search meets a size or BOPs target by construction.

A budget search has one objective, validation accuracy. The sampler does not propose ratios;
it proposes an allocation *shape* ``s_g`` in ``[SHAPE_LOW, 1]`` per group, and one global
factor ``lam`` turns it into ratios:

    ratio_g(lam) = low_g + (high_g - low_g) * min(1, lam * s_g)

Each ratio grows with ``lam``, and removing channels never adds cost, so the cost falls as
``lam`` grows; bisection finds the smallest ``lam`` whose network fits the budget: the least
pruning with that shape that meets it. Whole channels leave some slack, so channels are then
given back one at a time to the groups the shape prunes least while the network still fits.
Ratios are stored as ``removed / channels``, so they rebuild exactly the network costed.

The cost of a candidate is computed, not measured, by ``CostModel``: with ``r_g`` channels
removed from group ``g``, every layer's weight count is (kept inputs) x (kept outputs) x a
constant, so size and BOPs are quadratic polynomials in ``r``:

    cost(r) = c0 - sum_g a_g r_g + sum_{g <= h} b_gh r_g r_h

``CostModel.fit`` identifies the coefficients from exact measurements of a few shrunk copies
(each group alone at two depths, then each pair of groups that share a layer), and checks
the polynomial against measurements at random points before it is trusted.

A search that also chooses bit-widths (``SearchSpace.bits``) needs the cost at any widths.
A layer at width ``w`` (weights and input) instead of the network's own ``(w0, a0)`` adds
``(w - w0) * params_l(r)`` bits and ``(w * w - w0 * a0) * macs_l(r)`` BOPs, where the layer's
weight count and MACs are themselves quadratic in ``r``: ``CostModel.fit(..., bit_layers=...)``
identifies those per-layer polynomials in the same measurements. The sampler then proposes
the widths with the shape; widths the budget cannot afford even at the deepest pruning are
lowered, the costliest of the widest layers first, until it can
(``BudgetAllocator.affordable``), so every trial still meets the budget by construction.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import optuna
import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.metrics import BITS_PER_MB, measure
from autoprune.prune import find_groups
from autoprune.prune.apply import kept_count, shrink_to_
from autoprune.prune.groups import ChannelGroup
from autoprune.search.space import BITS_PREFIX, SearchSpace, split_params

METRICS = ("size", "bops")
SHAPE_LOW = 0.05  # every group takes part: at lam = 1 / SHAPE_LOW all ratios reach `high`
_BISECTION_STEPS = 60
_CHECK_POINTS = 4


def parse_amount(text: str | float, *, what: str, unit: str, example: str) -> tuple[float, bool]:
    """``(number, is_percent)`` of a size or BOPs amount: ``"50%"`` (or ``"50 %"``), a percent
    of the unpruned network up to 100, or a positive number in ``unit``; otherwise a
    ``ConfigError`` naming ``what`` and both forms. Budgets and ``pareto``'s limits read it."""
    raw = str(text).strip()
    match = re.fullmatch(r"([0-9.eE+-]+)\s*%", raw)
    try:
        number = float(match.group(1) if match else raw)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0) or (match and number > 100):
        raise ConfigError(
            f"{what} must be a positive number of {unit} such as {example}, or a percent of "
            "the unpruned network up to 100 such as 50%"
        )
    return number, bool(match)


@dataclass(frozen=True)
class Budget:
    """A cost limit: ``metric`` (size in bits or BOPs) at most ``limit``."""

    metric: str
    limit: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"unknown budget metric {self.metric!r}: use one of size, bops")
        if not (math.isfinite(self.limit) and self.limit > 0):
            raise ConfigError(f"the {self.metric} budget must be a positive number")

    @classmethod
    def parse(cls, metric: str, text: str | float, *, unpruned: float) -> Budget:
        """``"50%"``: of the unpruned quantized network's cost (``unpruned``); otherwise a
        number: megabytes for size, operations for BOPs (``"1.5e8"``)."""
        what = f"`target_{metric}` {text!r}"
        size = metric == "size"
        unit, example = ("MB", "0.05") if size else ("operations", "1.5e8")
        number, percent = parse_amount(text, what=what, unit=unit, example=example)
        if percent:
            if number >= 100:
                raise ConfigError(f"{what} must be below 100% of the unpruned network")
            return cls(metric, unpruned * number / 100)
        return cls(metric, number * BITS_PER_MB if size else number)

    def describe(self, unpruned: float) -> str:
        share = f"{100 * self.limit / unpruned:.1f}% of the unpruned network"
        if self.metric == "size":
            return f"size <= {self.limit / BITS_PER_MB:.4g} MB ({share})"
        return f"BOPs <= {self.limit:.4g} ({share})"

    def to_dict(self) -> dict[str, float | str]:
        return {"metric": self.metric, "limit": self.limit}


@dataclass(frozen=True)
class Polynomial:
    """``constant - linear . r + r^T quadratic r`` (``quadratic`` upper triangular)."""

    constant: float
    linear: tuple[float, ...]
    quadratic: tuple[tuple[float, ...], ...]

    def __call__(self, removed: Sequence[int]) -> float:
        total = self.constant
        for g, r_g in enumerate(removed):
            if r_g:
                total -= self.linear[g] * r_g
                row = self.quadratic[g]
                for h in range(g, len(removed)):
                    if removed[h] and row[h]:
                        total += row[h] * r_g * removed[h]
        return total


PARAMS, MACS = "params:", "macs:"  # per-layer terms of a cost model that prices bit-widths


def _costs(
    model: nn.Module,
    input_shape: Sequence[int],
    kept: Mapping[str, int],
    bit_layers: Sequence[str] = (),
) -> dict[str, float]:
    """Exact size (bits) and BOPs of ``model`` with each named group cut to its kept count,
    and the weight count and MACs of each of ``bit_layers`` (``params:<layer>``,
    ``macs:<layer>``)."""
    if kept:
        model = copy.deepcopy(model)
        with torch.inference_mode(False), torch.enable_grad():  # Torch-Pruning traces
            shrink_to_(model, kept, example_input=torch.zeros(1, *input_shape))
    cost = measure(model, input_shape)
    terms = {"size": float(cost.size_bits), "bops": float(cost.bops)}
    if bit_layers:
        layers = {layer.name: layer for layer in cost.layers}
        for name in bit_layers:
            terms[PARAMS + name] = float(layers[name].params)
            terms[MACS + name] = float(layers[name].macs)
    return terms


def groups_by_name(model: nn.Module, input_shape: Sequence[int]) -> dict[str, ChannelGroup]:
    """Every channel group of ``model`` (residual ones included), by name."""
    with torch.inference_mode(False), torch.enable_grad():  # Torch-Pruning traces
        return {g.name: g for g in find_groups(model, torch.zeros(1, *input_shape), residual=True)}


def _sharing_pairs(groups: dict[str, ChannelGroup], names: Sequence[str]) -> set:
    """Pairs of groups (by position) coupled through one layer: one produces (or filters)
    the channels the layer writes, the other the channels it reads."""
    writers = {n: {id(m) for m in (*groups[n].producers, *groups[n].depthwise)} for n in names}
    readers = {n: {id(m) for m in groups[n].consumers} for n in names}
    pairs = set()
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        if writers[a] & readers[b] or writers[b] & readers[a]:
            pairs.add((i, j))
    return pairs


@dataclass(frozen=True)
class CostModel:
    """Exact size and BOPs of a network as functions of the channels removed per group and,
    for the layers in ``layers`` (fitted with ``bit_layers``), of their bit-widths."""

    names: tuple[str, ...]
    channels: tuple[int, ...]
    size: Polynomial
    bops: Polynomial
    layers: dict[str, tuple[Polynomial, Polynomial]] = field(default_factory=dict)
    """Per layer whose width may change: its weight count and its MACs."""
    own_bits: tuple[int, int] = (32, 32)
    """The network's own weight and input widths, those ``size`` and ``bops`` are at."""

    def cost(
        self, metric: str, removed: Sequence[int], widths: Mapping[str, int] | None = None
    ) -> float:
        """The cost with ``removed`` channels per group and the layers of ``widths`` at their
        width (weights and input; the others at the network's own)."""
        total = (self.size if metric == "size" else self.bops)(removed)
        own_w, own_a = self.own_bits
        for name, width in (widths or {}).items():
            if width == own_w and width == own_a:
                continue
            params, macs = self.layers[name]
            if metric == "size":
                total += (width - own_w) * params(removed)
            else:
                total += (width * width - own_w * own_a) * macs(removed)
        return total

    @property
    def unpruned(self) -> dict[str, float]:
        return {"size": self.size.constant, "bops": self.bops.constant}

    @classmethod
    def fit(
        cls,
        model: nn.Module,
        input_shape: Sequence[int],
        names: Sequence[str],
        *,
        seed: int = 0,
        bit_layers: Sequence[str] = (),
        own_bits: tuple[int, int] = (32, 32),
    ) -> CostModel:
        """Identify the polynomials of ``model`` over the groups ``names`` (and the per-layer
        ones of ``bit_layers``, whose widths ``own_bits`` may change), then verify them at
        random points; a network whose cost escapes the model is refused."""
        terms = (*METRICS, *(f"{kind}{name}" for name in bit_layers for kind in (PARAMS, MACS)))
        model = copy.deepcopy(model).cpu().eval()
        groups = groups_by_name(model, input_shape)
        missing = [name for name in names if name not in groups]
        if missing:
            raise ConfigError(f"the model has no channel group {missing[0]!r} to budget")
        channels = tuple(groups[name].num_channels for name in names)
        n = len(names)
        base = _costs(model, input_shape, {}, bit_layers)

        def measured(removed: dict[int, int]) -> dict[str, float]:
            kept = {names[g]: channels[g] - r for g, r in removed.items()}
            return _costs(model, input_shape, kept, bit_layers)

        # One group alone: f(r) = -a r + b r^2 from two depths (one when the group has two
        # channels: its cost is then linear on the only removals possible).
        linear = {m: [0.0] * n for m in terms}
        quadratic = {m: [[0.0] * n for _ in range(n)] for m in terms}
        depth = [max(1, (c - 1) // 2) for c in channels]
        single: list[dict[str, float]] = []
        for g, c in enumerate(channels):
            if c < 2:
                single.append(dict.fromkeys(terms, 0.0))
                continue
            r1, f1 = depth[g], measured({g: depth[g]})
            single.append({m: f1[m] - base[m] for m in terms})
            if c - 1 > r1:
                r2, f2 = c - 1, measured({g: c - 1})
                for m in terms:
                    d1, d2 = f1[m] - base[m], f2[m] - base[m]
                    b = (d2 / r2 - d1 / r1) / (r2 - r1)
                    quadratic[m][g][g] = b
                    linear[m][g] = -(d1 / r1 - b * r1)
            else:
                for m in terms:
                    linear[m][g] = -(f1[m] - base[m]) / r1

        def build(pairs: set) -> CostModel:
            for i, j in sorted(pairs):
                if channels[i] < 2 or channels[j] < 2 or any(quadratic[m][i][j] for m in terms):
                    continue
                both = measured({i: depth[i], j: depth[j]})
                for m in terms:
                    extra = both[m] - base[m] - single[i][m] - single[j][m]
                    quadratic[m][i][j] = extra / (depth[i] * depth[j])
            polys = {
                m: Polynomial(base[m], tuple(linear[m]), tuple(tuple(row) for row in quadratic[m]))
                for m in terms
            }
            layers = {name: (polys[PARAMS + name], polys[MACS + name]) for name in bit_layers}
            return cls(
                tuple(names), channels, polys["size"], polys["bops"], layers, tuple(own_bits)
            )

        fitted = build(_sharing_pairs(groups, names))
        rng = random.Random(seed)
        points = [[rng.randrange(c) for c in channels] for _ in range(_CHECK_POINTS)]
        if not fitted._agrees(model, input_shape, points):
            # a coupling the group lists do not show: identify every pair, then check again
            fitted = build(set(itertools.combinations(range(n), 2)))
            if not fitted._agrees(model, input_shape, points):
                raise ConfigError(
                    "this network's size is not a quadratic function of its channel counts, "
                    "so its cost cannot be computed from them: search without `target_size`, "
                    "`target_bops` or `warm_start`"
                )
        return fitted

    def _agrees(self, model: nn.Module, input_shape: Sequence[int], points: list) -> bool:
        for removed in points:
            kept = {
                name: c - r for name, c, r in zip(self.names, self.channels, removed, strict=True)
            }
            exact = _costs(model, input_shape, kept, tuple(self.layers))
            for m in METRICS:
                if abs(self.cost(m, removed) - exact[m]) > 0.5:
                    return False
            for name, (params, macs) in self.layers.items():
                if abs(params(removed) - exact[PARAMS + name]) > 0.5:
                    return False
                if abs(macs(removed) - exact[MACS + name]) > 0.5:
                    return False
        return True


def removed_channels(channels: int, ratio: float) -> int:
    """Channels a ratio removes, by the pruning's own rule."""
    return channels - kept_count(channels, ratio)


@dataclass(frozen=True)
class BudgetAllocator:
    """Turns an allocation shape into ratios that meet ``budget`` with the least pruning."""

    space: SearchSpace
    costs: CostModel
    budget: Budget

    def __post_init__(self) -> None:
        if list(self.costs.names) != self.space.names:
            raise ConfigError("the cost model and the search space name different groups")
        deepest = self.cost_of(self._ratios_at(1 / SHAPE_LOW, self.uniform_shape()))
        if deepest > self.budget.limit:
            unpruned = self.costs.unpruned[self.budget.metric]
            raise ConfigError(
                f"the budget ({self.budget.describe(unpruned)}) is below what the search "
                f"space can reach ({100 * deepest / unpruned:.1f}% with every ratio at its "
                "high bound): raise the target or the ratio bounds of the search space"
            )

    def uniform_shape(self) -> dict[str, float]:
        return dict.fromkeys(self.space.names, 1.0)

    def _ratios_at(self, lam: float, shape: Mapping[str, float]) -> list[int]:
        removed = []
        for group, channels in zip(self.space.groups, self.costs.channels, strict=True):
            ratio = group.low + (group.high - group.low) * min(1.0, lam * shape[group.name])
            removed.append(removed_channels(channels, ratio))
        return removed

    def cost_of(self, removed: Sequence[int], widths: Mapping[str, int] | None = None) -> float:
        return self.costs.cost(self.budget.metric, removed, widths)

    def fits(self, ratios: Mapping[str, float]) -> bool:
        """Whether the network with these ratios (groups absent: unpruned; searched widths as
        ``bits:<layer>`` entries, see ``split_params``) meets the budget."""
        ratios, widths = split_params(dict(ratios))
        removed = [
            removed_channels(c, ratios.get(name, 0.0))
            for name, c in zip(self.space.names, self.costs.channels, strict=True)
        ]
        return self.cost_of(removed, widths) <= self.budget.limit

    def affordable(self, widths: Mapping[str, int]) -> dict[str, int]:
        """``widths`` lowered until the deepest pruning the space allows meets the budget:
        of the widest layers, the one whose lowering saves the most drops to the next lower
        choice, repeatedly (so as few of the proposed widths as possible change). The
        network's own widths always fit (checked when the allocator is made)."""
        widths = dict(widths)
        choices = () if self.space.bits is None else self.space.bits.choices
        deepest = self._ratios_at(1 / SHAPE_LOW, self.uniform_shape())

        def lowered(name: str) -> dict[str, int]:
            return {**widths, name: max(c for c in choices if c < widths[name])}

        while self.cost_of(deepest, widths) > self.budget.limit:
            widest = max(widths.values())
            candidates = [name for name, width in widths.items() if width == widest]
            widths = min(
                (lowered(name) for name in candidates), key=lambda w: self.cost_of(deepest, w)
            )
        return widths

    def ratios_for(
        self, shape: Mapping[str, float], widths: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        """The ratios, snapped to whole channels, of the smallest factor that fits, with the
        layers of ``widths`` at their width (``affordable`` ones)."""

        def cost(removed: Sequence[int]) -> float:
            return self.cost_of(removed, widths)

        low, high = 0.0, 1 / SHAPE_LOW
        if cost(self._ratios_at(low, shape)) > self.budget.limit:
            for _ in range(_BISECTION_STEPS):
                middle = (low + high) / 2
                if cost(self._ratios_at(middle, shape)) <= self.budget.limit:
                    high = middle
                else:
                    low = middle
            lam = high
        else:
            lam = low
        removed = self._ratios_at(lam, shape)
        # Whole channels leave slack under the limit: give channels back, one at a time, to
        # the groups the shape prunes least, while the network still fits.
        order = sorted(range(len(removed)), key=lambda g: shape[self.space.names[g]])
        restored = True
        while restored:
            restored = False
            for g in order:
                floor = removed_channels(self.costs.channels[g], self.space.groups[g].low)
                if removed[g] > floor:
                    removed[g] -= 1
                    if cost(removed) <= self.budget.limit:
                        restored = True
                    else:
                        removed[g] += 1
        if cost(removed) > self.budget.limit:  # a shape outside [SHAPE_LOW, 1]
            raise ConfigError(
                f"an allocation shape with values outside [{SHAPE_LOW}, 1] cannot meet the "
                "budget: give every group a value in that range"
            )
        return {
            name: r / channels
            for name, r, channels in zip(
                self.space.names, removed, self.costs.channels, strict=True
            )
        }

    def suggest(self, trial: optuna.Trial) -> dict[str, float]:
        """The trial's shape (Optuna parameters named after the groups) turned into ratios;
        with searched widths, the trial's widths (``bits:<layer>``) made ``affordable`` first,
        and returned as applied next to the ratios."""
        shape = {name: trial.suggest_float(name, SHAPE_LOW, 1.0) for name in self.space.names}
        if self.space.bits is None:
            return self.ratios_for(shape)
        _, proposed = split_params(self.space.bits.suggest(trial))
        widths = self.affordable(proposed)
        applied = {BITS_PREFIX + name: width for name, width in widths.items()}
        return {**self.ratios_for(shape, widths), **applied}

    def reference_point(self) -> dict[str, float]:
        """The parameters of the uniform reference: the uniform shape, the network's widths."""
        unchanged = {} if self.space.bits is None else self.space.bits.unchanged()
        return {**self.uniform_shape(), **unchanged}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        shapes = {
            name: optuna.distributions.FloatDistribution(SHAPE_LOW, 1.0)
            for name in self.space.names
        }
        return shapes if self.space.bits is None else {**shapes, **self.space.bits.distributions()}
