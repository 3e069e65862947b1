"""Criteria never degenerate: which criterion scored each group, and that it told the channels
apart, on every registered model (the depthwise-separable and MobileNet ones included)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoprune.models import MODELS, create_model
from autoprune.prune import (
    CRITERIA,
    ChannelGroup,
    Criterion,
    ScoringContext,
    channels_to_remove,
    find_groups,
    prune_,
    score_groups,
)
from autoprune.prune.criteria import base
from autoprune.prune.criteria.base import tie_reason

BIG_MODEL_PARAMS = 1_000_000  # above this (ResNet-18, VGG-Small, MobileNetV2), a slow test


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small convs are fastest single-threaded, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _side(name: str) -> int:
    return 32 if "imagenet" in name else 8


def _every_model() -> list:
    params = {
        name: sum(p.numel() for p in create_model(name).parameters()) for name in MODELS.names()
    }
    return [
        pytest.param(name, marks=pytest.mark.slow) if count > BIG_MODEL_PARAMS else name
        for name, count in params.items()
    ]


def _batch(generator: torch.Generator, side: int, size: int = 8) -> tuple[torch.Tensor, ...]:
    return torch.randn(size, 3, side, side, generator=generator), torch.randint(
        0, 10, (size,), generator=generator
    )


def _trained(name: str, bits: int) -> tuple[nn.Module, ScoringContext, list[ChannelGroup]]:
    """A few SGD steps on random data, BatchNorm statistics averaged over a few batches (so
    eval mode sees activations of a sane scale), then every group and a scoring context."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    side = _side(name)
    model = create_model(name, bits=bits)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    for _ in range(3):
        images, labels = _batch(generator, side)
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average
    with torch.no_grad():
        for _ in range(3):
            model(_batch(generator, side)[0])
    model.eval()
    groups = find_groups(model, torch.zeros(1, 3, side, side), residual=True)
    context = ScoringContext(model=model, batches=[_batch(generator, side)], groups=groups)
    return model, context, groups


def _patterned(layer: nn.Module) -> bool:
    """A quantized conv with kernels of more than one weight (what angle/distance compare)."""
    return (
        isinstance(layer, nn.Conv2d)
        and layer.weight_quantizer.bits < 32
        and layer.kernel_size != (1, 1)
    )


def _expected_scorer(criterion: str, group: ChannelGroup, context: ScoringContext) -> str:
    """The fallback rule as documented: next-layer criteria need a reader with patterned
    kernels, own-layer ones a patterned producer or depthwise conv, taylor scores that are not
    all equal (all 0 where no gradient reaches the group); else l1 scores."""
    if criterion == "taylor":
        tied = tie_reason(CRITERIA.get("taylor").score(group, context)) is not None
        return "l1" if tied else "taylor"
    if criterion.endswith("-next"):
        if any(_patterned(layer) for layer in group.consumers):
            return criterion
        criterion = criterion.removesuffix("-next")
    if criterion in ("angle", "distance"):
        own = any(_patterned(layer) for layer in group.producers + group.depthwise)
        return criterion if own else "l1"
    return criterion


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("model_name", _every_model())
def test_every_criterion_tells_the_channels_of_every_group_apart(
    model_name: str, bits: int
) -> None:
    _, context, groups = _trained(model_name, bits)
    assert groups
    for criterion in CRITERIA.names():
        ranked = score_groups(groups, criterion, context)
        for group in groups:
            result = ranked[group.name]
            assert result.scored_by == _expected_scorer(criterion, group, context), (
                criterion,
                group.name,
            )
            assert (result.fallback_reason is None) == (result.scored_by == criterion)
            assert result.scores.shape == (group.num_channels,)
            assert torch.isfinite(result.scores).all(), (criterion, group.name)
            assert tie_reason(result.scores) is None, (criterion, group.name)


def test_depthwise_separable_model_needs_no_fallback_for_the_paper_criterion() -> None:
    """Issue 14's network: angle-next used to see only 1x1 readers and tie every channel; the
    depthwise convs that read each channel now score it, in every group."""
    _, context, groups = _trained("tiny_dscnn", 2)
    ranked = score_groups(groups, "angle-next", context)
    assert {result.scored_by for result in ranked.values()} == {"angle-next"}


def test_mobilenet_residual_streams_read_by_1x1_convs_fall_back_to_l1() -> None:
    _, context, groups = _trained("mobilenet_tiny", 2)
    streams = [g for g in groups if g.residual and not g.depthwise]
    assert streams
    for group in streams:
        result = CRITERIA.get("angle-next").rank(group, context)
        assert result.scored_by == "l1" and "1x1" in (result.fallback_reason or "")
        torch.testing.assert_close(result.scores, CRITERIA.get("l1")(group, context))


EXACT, FAR = 3, 7


def test_depthwise_kernels_rank_the_channels_they_read() -> None:
    """Plant an exactly quantizable and a far-from-quantized depthwise kernel on two channels
    of the stem group: angle-next keeps the one and prunes the other first."""
    torch.manual_seed(0)
    model = create_model("tiny_dscnn", bits=2).eval()
    group = find_groups(model, torch.zeros(1, 3, 16, 16))[0]
    depthwise = group.depthwise[0]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        depthwise.weight[EXACT] = torch.randint(0, 2, (1, 3, 3), generator=generator) * 2.0 - 1
        depthwise.weight[FAR] = 0.01
        depthwise.weight[FAR, 0, 0, 0] = 5.0
    for criterion in ("angle-next", "distance-next"):
        result = CRITERIA.get(criterion).rank(group)
        assert result.scored_by == criterion
        assert result.scores.argmax() == EXACT and result.scores.argmin() == FAR
        assert channels_to_remove(result.scores, 1 / group.num_channels) == [FAR]


def _constant(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
    return torch.full((group.num_channels,), 2.5)


@pytest.mark.parametrize(
    ("offsets", "tied"), [(0.0, True), (1e-9, True), (1e-3, False)], ids=["equal", "1e-9", "1e-3"]
)
def test_tied_scores_hand_the_group_to_the_fallback(offsets: float, tied: bool) -> None:
    def nearly_constant(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
        return _constant(group, context) + offsets * torch.arange(group.num_channels)

    group = find_groups(create_model("tiny_cnn", bits=2), torch.zeros(1, 3, 8, 8))[1]
    result = Criterion("nearly-constant", nearly_constant, fallback="l1").rank(group)
    assert result.scored_by == ("l1" if tied else "nearly-constant")
    assert result.fallback_reason == ("all scores are equal" if tied else None)
    if tied:
        torch.testing.assert_close(result.scores, CRITERIA.get("l1")(group))


def test_fallbacks_warn_once_per_criterion_and_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(base, "_warned", set())
    _, context, groups = _trained("mobilenet_tiny", 2)
    with caplog.at_level(logging.WARNING, logger="autoprune.prune.criteria.base"):
        for _ in range(2):
            ranked = score_groups(groups, "angle-next", context)
    fallbacks = sum(result.scored_by != "angle-next" for result in ranked.values())
    assert fallbacks >= 2  # several groups, yet one warning per step of the chain
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "criterion angle-next" in messages[0] and "scored by angle instead" in messages[0]
    assert "criterion angle " in messages[1] and "scored by l1 instead" in messages[1]


def test_prune_ranks_1x1_only_groups_by_the_fallback_not_by_index() -> None:
    """What prune_ removes from a group only 1x1 convs read is what l1 would remove."""
    example = torch.zeros(1, 3, 16, 16)
    name = "residual:blocks"

    def removed(criterion: str) -> torch.Tensor:
        torch.manual_seed(0)
        model = create_model("mobilenet_tiny", bits=2).eval()
        group = {g.name: g for g in find_groups(model, example, residual=True)}[name]
        producer = group.producers[1]
        before = producer.weight.detach().clone()
        prune_(model, {name: 0.5}, criterion=criterion, example_input=example)
        kept = producer.weight.detach()
        return torch.tensor([not (kept == row).all(dim=(1, 2, 3)).any() for row in before])

    by_fallback = removed("angle-next")
    assert by_fallback.sum() == 8
    assert torch.equal(by_fallback, removed("l1"))
    assert not torch.equal(by_fallback, torch.arange(16) < 8)  # not channels 0..7
