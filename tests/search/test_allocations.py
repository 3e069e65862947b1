"""Contract over every registered search-free allocation: it meets the budget exactly (no
channel to spare) within each group's range."""

from __future__ import annotations

import pytest
import torch

from autoprune.config import ModelConfig
from autoprune.data import load_dataset
from autoprune.models import build_model
from autoprune.search.allocations import ALLOCATIONS, AllocationContext, allocate
from autoprune.search.budget import Budget, BudgetAllocator, CostModel, removed_channels
from autoprune.search.sensitivity import scan_sensitivity
from autoprune.search.space import load_search_space


@pytest.fixture(scope="module")
def setting():
    data = load_dataset("digits", max_train=200)
    config = ModelConfig.for_data("tiny_resnet", 2, data)
    torch.manual_seed(0)  # the same network every run
    model = build_model(config).eval()
    for parameter in model.parameters():  # uneven norms, so the rankings differ
        parameter.data.mul_(torch.rand_like(parameter) * 2)
    space = load_search_space("tiny_resnet", model, torch.zeros(1, *config.input_shape), None)
    costs = CostModel.fit(model, config.input_shape, space.names)
    budget = Budget.parse("size", "60%", unpruned=costs.unpruned["size"])
    allocator = BudgetAllocator(space, costs, budget)
    table = scan_sensitivity(
        model, data, space, criterion="l1", input_shape=config.input_shape, max_images=60
    )
    return AllocationContext(model, config.input_shape, allocator, sensitivity=lambda: table)


@pytest.mark.parametrize("name", ALLOCATIONS.names())
def test_allocation_meets_the_budget_within_ranges(name: str, setting) -> None:
    allocator = setting.allocator
    ratios = allocate(name, setting)
    assert set(ratios) == set(allocator.space.names)
    removed = [
        removed_channels(c, ratios[n])
        for n, c in zip(allocator.space.names, allocator.costs.channels, strict=True)
    ]
    assert allocator.cost_of(removed) <= allocator.budget.limit
    # within one channel of the budget: giving any pruned group a channel back breaks it
    assert any(
        allocator.cost_of([r - (i == g) for i, r in enumerate(removed)]) > allocator.budget.limit
        for g in range(len(removed))
        if removed[g] > 0
    )
    # within each group's range, as the pruning counts channels (8 channels at 0.6 remove 5)
    for group, channels, count in zip(
        allocator.space.groups, allocator.costs.channels, removed, strict=True
    ):
        assert removed_channels(channels, group.low) <= count
        assert count <= removed_channels(channels, group.high)


def test_rankings_differ_from_uniform(setting) -> None:
    found = {name: allocate(name, setting) for name in ("uniform", "global", "lamp")}
    assert found["global"] != found["uniform"]
    assert found["lamp"] != found["uniform"]
