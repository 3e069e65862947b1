"""MobileNetV2 and the depthwise-separable reference model: published sizes, layout, groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.models import create_model
from autoprune.models.mobilenet import MOBILENET_V2_STAGES
from autoprune.prune import find_groups
from autoprune.quant import QuantConv2d


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _mobilenet_v2_params(num_classes: int) -> int:
    """By formula: bias-free convs, 2 BatchNorm parameters per channel, classifier with bias."""
    params = 9 * 3 * 32 + 2 * 32
    channels = 32
    for expansion, width, count, _ in MOBILENET_V2_STAGES:
        for _ in range(count):
            hidden = channels * expansion
            if expansion != 1:
                params += channels * hidden + 2 * hidden
            params += 9 * hidden + 2 * hidden + hidden * width + 2 * width
            channels = width
    params += channels * 1280 + 2 * 1280
    return params + 1280 * num_classes + num_classes


def test_mobilenet_v2_imagenet_has_the_published_size() -> None:
    """torchvision's mobilenet_v2 has 3,504,872 parameters at 1000 classes (paper: 3.4 M)."""
    assert _mobilenet_v2_params(1000) == 3_504_872
    assert _count(create_model("mobilenet_v2_imagenet", num_classes=1000)) == 3_504_872
    # the 32x32 variant changes strides only
    assert _count(create_model("mobilenet_v2", num_classes=10)) == _mobilenet_v2_params(10)


@pytest.mark.parametrize(
    ("name", "side", "final"), [("mobilenet_v2", 32, 4), ("mobilenet_tiny", 32, 8)]
)
def test_small_image_variants_keep_resolution(name: str, side: int, final: int) -> None:
    model = create_model(name, num_classes=10).eval()
    seen: list[tuple[int, ...]] = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    assert seen == [(final, final)]


def test_imagenet_variant_divides_resolution_by_32() -> None:
    model = create_model("mobilenet_v2_imagenet", num_classes=10).eval()
    seen: list[tuple[int, ...]] = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert seen == [(2, 2)]


@pytest.mark.parametrize("name", ["mobilenet_tiny", "tiny_dscnn"])
def test_depthwise_convs_are_quantized_and_never_groups_of_their_own(name: str) -> None:
    model = create_model(name, bits=2)
    depthwise = [
        m for m in model.modules() if isinstance(m, QuantConv2d) and m.groups == m.in_channels > 1
    ]
    assert depthwise and all(m.weight_quantizer.bits == 2 for m in depthwise)
    groups = find_groups(model, torch.zeros(1, 3, 16, 16), residual=True)
    coupled = [dw for group in groups for dw in group.depthwise]
    assert sorted(map(id, coupled)) == sorted(map(id, depthwise))  # each in exactly one group
    assert not any(dw in group.producers for group in groups for dw in depthwise)
    assert all(dw in group.consumers for group in groups for dw in group.depthwise)


def test_ds_reference_model_largest_layer_is_on_the_residual_stream() -> None:
    """As in issue 14: the last 96x96 pointwise conv holds over half of the quantized weights
    and is prunable only through the residual group, which also holds the depthwise conv."""
    model = create_model("tiny_dscnn", bits=2)
    quantized = [
        m for m in model.modules() if isinstance(m, QuantConv2d) and m.weight_quantizer.bits < 32
    ]
    largest = model.blocks[2].pointwise[0]
    share = largest.weight.numel() / sum(m.weight.numel() for m in quantized)
    assert largest.weight.shape[:2] == (96, 96) and 0.5 < share < 0.6
    groups = {g.name: g for g in find_groups(model, torch.zeros(1, 3, 16, 16), residual=True)}
    assert list(groups) == ["stem.0", "blocks.0.pointwise.0", "residual:blocks"]
    stream = groups["residual:blocks"]
    assert stream.producers == [model.blocks[1].pointwise[0], largest]
    assert stream.depthwise == [model.blocks[2].depthwise[0]]
    assert groups["stem.0"].depthwise == [model.blocks[0].depthwise[0]]
    assert not groups["stem.0"].residual
