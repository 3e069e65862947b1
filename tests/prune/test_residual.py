"""Residual groups: found, named, removed exactly, and rebuilt from saved checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import autoprune
from autoprune.checkpoint import save_checkpoint
from autoprune.config import ModelConfig
from autoprune.models import build_model, create_model
from autoprune.prune import build_dependency_graph, find_groups, prune_, shrink_to_
from autoprune.prune.groups import remove_channels_
from autoprune.quant import QuantSpec


def _randomise_batchnorm(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def test_resnet20_residual_groups_are_its_three_stage_streams() -> None:
    model = create_model("resnet20", bits=2)
    groups = find_groups(model, torch.zeros(1, 3, 8, 8), residual=True)
    names = {name: module for name, module in model.named_modules()}
    coupled = {g.name: sorted(n for n, m in names.items() if m in g.producers) for g in groups}
    assert coupled["residual:conv1"] == ["conv1"] + [f"layers.0.{b}.conv2" for b in range(3)]
    assert coupled["residual:layers.1"] == sorted(
        [f"layers.1.{b}.conv2" for b in range(3)] + ["layers.1.0.shortcut.0"]
    )
    assert [g.name for g in groups if g.residual] == [
        "residual:conv1",
        "residual:layers.1",
        "residual:layers.2",
    ]
    # definition order, block-internal groups as without residual=True
    assert [g.name for g in groups if not g.residual] == [
        g.name for g in find_groups(model, torch.zeros(1, 3, 8, 8))
    ]
    assert [g.name for g in groups].index("residual:conv1") == 0


@pytest.mark.parametrize("bits", [1, 2, 32])
@pytest.mark.parametrize("model_name", ["tiny_resnet", "resnet20"])
def test_removing_residual_channels_equals_zeroing_them(model_name: str, bits: int) -> None:
    """Removing stream channels everywhere computes what zeroing them at every reader does.

    Zeroing happens on each reader's quantized input (see the block-internal test). DoReFa's
    per-tensor weight scale is recomputed on the kept weights, so the channels holding a
    reader's or producer's largest weight are kept to make the comparison exact.
    """
    torch.manual_seed(0)
    model = create_model(model_name, bits=bits, in_channels=1).eval()
    _randomise_batchnorm(model)
    x = torch.randn(3, 1, 8, 8)
    groups = [g for g in find_groups(model, x[:1], residual=True) if g.residual]
    assert len(groups) >= 2
    plan = {}
    for group in groups:
        protected = {
            int(c.weight.abs().transpose(0, 1).flatten(1).amax(1).argmax()) for c in group.consumers
        }
        protected |= {int(p.weight.abs().flatten(1).amax(1).argmax()) for p in group.producers}
        plan[group.name] = [c for c in range(1, group.num_channels, 2) if c not in protected]

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
    graph = build_dependency_graph(model, x[:1])
    for group in groups:
        remove_channels_(graph, group, plan[group.name])
    with torch.no_grad():
        actual = model(x)
    for group in groups:
        kept = group.num_channels - len(plan[group.name])
        assert all(p.out_channels == kept for p in group.producers)
        assert all(
            (c.in_channels if isinstance(c, nn.Conv2d) else c.in_features) == kept
            for c in group.consumers
        )
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("criterion", ["angle-next", "angle", "l1", "taylor", "random"])
def test_prune_with_residual_groups_keeps_model_runnable(criterion: str) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", bits=1).eval()
    example = torch.zeros(1, 3, 8, 8)
    batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    kept = prune_(
        model,
        {"residual:layers.1": 0.5, "residual:conv1": 0.25, "layers.2.0.conv1": 0.5},
        criterion=criterion,
        example_input=example,
        calibration=[batch],
    )
    assert kept["residual:layers.1"] == 16 and kept["residual:conv1"] == 12
    assert kept["layers.2.0.conv1"] == 32 and kept["layers.1.1.conv1"] == 32
    assert "residual:layers.2" not in kept  # residual groups appear when named...
    assert model.layers[1][0].shortcut[0].out_channels == 16
    assert model.layers[1][2].conv2.out_channels == 16
    assert model.layers[2][0].shortcut[0].in_channels == 16
    assert model.conv1.out_channels == 12 and model.layers[0][1].conv1.in_channels == 12
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    read = prune_(model, {}, criterion=criterion, example_input=example, residual=True)
    assert read["residual:layers.2"] == 64 and read["residual:layers.1"] == 16  # ...or asked


@pytest.mark.parametrize("bits", [1, 2])
def test_residual_pruned_checkpoint_reloads_exactly(tmp_path: Path, bits: int) -> None:
    config = ModelConfig("resnet20", QuantSpec.from_bits(bits).to_dict(), 10, 1, 8)
    torch.manual_seed(0)
    model = build_model(config).eval()
    _randomise_batchnorm(model)
    kept = prune_(
        model,
        {"residual:layers.2": 0.4, "residual:conv1": 0.5, "layers.1.1.conv1": 0.3},
        criterion="angle-next",
        example_input=torch.zeros(1, 1, 8, 8),
    )
    path = save_checkpoint(tmp_path / "pruned.pt", model, config, kept_channels=kept)
    loaded = autoprune.load(path)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.layers[2][1].conv2.out_channels == 38


def test_shrink_to_rejects_unknown_and_impossible_residual_counts() -> None:
    model = create_model("tiny_resnet", bits=2)
    example = torch.zeros(1, 3, 8, 8)
    with pytest.raises(KeyError, match="residual:nowhere"):
        shrink_to_(model, {"residual:nowhere": 2}, example_input=example)
    with pytest.raises(ValueError, match="cannot keep 9"):
        shrink_to_(model, {"residual:conv1": 9}, example_input=example)
