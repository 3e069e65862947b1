"""Channel groups, criteria and physical removal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.models import create_model
from autoprune.prune import (
    build_dependency_graph,
    channels_to_remove,
    find_groups,
    prune_,
)
from autoprune.prune.groups import remove_channels_


def _randomise_batchnorm(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.mark.parametrize("bits", [1, 2, 32])
@pytest.mark.parametrize("model_name", ["tiny_cnn", "tiny_resnet", "resnet20"])
def test_physical_removal_equals_zeroed_channels(model_name: str, bits: int) -> None:
    """The pruned model computes exactly what the full one does with those channels zeroed.

    Zeroing happens on each consumer's *quantized* input (BNN's sign(0) is +1, so zeroing
    before the quantizer would not remove a channel). DoReFa's per-tensor weight scale is
    recomputed on the kept weights, so the channel holding a consumer's largest weight is
    kept here to make the comparison exact.
    """
    torch.manual_seed(0)
    model = create_model(model_name, bits=bits, in_channels=1).eval()
    _randomise_batchnorm(model)
    x = torch.randn(3, 1, 8, 8)
    groups = find_groups(model, x[:1])
    assert groups
    plan = {}
    for group in groups:
        protected = {
            int(c.weight.abs().transpose(0, 1).flatten(1).amax(1).argmax()) for c in group.consumers
        }
        plan[group.name] = [c for c in range(0, group.num_channels, 2) if c not in protected]

    def zero_channels(indices: list[int]):
        index = torch.tensor(indices, dtype=torch.long)
        return lambda _module, _inputs, out: out.index_fill(1, index, 0.0)

    handles = [
        consumer.input_quantizer.register_forward_hook(zero_channels(plan[group.name]))
        for group in groups
        for consumer in group.consumers
    ]
    with torch.no_grad():
        expected = model(x)
    for handle in handles:
        handle.remove()
    params_before = sum(p.numel() for p in model.parameters())
    graph = build_dependency_graph(model, x[:1])
    for group in groups:
        remove_channels_(graph, group, plan[group.name])
    with torch.no_grad():
        actual = model(x)
    assert sum(p.numel() for p in model.parameters()) < params_before
    for group in groups:
        assert group.producer.out_channels == group.num_channels - len(plan[group.name])
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_residual_coupled_channels_are_not_block_internal() -> None:
    model = create_model("resnet20", bits=2)
    names = [group.name for group in find_groups(model, torch.zeros(1, 3, 8, 8))]
    assert names == [f"layers.{s}.{b}.conv1" for s in range(3) for b in range(3)]


def test_prune_ratios_keep_expected_counts_and_model_runs() -> None:
    model = create_model("resnet20", bits=1).eval()
    example = torch.zeros(1, 3, 8, 8)
    kept = prune_(
        model,
        {"layers.0.0.conv1": 0.5, "layers.2.2.conv1": 0.25},
        criterion="angle-next",
        example_input=example,
    )
    assert kept["layers.0.0.conv1"] == 8 and kept["layers.2.2.conv1"] == 48
    assert kept["layers.1.1.conv1"] == 32
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_channels_to_remove_keeps_at_least_one() -> None:
    scores = torch.tensor([3.0, 1.0, 2.0, 0.5])
    assert channels_to_remove(scores, 0.5) == [1, 3]
    assert channels_to_remove(scores, 0.99) == [1, 2, 3]
    assert channels_to_remove(scores, 0.0) == []
