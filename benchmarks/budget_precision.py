"""How exactly a budget search meets its budget, and how deep each search space reaches.

For each model (untrained: sizes do not depend on weights) it fits the exact cost model
(``autoprune.search.budget.CostModel``), then for random allocation shapes lets the allocator
meet a size and a BOPs target, prunes a real copy with those ratios and measures it. It also
prints the smallest size each space reaches (every ratio at its high bound), with and without
the residual groups. Writes ``benchmarks/results/budget_precision.md``.

    python benchmarks/budget_precision.py
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import torch

from autoprune.config import ModelConfig
from autoprune.metrics import measure
from autoprune.models import build_model
from autoprune.prune import prune_
from autoprune.quant import QuantSpec
from autoprune.search.budget import SHAPE_LOW, Budget, BudgetAllocator, CostModel
from autoprune.search.space import load_search_space

MODELS = {  # name: (in_channels, image size)
    "resnet20": (1, 28),
    "mobilenet_tiny": (3, 32),
    "tiny_dscnn": (1, 28),
    "vgg_small": (3, 32),
}
TARGETS = (("size", "50%"), ("size", "30%"), ("bops", "80%"))
SHAPES = 5


def measured(model, input_shape, ratios: dict[str, float]) -> dict[str, int]:
    pruned = copy.deepcopy(model)
    example = torch.zeros(1, *input_shape)
    prune_(pruned, ratios, criterion="l1", example_input=example, residual=True)
    cost = measure(pruned, input_shape)
    return {"size": cost.size_bits, "bops": cost.bops}


def main() -> None:
    lines = [
        "# Budget precision",
        "",
        f"{SHAPES} random shapes per target; measured on the pruned network itself.",
        "",
        "| model | bits | groups | fit s | target | measured % of unpruned (min..max) | within |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    reach = ["", "| model | bits | space | groups | smallest size % |", "|---|---:|---|---:|---:|"]
    for name, (channels, side) in MODELS.items():
        for bits in (2, 1):
            spec = QuantSpec.from_bits(bits)
            config = ModelConfig(name, spec.to_dict(), 10, channels, side)
            model = build_model(config).eval()
            shape = config.input_shape
            example = torch.zeros(1, *shape)
            bundled = load_search_space(name, model, example, None)
            spaces = {
                "default": bundled,
                "+ residual": bundled.with_residual_groups(model, example),
            }
            for label, space in spaces.items():
                started = time.perf_counter()
                costs = CostModel.fit(model, shape, space.names)
                fit_seconds = time.perf_counter() - started
                unpruned = costs.unpruned["size"]
                deepest = {g.name: g.high for g in space.groups}
                smallest = measured(model, shape, deepest)["size"]
                reach.append(
                    f"| {name} | {bits} | {label} | {len(space.names)} | "
                    f"{100 * smallest / unpruned:.1f} |"
                )
                if label != "+ residual":
                    continue
                for metric, target in TARGETS:
                    budget = Budget.parse(metric, target, unpruned=costs.unpruned[metric])
                    try:
                        allocator = BudgetAllocator(space, costs, budget)
                    except Exception as error:  # unreachable: say so in the table
                        lines.append(
                            f"| {name} | {bits} | {len(space.names)} | {fit_seconds:.1f} | "
                            f"{metric} {target} | unreachable ({error}) | |"
                        )
                        continue
                    rng = random.Random(0)
                    found = []
                    for _ in range(SHAPES):
                        ratios = allocator.ratios_for(
                            {n: rng.uniform(SHAPE_LOW, 1.0) for n in space.names}
                        )
                        value = measured(model, shape, ratios)[metric]
                        found.append(100 * value / costs.unpruned[metric])
                    limit = 100 * budget.limit / costs.unpruned[metric]
                    ok = "yes" if max(found) <= limit + 1e-9 else "NO"
                    lines.append(
                        f"| {name} | {bits} | {len(space.names)} | {fit_seconds:.1f} | "
                        f"{metric} {target} | {min(found):.3f} .. {max(found):.3f} | {ok} |"
                    )
                print("\n".join(lines[-len(TARGETS) :]), flush=True)
    text = "\n".join(lines + reach) + "\n"
    out = Path("benchmarks/results/budget_precision.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
