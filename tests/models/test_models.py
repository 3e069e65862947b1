"""Contracts every registered model keeps (a new one is covered by registering it), and the
published sizes of the standard architectures, derived here by formula."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import pytest
import torch

from autoprune.models import MODELS, create_model
from autoprune.prune import find_groups, prune_
from autoprune.quant import QuantConv2d, QuantLinear, QuantSpec


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small convs are fastest single-threaded, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SPECS = {"fp32": QuantSpec(), "bnn": QuantSpec.from_bits(1), "w2a2": QuantSpec.from_bits(2)}


def _side(name: str) -> int:
    """ImageNet-style stems divide by 4 before the first block: give them more pixels."""
    return 64 if "imagenet" in name else 16


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# each spec once and each channel count (the full product doubles the time of the big nets;
# 1-channel 2-bit input is also covered by test_digit_sized_inputs_run)
@pytest.mark.parametrize(("in_channels", "spec_name"), [(3, "fp32"), (1, "bnn"), (3, "w2a2")])
@pytest.mark.parametrize("name", MODELS.names())
def test_forward_and_backward(name: str, in_channels: int, spec_name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, spec=SPECS[spec_name], num_classes=7, in_channels=in_channels)
    x = torch.randn(2, in_channels, _side(name), _side(name))
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", MODELS.names())
def test_digit_sized_inputs_run(name: str) -> None:
    """Global pooling: every model takes the 8x8 digits (and 1 class more, 5, for oddness)."""
    model = create_model(name, bits=2, num_classes=5, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 8, 8)).shape == (1, 5)


@pytest.mark.parametrize("name", MODELS.names())
def test_edge_layers_follow_the_spec(name: str) -> None:
    """First conv: edge-precision weights, no input quantizer; classifier: edge precision;
    every other layer: the network's own bits."""
    model = create_model(name, bits=1)
    layers = [m for m in model.modules() if isinstance(m, QuantConv2d)]
    head = [m for m in model.modules() if isinstance(m, QuantLinear)]
    assert layers[0].weight_quantizer.bits == 32 and layers[0].input_quantizer.bits == 32
    assert len(head) == 1
    assert head[0].weight_quantizer.bits == 32 and head[0].input_quantizer.bits == 32
    assert all(conv.weight_quantizer.bits == 1 for conv in layers[1:])
    assert all(conv.input_quantizer.bits == 1 for conv in layers[1:])
    net = create_model(name, spec=QuantSpec.from_options(bits=2, edge_bits="net"))
    quantized = [m for m in net.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert all(m.weight_quantizer.bits == 2 for m in quantized)
    assert quantized[-1].input_quantizer.bits == 2


@pytest.mark.parametrize("name", MODELS.names())
def test_groups_are_found_and_prunable(name: str) -> None:
    """Torch-Pruning traces every model; removing half of one group keeps it runnable."""
    torch.manual_seed(0)
    model = create_model(name, bits=2, num_classes=3, in_channels=1).eval()
    example = torch.zeros(1, 1, _side(name), _side(name))
    groups = find_groups(model, example, residual=True)
    internal = [g for g in groups if not g.residual]
    assert internal
    assert len({g.name for g in groups}) == len(groups)
    before = _count(model)
    prune_(model, {internal[-1].name: 0.5}, criterion="l1", example_input=example)
    assert _count(model) < before
    with torch.no_grad():
        assert model(example).shape == (1, 3)


def _basic_resnet_params(
    stem_kernel: int, blocks: Sequence[int], widths: Sequence[int], num_classes: int
) -> tuple[int, int]:
    """(parameters with 1x1 projection shortcuts (option B), parameters of those projections)
    of a basic-block ResNet on 3-channel input: convs without bias, BN = 2 per channel,
    classifier with bias."""
    params = stem_kernel**2 * 3 * widths[0] + 2 * widths[0]
    projections = 0
    channels = widths[0]
    for count, width in zip(blocks, widths, strict=True):
        for _ in range(count):
            params += 9 * channels * width + 2 * width + 9 * width * width + 2 * width
            if channels != width:  # only the first block of stages 2.. changes the shape
                projections += channels * width + 2 * width
            channels = width
    return params + projections + channels * num_classes + num_classes, projections


@pytest.mark.parametrize(
    ("name", "stem", "blocks", "widths", "classes", "published_millions", "digits"),
    [
        # He et al. 2016 (CIFAR, option A shortcuts): 0.27 M, 0.46 M, 0.85 M
        ("resnet20", 3, (3, 3, 3), (16, 32, 64), 10, 0.27, 2),
        ("resnet32", 3, (5, 5, 5), (16, 32, 64), 10, 0.46, 2),
        ("resnet56", 3, (9, 9, 9), (16, 32, 64), 10, 0.85, 2),
        # ImageNet (option B, like the paper's): 11.69 M (torchvision: 11,689,512), 21.8 M
        ("resnet18_imagenet", 7, (2, 2, 2, 2), (64, 128, 256, 512), 1000, 11.69, 2),
        ("resnet34_imagenet", 7, (3, 4, 6, 3), (64, 128, 256, 512), 1000, 21.8, 1),
        # the 3x3-stem ResNet-18 used for CIFAR: no published figure, formula only
        ("resnet18", 3, (2, 2, 2, 2), (64, 128, 256, 512), 10, None, 0),
    ],
)
def test_resnet_parameter_counts(
    name: str,
    stem: int,
    blocks: tuple[int, ...],
    widths: tuple[int, ...],
    classes: int,
    published_millions: float | None,
    digits: int,
) -> None:
    """Exact count by formula; the paper's figure within the shortcut difference: the CIFAR
    ResNets use option A shortcuts there (no parameters), so subtract the projections."""
    expected, projections = _basic_resnet_params(stem, blocks, widths, classes)
    assert _count(create_model(name, num_classes=classes)) == expected
    if published_millions is not None:
        paper = expected - projections if stem == 3 else expected
        assert round(paper / 1e6, digits) == published_millions


def test_known_exact_counts() -> None:
    """Figures quoted in the docstrings, which the formula above reproduces."""
    assert _basic_resnet_params(7, (2, 2, 2, 2), (64, 128, 256, 512), 1000)[0] == 11_689_512
    assert _basic_resnet_params(7, (3, 4, 6, 3), (64, 128, 256, 512), 1000)[0] == 21_797_672
    assert _basic_resnet_params(3, (3, 3, 3), (16, 32, 64), 10) == (272_474, 2_752)


def test_vgg_small_parameter_count() -> None:
    """Six 3x3 convs 128-128-256-256-512-512 without bias, a BN each, global pooling and one
    linear layer (512 * classes + classes)."""
    widths = (3, 128, 128, 256, 256, 512, 512)
    convs = sum(9 * a * b + 2 * b for a, b in itertools.pairwise(widths))
    assert _count(create_model("vgg_small", num_classes=10)) == convs + 512 * 10 + 10
    assert convs + 5130 == 4_583_306  # the figure in autoprune/models/vgg.py


def test_imagenet_resnet_uses_torchvision_names() -> None:
    """Key names (and shapes) of torchvision's resnet18, so its weights load directly."""
    state = create_model("resnet18_imagenet", num_classes=1000).state_dict()
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["layer4.1.bn2.running_var"].shape == (512,)
    assert state["fc.weight"].shape == (1000, 512) and state["fc.bias"].shape == (1000,)
    assert not any(key.startswith(("layers.", "shortcut")) for key in state)
    stages = {key.split(".")[0] for key in state}
    assert stages == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}


def test_imagenet_stem_divides_resolution_by_four() -> None:
    model = create_model("resnet18_imagenet", num_classes=10).eval()
    seen: list[tuple[int, ...]] = []
    model.layer1.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert seen == [(1, 64, 16, 16)]


@pytest.mark.parametrize("bits", [2, 1])
def test_activation_before_a_quantized_conv_is_left_out_without_changing_the_network(
    bits: int,
) -> None:
    """act1 of a block only feeds conv2, whose quantizer subsumes it: it becomes the identity,
    and putting the explicit ReLU/Hardtanh back changes neither outputs nor gradients."""
    torch.manual_seed(0)
    fused = create_model("resnet20", bits=bits, num_classes=10, in_channels=3).train()
    explicit = create_model("resnet20", bits=bits, num_classes=10, in_channels=3).train()
    explicit.load_state_dict(fused.state_dict())
    blocks = [m for m in explicit.modules() if hasattr(m, "act1") and hasattr(m, "conv2")]
    assert blocks and all(isinstance(block.act1, torch.nn.Identity) for block in blocks)
    for block in blocks:
        block.act1 = type(block.act2)()  # the ReLU / Hardtanh the block would have had
    images = torch.randn(16, 3, 32, 32)
    outputs = [model(images) for model in (fused, explicit)]
    assert torch.equal(outputs[0], outputs[1])
    for output in outputs:
        output.square().sum().backward()
    for (name, ours), (_, reference) in zip(
        fused.named_parameters(), explicit.named_parameters(), strict=True
    ):
        assert torch.allclose(ours.grad, reference.grad, rtol=1e-5, atol=1e-7), name
    float_model = create_model("resnet20", bits=32, num_classes=10, in_channels=3)
    assert isinstance(float_model.layers[0][0].act1, torch.nn.ReLU)  # nothing to subsume it
