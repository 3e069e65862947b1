"""Budgets: the cost model is exact, and every allocation meets the budget with no slack
left that one more channel could use."""

from __future__ import annotations

import random

import pytest
import torch

from autoprune.config import ModelConfig
from autoprune.errors import ConfigError
from autoprune.metrics import BITS_PER_MB, measure
from autoprune.models import build_model
from autoprune.prune import prune_
from autoprune.quant import QuantSpec, bit_layers, set_layer_bits_
from autoprune.search.budget import (
    SHAPE_LOW,
    Budget,
    BudgetAllocator,
    CostModel,
    removed_channels,
)
from autoprune.search.space import BITS_PREFIX, load_search_space, split_params

SHAPES = {"tiny_cnn": (1, 8, 8), "tiny_resnet": (1, 8, 8), "mobilenet_tiny": (3, 16, 16)}


def _network(name: str, bits: int = 2):
    in_channels, size, _ = SHAPES[name]
    config = ModelConfig(
        name=name,
        quant=QuantSpec.from_bits(bits).to_dict(),
        num_classes=10,
        in_channels=in_channels,
        image_size=size,
    )
    model = build_model(config).eval()
    space = load_search_space(name, model, torch.zeros(1, *config.input_shape), None)
    return model, config.input_shape, space


def _exact_cost(model, input_shape, ratios: dict[str, float]) -> dict[str, int]:
    import copy

    ratios, widths = split_params(ratios)
    pruned = set_layer_bits_(copy.deepcopy(model), widths)
    prune_(
        pruned,
        ratios,
        criterion="l1",
        example_input=torch.zeros(1, *input_shape),
        residual=True,
    )
    cost = measure(pruned, input_shape)
    return {"size": cost.size_bits, "bops": cost.bops}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cost_model_equals_measurement_after_real_pruning(name: str) -> None:
    model, input_shape, space = _network(name)
    costs = CostModel.fit(model, input_shape, space.names)
    assert costs.unpruned["size"] == measure(model, input_shape).size_bits
    rng = random.Random(7)
    for _ in range(4):
        removed = [rng.randrange(c) for c in costs.channels]
        ratios = {n: r / c for n, r, c in zip(costs.names, removed, costs.channels, strict=True)}
        exact = _exact_cost(model, input_shape, ratios)
        assert costs.cost("size", removed) == pytest.approx(exact["size"], abs=0.5)
        assert costs.cost("bops", removed) == pytest.approx(exact["bops"], abs=0.5)


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("metric, target", [("size", "55%"), ("bops", "70%")])
def test_every_shape_meets_the_budget_with_no_channel_to_spare(
    name: str, metric: str, target: str
) -> None:
    model, input_shape, space = _network(name)
    costs = CostModel.fit(model, input_shape, space.names)
    budget = Budget.parse(metric, target, unpruned=costs.unpruned[metric])
    allocator = BudgetAllocator(space, costs, budget)
    rng = random.Random(3)
    for _ in range(5):
        shape = {n: rng.uniform(SHAPE_LOW, 1.0) for n in space.names}
        ratios = allocator.ratios_for(shape)
        exact = _exact_cost(model, input_shape, ratios)[metric]
        assert exact <= budget.limit
        removed = [
            removed_channels(c, ratios[n]) for n, c in zip(costs.names, costs.channels, strict=True)
        ]
        for g, group in enumerate(space.groups):
            if removed[g] > removed_channels(costs.channels[g], group.low):
                fewer = list(removed)
                fewer[g] -= 1  # one channel given back must break the budget
                assert allocator.cost_of(fewer) > budget.limit


def test_a_flatter_shape_prunes_more_evenly() -> None:
    model, input_shape, space = _network("tiny_cnn")
    costs = CostModel.fit(model, input_shape, space.names)
    allocator = BudgetAllocator(
        space, costs, Budget.parse("size", "60%", unpruned=costs.unpruned["size"])
    )
    first, *rest = space.names
    skewed = allocator.ratios_for({first: SHAPE_LOW, **dict.fromkeys(rest, 1.0)})
    even = allocator.ratios_for(allocator.uniform_shape())
    assert skewed[first] < even[first]


def test_budget_parsing() -> None:
    assert Budget.parse("size", "50%", unpruned=1000).limit == 500
    assert Budget.parse("size", "0.5", unpruned=1000).limit == 0.5 * BITS_PER_MB
    assert Budget.parse("bops", "1.5e6", unpruned=1e9).limit == 1.5e6
    for bad in ("half", "0", "-3%", "100%", "nan"):
        with pytest.raises(ConfigError, match="`target_size`"):
            Budget.parse("size", bad, unpruned=1000)
    with pytest.raises(ConfigError, match="unknown budget metric"):
        Budget("flops", 10)


def test_budgets_and_size_limits_read_amounts_alike() -> None:
    from autoprune.search.pareto import parse_size_limit

    for text, expected in (("50%", (50.0, True)), ("50 %", (50.0, True)), ("0.5", (0.5, False))):
        assert parse_size_limit(text) == expected
        assert Budget.parse("size", text, unpruned=1000).limit == (
            500 if expected[1] else 0.5 * BITS_PER_MB
        )
    # a limit may be the whole network; a budget of the whole network prunes nothing
    assert parse_size_limit("100%") == (100.0, True)
    with pytest.raises(ConfigError, match="below 100%"):
        Budget.parse("size", "100%", unpruned=1000)


def test_an_unreachable_budget_is_refused_with_the_reachable_floor() -> None:
    model, input_shape, space = _network("tiny_cnn")
    costs = CostModel.fit(model, input_shape, space.names)
    with pytest.raises(ConfigError, match=r"below what the search space can reach \(\d+\.\d%"):
        BudgetAllocator(space, costs, Budget.parse("size", "1%", unpruned=costs.unpruned["size"]))


def _with_widths(name: str, target: str, metric: str = "size"):
    model, input_shape, space = _network(name)
    space = space.with_bits(model, (2, 4, 8), 2)
    costs = CostModel.fit(
        model, input_shape, space.names, bit_layers=space.bits.layers, own_bits=(2, 2)
    )
    budget = Budget.parse(metric, target, unpruned=costs.unpruned[metric])
    return model, input_shape, space, costs, BudgetAllocator(space, costs, budget)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cost_model_prices_any_widths_exactly(name: str) -> None:
    model, input_shape, _, costs, _ = _with_widths(name, "90%")
    assert list(costs.layers) == bit_layers(model)
    rng = random.Random(11)
    for _ in range(4):
        removed = [rng.randrange(c) for c in costs.channels]
        ratios = {n: r / c for n, r, c in zip(costs.names, removed, costs.channels, strict=True)}
        widths = {layer: rng.choice((2, 4, 8)) for layer in costs.layers}
        params = {**ratios, **{BITS_PREFIX + k: v for k, v in widths.items()}}
        exact = _exact_cost(model, input_shape, params)
        for metric in ("size", "bops"):
            assert costs.cost(metric, removed, widths) == pytest.approx(exact[metric], abs=0.5)


@pytest.mark.parametrize("metric", ["size", "bops"])
def test_proposed_widths_are_lowered_until_the_budget_is_met(metric: str) -> None:
    model, input_shape, space, costs, allocator = _with_widths("tiny_resnet", "40%", metric)
    widest = dict.fromkeys(costs.layers, 8)
    affordable = allocator.affordable(widest)
    assert affordable != widest  # every layer at 8 bits cannot fit 40 %
    assert allocator.affordable(affordable) == affordable  # what fits is left alone
    assert allocator.affordable(dict.fromkeys(costs.layers, 2)) == dict.fromkeys(costs.layers, 2)
    rng = random.Random(5)
    for _ in range(4):
        shape = {n: rng.uniform(SHAPE_LOW, 1.0) for n in space.names}
        widths = allocator.affordable({k: rng.choice((2, 4, 8)) for k in costs.layers})
        ratios = allocator.ratios_for(shape, widths)
        params = {**ratios, **{BITS_PREFIX + k: v for k, v in widths.items()}}
        assert _exact_cost(model, input_shape, params)[metric] <= allocator.budget.limit
        assert allocator.fits(params)
    reference = allocator.reference_point()
    assert split_params(reference)[1] == dict.fromkeys(costs.layers, 2)
