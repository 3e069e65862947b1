"""Sensitivity scans and the greedy allocation built on them."""

from __future__ import annotations

import pytest
import torch

from autoprune.config import ModelConfig
from autoprune.data import load_dataset
from autoprune.models import build_model
from autoprune.search.budget import Budget, BudgetAllocator, CostModel
from autoprune.search.sensitivity import (
    Sensitivity,
    greedy_allocation,
    greedy_ratios,
    scan_sensitivity,
    shape_of,
    warm_start_allocations,
)
from autoprune.search.space import GroupRange, SearchSpace, load_search_space


def _table() -> tuple[Sensitivity, SearchSpace]:
    space = SearchSpace("toy", (GroupRange("a", 0.0, 0.8, 0.1), GroupRange("b", 0.0, 0.8, 0.1)))
    table = Sensitivity(
        parent_accuracy=0.9,
        images=100,
        ratios={"a": (0.2, 0.4, 0.8), "b": (0.2, 0.4, 0.8)},
        # a is robust, b is fragile; b's noisy rise at 0.8 must not count as a gain
        accuracy={"a": (0.9, 0.89, 0.8), "b": (0.8, 0.5, 0.6)},
    )
    return table, space


def test_drop_interpolates_and_never_falls() -> None:
    table, _ = _table()
    assert table.drop("a", 0.0) == 0.0
    assert table.drop("a", 0.3) == pytest.approx(0.005)
    assert table.drop("b", 0.1) == pytest.approx(0.05)
    assert table.drop("b", 0.6) == pytest.approx(0.4)  # the later 0.6 does not undo 0.5
    assert table.drop("b", 0.8) == pytest.approx(0.4)
    assert Sensitivity.from_dict(table.to_dict()) == table


def test_greedy_prunes_the_robust_group_more_and_meets_the_budget() -> None:
    table, space = _table()
    loose = greedy_ratios(table, space, 0.02)
    assert loose["a"] > loose["b"]

    def fits(ratios: dict[str, float]) -> bool:  # a budget of 0.9 ratio-units in total
        return sum(ratios.values()) >= 0.9

    chosen = greedy_allocation(table, space, fits)
    assert chosen is not None and fits(chosen)
    assert chosen["a"] > chosen["b"]
    assert greedy_allocation(table, space, lambda r: sum(r.values()) > 5) is None
    shape = shape_of(chosen, space)
    assert shape["a"] == pytest.approx(chosen["a"] / 0.8)


def test_scan_on_a_real_network_and_warm_start_points_fit_their_sizes() -> None:
    data = load_dataset("digits", max_train=300)
    config = ModelConfig.for_data("tiny_cnn", 2, data)
    model = build_model(config).eval()
    space = load_search_space("tiny_cnn", model, torch.zeros(1, *config.input_shape), None)
    table = scan_sensitivity(
        model, data, space, criterion="l1", input_shape=config.input_shape, max_images=100
    )
    assert table.images == 100
    assert set(table.ratios) == set(space.names)
    assert all(0.0 <= a <= 1.0 for acc in table.accuracy.values() for a in acc)

    costs = CostModel.fit(model, config.input_shape, space.names)

    def size_of(ratios: dict[str, float]) -> float:
        removed = [
            round(ratios.get(n, 0.0) * c) for n, c in zip(costs.names, costs.channels, strict=True)
        ]
        return costs.cost(
            "size", [min(r, c - 1) for r, c in zip(removed, costs.channels, strict=True)]
        )

    points = warm_start_allocations(table, space, size_of, fractions=(0.8, 0.6))
    assert points and all(set(p) == set(space.names) for p in points)
    # a greedy allocation turned into a shape meets a budget through the allocator
    allocator = BudgetAllocator(
        space, costs, Budget.parse("size", "60%", unpruned=costs.unpruned["size"])
    )
    ratios = allocator.ratios_for(shape_of(points[-1], space))
    assert size_of(ratios) <= allocator.budget.limit
