"""Criteria: one finite score per channel everywhere, and planted redundancy ranked first."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.models import MODELS, create_model
from autoprune.prune import (
    CRITERIA,
    ChannelGroup,
    ScoringContext,
    channels_to_remove,
    find_groups,
    kernel_angles,
    kernel_distances,
    prune_,
)

BIG_MODEL_PARAMS = 2_000_000  # above this, score only a couple of groups to stay fast


def _batch(images: int = 4, channels: int = 3, size: int = 16) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(images, channels, size, size, generator=generator)
    return x, torch.arange(images) % 10


def _every_model() -> list:
    """Every registered model; the big ones (tracing them takes many seconds) run as slow."""
    params = {
        name: sum(p.numel() for p in create_model(name).parameters()) for name in MODELS.names()
    }
    return [
        pytest.param(name, marks=pytest.mark.slow) if count > BIG_MODEL_PARAMS else name
        for name, count in params.items()
    ]


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("model_name", _every_model())
def test_every_criterion_scores_every_channel_of_every_group(model_name: str, bits: int) -> None:
    torch.manual_seed(0)
    model = create_model(model_name, bits=bits)
    batch = _batch(2, size=8)
    groups = find_groups(model, batch[0][:1], residual=True)
    internal = [g for g in groups if not g.residual]
    coupled = [g for g in groups if g.residual]
    assert internal
    if sum(p.numel() for p in model.parameters()) > BIG_MODEL_PARAMS:
        internal, coupled = internal[:2], coupled[:2]
    context = ScoringContext(model=model, batches=[batch], seed=0, groups=internal + coupled)
    for criterion in CRITERIA.names():
        for group in internal + coupled:
            scores = CRITERIA.get(criterion)(group, context)
            assert scores.shape == (group.num_channels,), (criterion, group.name)
            assert torch.isfinite(scores).all(), (criterion, group.name)


def _groups(model_name: str, bits: int) -> tuple[nn.Module, dict[str, ChannelGroup]]:
    torch.manual_seed(0)
    model = create_model(model_name, bits=bits).eval()
    groups = find_groups(model, torch.zeros(1, 3, 8, 8), residual=True)
    return model, {group.name: group for group in groups}


# (model, group): a block-internal group and a residual one whose producers include the
# full-precision stem and a shortcut conv
PLANT_GROUPS = [("tiny_cnn", "features.3"), ("resnet20", "residual:conv1")]
EXACT, FAR = 3, 7


def _plant(layer: nn.Module, channel_dim: int, generator: torch.Generator) -> None:
    """Channel EXACT: weights +-1, which BNN and DoReFa map to themselves (Q(w) = w, as +-1
    also holds the tensor's max |w|); channel FAR: one dominant weight per kernel, the rest
    near 0, far from every quantized pattern in angle and in distance."""
    with torch.no_grad():
        weight = layer.weight.transpose(0, 1) if channel_dim == 1 else layer.weight
        shape = weight[EXACT].shape
        weight[EXACT] = torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
        weight[FAR] = 0.01
        weight[FAR, ..., 0, 0] = 5.0


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize(("model_name", "group_name"), PLANT_GROUPS)
@pytest.mark.parametrize("criterion", ["angle", "distance"])
def test_own_layer_criteria_keep_exact_and_prune_far_channel(
    criterion: str, model_name: str, group_name: str, bits: int
) -> None:
    _, groups = _groups(model_name, bits)
    group = groups[group_name]
    generator = torch.Generator().manual_seed(0)
    quantized = [p for p in group.producers if p.weight_quantizer.bits < 32]
    for producer in quantized:
        _plant(producer, 0, generator)
    per_kernel = kernel_angles if criterion == "angle" else kernel_distances
    for producer in quantized:
        assert torch.allclose(per_kernel(producer)[EXACT], torch.zeros(()), atol=1e-3)
    scores = CRITERIA.get(criterion)(group)
    assert scores.argmax() == EXACT and scores.argmin() == FAR
    assert channels_to_remove(scores, 1 / group.num_channels) == [FAR]


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize(("model_name", "group_name"), PLANT_GROUPS)
@pytest.mark.parametrize("criterion", ["angle-next", "distance-next"])
def test_next_layer_criteria_keep_exact_and_prune_far_channel(
    criterion: str, model_name: str, group_name: str, bits: int
) -> None:
    _, groups = _groups(model_name, bits)
    group = groups[group_name]
    generator = torch.Generator().manual_seed(0)
    readers = [c for c in group.consumers if isinstance(c, nn.Conv2d)]
    assert readers
    for reader in readers:
        _plant(reader, 1, generator)
    scores = CRITERIA.get(criterion)(group)
    assert scores.argmax() == EXACT and scores.argmin() == FAR
    assert channels_to_remove(scores, 1 / group.num_channels) == [FAR]


@pytest.mark.parametrize(("model_name", "group_name"), PLANT_GROUPS)
def test_l1_prunes_zero_filter_first(model_name: str, group_name: str) -> None:
    _, groups = _groups(model_name, 2)
    group = groups[group_name]
    with torch.no_grad():
        for producer in group.producers:
            producer.weight[5] = 0.0
    scores = CRITERIA.get("l1")(group)
    assert scores[5] == 0
    assert channels_to_remove(scores, 1 / group.num_channels) == [5]


def _batchnorm_after(model: nn.Module, conv: nn.Module) -> nn.BatchNorm2d:
    modules = list(model.modules())
    following = modules[modules.index(conv) + 1 :]
    return next(m for m in following if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize(("model_name", "group_name"), PLANT_GROUPS)
def test_taylor_scores_a_silenced_channel_zero_and_prunes_it_first(
    model_name: str, group_name: str, bits: int
) -> None:
    model, groups = _groups(model_name, bits)
    group = groups[group_name]
    with torch.no_grad():
        for producer in group.producers:  # the channel's output is 0 whatever its input
            norm = _batchnorm_after(model, producer)
            norm.weight[5] = 0.0
            norm.bias[5] = 0.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    context = ScoringContext(model=model, batches=[_batch(8, size=8)])
    scores = CRITERIA.get("taylor")(group, context)
    assert scores[5] == 0 and (scores[torch.arange(group.num_channels) != 5] > 0).all()
    assert channels_to_remove(scores, 1 / group.num_channels) == [5]
    # scoring leaves the model as it was: weights, BatchNorm statistics, no stray gradients
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_taylor_residual_group_sums_producers_before_squaring() -> None:
    """t_b[c] sums every producer's terms: the scores are not a sum of per-producer scores."""
    model, groups = _groups("tiny_resnet", 2)
    group = groups["residual:layers.1.0"]
    context = ScoringContext(model=model, batches=[_batch(8, size=8)])
    taylor = CRITERIA.get("taylor")
    coupled = taylor(group, context)
    alone = [
        taylor(ChannelGroup(group.name, p, group.num_channels, producers=[p]), context)
        for p in group.producers
    ]
    assert len(alone) == 2 and not torch.allclose(coupled, alone[0] + alone[1])
    terms = context.cache["taylor_terms"]
    expected = (terms[group.producers[0]] + terms[group.producers[1]]).double().pow(2).mean(0)
    torch.testing.assert_close(coupled, expected)


def test_taylor_without_calibration_names_the_fix() -> None:
    model = create_model("tiny_cnn", bits=2)
    with pytest.raises(ConfigError, match="calibration"):
        prune_(
            model, {"features.3": 0.5}, criterion="taylor", example_input=torch.zeros(1, 3, 8, 8)
        )
    assert model.features[3].out_channels == 16  # nothing was pruned


def test_taylor_prune_uses_calibration_batches() -> None:
    model = create_model("tiny_cnn", bits=2).eval()
    kept = prune_(
        model,
        {"features.3": 0.5},
        criterion="taylor",
        example_input=torch.zeros(1, 3, 8, 8),
        calibration=[_batch(4, size=8)],
    )
    assert kept["features.3"] == 8


def test_random_is_seeded_and_differs_across_seeds() -> None:
    _, groups = _groups("resnet20", 2)
    group = groups["layers.1.0.conv1"]
    random = CRITERIA.get("random")

    def draw(seed: int) -> torch.Tensor:
        return random(group, ScoringContext(seed=seed))

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    assert not torch.equal(draw(0), random(groups["layers.1.1.conv1"], ScoringContext(seed=0)))
    assert ((draw(0) >= 0) & (draw(0) < 1)).all()


def test_random_pruning_is_reproducible_per_seed() -> None:
    def pruned_weight(seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        model = create_model("tiny_cnn", bits=2)
        prune_(
            model,
            {"features.3": 0.5},
            criterion="random",
            example_input=torch.zeros(1, 3, 8, 8),
            seed=seed,
        )
        return model.features[3].weight.detach()

    assert torch.equal(pruned_weight(4), pruned_weight(4))
    assert not torch.equal(pruned_weight(4), pruned_weight(5))
