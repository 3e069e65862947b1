"""Default coverage: the generated search space and uniform pruning cover the same groups, enough
of every network that a uniform 60 % removes at least half of its quantized size."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from autoprune.export.pruning import resolve_ratios
from autoprune.metrics import measure
from autoprune.models import MODELS, create_model
from autoprune.prune import find_groups, prune_
from autoprune.search.space import generate_search_space

BIG_MODEL_PARAMS = 1_000_000  # above this, tracing and pruning run as a slow test


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _every_model() -> list:
    params = {
        name: sum(p.numel() for p in create_model(name).parameters()) for name in MODELS.names()
    }
    return [
        pytest.param(name, marks=pytest.mark.slow) if count > BIG_MODEL_PARAMS else name
        for name, count in params.items()
    ]


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("model_name", _every_model())
def test_uniform_60_percent_removes_half_of_the_quantized_size(model_name: str, bits: int) -> None:
    side = 32 if "imagenet" in model_name else 8
    shape = (3, side, side)
    example = torch.zeros(1, *shape)
    model = create_model(model_name, bits=bits).eval()
    groups = find_groups(model, example, residual=True)
    space = generate_search_space(model_name, model, example)
    uniform = resolve_ratios(groups, ratios=None, uniform=0.6)
    assert space.names == list(uniform) == [group.name for group in groups]
    assert space.uniform(0.6) == uniform
    before = measure(model, shape).size_bits
    prune_(model, uniform, criterion="l1", example_input=example)
    after = measure(model, shape).size_bits
    assert after <= 0.5 * before, f"{model_name}: kept {after / before:.1%}"


def test_block_internal_only_on_request() -> None:
    """``residual=False`` keeps the old selection, which on the depthwise-separable reference
    model leaves its largest layer (on the residual stream) untouched."""
    example = torch.zeros(1, 3, 8, 8)
    model = create_model("tiny_dscnn", bits=2).eval()
    groups = find_groups(model, example, residual=True)
    internal = resolve_ratios(groups, ratios=None, uniform=0.6, residual=False)
    assert sorted(internal) == ["blocks.0.pointwise.0", "stem.0"]
    before = measure(model, (3, 8, 8)).size_bits
    prune_(model, internal, criterion="l1", example_input=example)
    assert measure(model, (3, 8, 8)).size_bits > 0.6 * before
