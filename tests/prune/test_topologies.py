"""Channel groups across topologies: depthwise-separable and inverted-residual blocks,
concatenations, squeeze-excitation, linear MLP heads, and the refused grouped convs.

Every prunable group kind is removed physically and compared with the unpruned model whose
removed channels are zeroed where they are read (on each reading layer's quantized input, at
the indices it reads them: shifted by a concatenation, repeated by a flatten). Depthwise convs
are not masked: they lose the channel's filter, and the channel's output is masked where the
next non-depthwise layer reads it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoprune.errors import ConfigError
from autoprune.models import create_model
from autoprune.models.layers import activation, classifier, quant_conv
from autoprune.prune import (
    ChannelGroup,
    build_dependency_graph,
    find_groups,
    prune_,
    refused_groups,
    shrink_to_,
)
from autoprune.prune.groups import remove_channels_
from autoprune.quant import QuantLinear, QuantSpec


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small convs are fastest single-threaded, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise_batchnorm(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def _max_channel(weight: torch.Tensor, table: torch.Tensor, dim: int) -> int:
    """The group channel holding ``weight``'s largest magnitude along ``dim`` (read through
    ``table``): DoReFa's per-tensor scale is recomputed on the kept weights, so that channel
    is kept to make the comparison exact."""
    per_index = weight.detach().abs().transpose(0, dim).flatten(1).amax(1)
    return int(per_index[table].amax(1).argmax())


def _plan(group: ChannelGroup) -> list[int]:
    protected = {
        _max_channel(p.weight, torch.arange(group.num_channels)[:, None], 0)
        for p in group.producers
    }
    for layer in group.consumers:
        dim = 0 if layer in group.depthwise else 1
        protected.add(_max_channel(layer.weight, group.reader_indices(layer), dim))
    return [c for c in range(1, group.num_channels, 2) if c not in protected]


def _masked_output(model: nn.Module, groups: list[ChannelGroup], plan, x: torch.Tensor):
    def zero(indices: torch.Tensor):
        return lambda _module, _inputs, out: out.index_fill(1, indices, 0.0)

    handles = []
    for group in groups:
        channels = torch.tensor(plan[group.name], dtype=torch.long)
        for layer in group.consumers:
            if layer in group.depthwise or not len(channels):
                continue
            indices = group.reader_indices(layer)[channels].flatten()
            handles.append(layer.input_quantizer.register_forward_hook(zero(indices)))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for handle in handles:
            handle.remove()


def _assert_removal_equals_masking(model: nn.Module, x: torch.Tensor) -> list[ChannelGroup]:
    """Prune every group of ``model`` at once; returns the groups (for kind checks)."""
    groups = find_groups(model, x[:1], residual=True)
    plan = {group.name: _plan(group) for group in groups}
    assert all(plan.values())
    expected = _masked_output(model, groups, plan, x)
    params_before = sum(p.numel() for p in model.parameters())
    graph = build_dependency_graph(model, x[:1])
    for group in groups:
        remove_channels_(graph, group, plan[group.name])
    with torch.no_grad():
        actual = model(x)
    assert sum(p.numel() for p in model.parameters()) < params_before
    for group in groups:
        kept = group.num_channels - len(plan[group.name])
        assert all(dw.out_channels == dw.groups == kept for dw in group.depthwise), group.name
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    return groups


def _kinds(groups: list[ChannelGroup]) -> set[tuple[bool, bool]]:
    """(residual, has depthwise convs) of each group."""
    return {(group.residual, bool(group.depthwise)) for group in groups}


@pytest.mark.parametrize("bits", [1, 2, 32])
@pytest.mark.parametrize("model_name", ["tiny_dscnn", "mobilenet_tiny"])
def test_depthwise_models_prune_exactly_in_every_group_kind(model_name: str, bits: int) -> None:
    torch.manual_seed(0)
    model = create_model(model_name, bits=bits, in_channels=1).eval()
    _randomise_batchnorm(model)
    groups = _assert_removal_equals_masking(model, torch.randn(3, 1, 16, 16))
    expected = {(False, True), (True, True)}  # block-internal and residual, with depthwise
    if model_name == "mobilenet_tiny":  # projections read by the head, residual w/o depthwise
        expected |= {(False, False), (True, False)}
    assert _kinds(groups) == expected


@pytest.mark.slow
@pytest.mark.parametrize("bits", [1, 2])
def test_mobilenet_v2_prunes_exactly(bits: int) -> None:
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", bits=bits).eval()
    _randomise_batchnorm(model)
    groups = _assert_removal_equals_masking(model, torch.randn(2, 3, 16, 16))
    assert _kinds(groups) == {(False, True), (True, False), (False, False)}


class ConcatNet(nn.Module):
    """Two stems concatenated (channels of ``right`` are read at an offset of 4), then a conv."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__()
        self.left = quant_conv(spec, 1, 4, 3, stem=True)
        self.right = quant_conv(spec, 1, 6, 3, stem=True)
        self.bn = nn.BatchNorm2d(10)
        self.act = activation(spec)
        self.conv = quant_conv(spec, 10, 8, 3)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = classifier(spec, 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(torch.cat([self.left(x), self.right(x)], 1)))
        x = self.act(self.bn2(self.conv(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class SqueezeExcitationNet(nn.Module):
    """conv - BN - act - squeeze-excitation (1x1 convs 8 -> 4 -> 8, sigmoid gate) - conv."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__()
        self.stem = quant_conv(spec, 1, 8, 3, stem=True)
        self.bn = nn.BatchNorm2d(8)
        self.act = activation(spec)
        self.conv = quant_conv(spec, 8, 8, 3)
        self.bn2 = nn.BatchNorm2d(8)
        self.squeeze = quant_conv(spec, 8, 4, 1)
        self.excite = quant_conv(spec, 4, 8, 1)
        self.out = quant_conv(spec, 8, 8, 3)
        self.fc = classifier(spec, 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.stem(x)))
        x = self.act(self.bn2(self.conv(x)))
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(x, 1)))))
        x = self.out(x * gate)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MLPHeadNet(nn.Module):
    """conv, 2x2 pooling flattened (4 features per channel), then a hidden linear layer."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__()
        self.stem = quant_conv(spec, 1, 6, 3, stem=True)
        self.bn = nn.BatchNorm2d(6)
        self.act = activation(spec)
        self.hidden = QuantLinear(
            24,
            12,
            weight_quantizer=spec.weight_quantizer(),
            input_quantizer=spec.input_quantizer(),
        )
        self.fc = classifier(spec, 12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.act(self.bn(self.stem(x))), 2).flatten(1)
        return self.fc(F.relu(self.hidden(x)))


@pytest.mark.parametrize("bits", [1, 2, 32])
def test_concatenated_channels_are_read_at_their_offset(bits: int) -> None:
    torch.manual_seed(0)
    model = ConcatNet(QuantSpec.from_bits(bits)).eval()
    _randomise_batchnorm(model)
    groups = {g.name: g for g in _assert_removal_equals_masking(model, torch.randn(3, 1, 8, 8))}
    assert set(groups) == {"left", "right", "conv"}
    fresh = {g.name: g for g in find_groups(ConcatNet(QuantSpec()), torch.zeros(1, 1, 8, 8))}
    conv = fresh["right"].consumers[0]
    assert fresh["right"].reader_indices(conv).flatten().tolist() == list(range(4, 10))


@pytest.mark.parametrize("bits", [1, 2, 32])
def test_squeeze_excitation_gate_is_pruned_with_its_channels(bits: int) -> None:
    torch.manual_seed(0)
    model = SqueezeExcitationNet(QuantSpec.from_bits(bits)).eval()
    _randomise_batchnorm(model)
    groups = {g.name: g for g in _assert_removal_equals_masking(model, torch.randn(3, 1, 8, 8))}
    gated = next(g for g in groups.values() if model.conv in g.producers)
    assert gated.producers == [model.conv, model.excite] and gated.residual
    assert model.squeeze in gated.consumers and model.out in gated.consumers
    assert "squeeze" in groups  # the squeeze width is a block-internal group of its own


@pytest.mark.parametrize("bits", [1, 2, 32])
def test_hidden_linear_layer_of_an_mlp_head_is_a_group(bits: int) -> None:
    torch.manual_seed(0)
    model = MLPHeadNet(QuantSpec.from_bits(bits)).eval()
    _randomise_batchnorm(model)
    groups = {g.name: g for g in _assert_removal_equals_masking(model, torch.randn(3, 1, 8, 8))}
    assert set(groups) == {"stem", "hidden"}  # the classifier's outputs are never a group
    stem = find_groups(MLPHeadNet(QuantSpec()), torch.zeros(1, 1, 8, 8))[0]
    assert stem.reader_indices(stem.consumers[0])[1].tolist() == [4, 5, 6, 7]
    assert model.hidden.out_features == model.fc.in_features < 12


class GroupedConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.after = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.after(F.relu(self.grouped(F.relu(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ConcatAddNet(nn.Module):
    """cat(a, b) + c: channel i of c is channel i of a or channel i - 4 of b."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 3, padding=1)
        self.c = nn.Conv2d(1, 8, 3, padding=1)
        self.after = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.after(torch.cat([self.a(x), self.b(x)], 1) + self.c(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize(
    ("model", "refused", "layer"),
    [
        (GroupedConvNet, ["stem", "grouped"], "grouped conv grouped (groups=2"),
        (ConcatAddNet, ["a", "b"], "outputs of a and c"),
    ],
)
def test_unprunable_channels_are_refused_naming_the_layer(
    model: type[nn.Module], refused: list[str], layer: str
) -> None:
    net = model()
    example = torch.zeros(1, 1, 8, 8)
    reasons = refused_groups(net, example)
    assert sorted(reasons) == sorted(refused)
    assert layer in reasons[refused[0]]
    names = {g.name for g in find_groups(net, example, residual=True)}
    assert not names & set(refused) and "after" in names
    with pytest.raises(ConfigError, match=f"channels of {refused[0]} cannot be pruned.*"):
        prune_(net, {refused[0]: 0.5}, criterion="l1", example_input=example)
    with pytest.raises(ConfigError, match=layer.split(" (")[0]):
        shrink_to_(net, {refused[0]: 2}, example_input=example)
    with pytest.raises(KeyError, match="no prunable channel group named nowhere"):
        prune_(net, {"nowhere": 0.5}, criterion="l1", example_input=example)
    prune_(net, {"after": 0.5}, criterion="l1", example_input=example)  # the rest still prunes
    assert net(example).shape == (1, 10)
