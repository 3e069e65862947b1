"""The paper's criteria: how far each kernel's latent weights sit from their quantized image.

Guerra et al. (2020, docs METHOD 1.2). For each 2-D kernel ``w = W[o, i]`` of ``n`` weights:
``theta = arccos(<w, Q(w)> / (||w||_2 ||Q(w)||_2))`` (for BNN, ``Q = sign`` gives
``arccos(||w||_1 / (||w||_2 sqrt(n)))``), or the squared distance ``||Q(w) - w||_2^2``.
Kernels far from their quantized version are the redundant ones, so importance is the
*negated* score: the channels with the largest angle / distance are pruned first.

- ``angle`` / ``distance``: channel ``c`` scores the mean over its input channels of its own
  kernels ``W[c, i]`` in every quantized layer producing it: the producer conv (each of a
  residual group's, combined with ``combine_producers``, the mean of the scores normalised by
  each producer's mean magnitude) and the depthwise convs that filter it (their kernel ``c``).
- ``angle-next`` / ``distance-next`` (the paper's default): channel ``c`` scores the mean over
  every kernel that reads it in the quantized layers that read it: ``W'[o, c]`` of a conv, the
  depthwise kernel ``c`` of a depthwise conv (all of a residual stream's readers for a residual
  group); each reader weighs equally.

Only kernels of more than one weight count: a 1-element kernel (1x1 convs, linear layers) has
no pattern, its angle to its quantized image is always 0. Where no quantized layer has such
kernels for the group (or all scores are equal), the group falls back (``Indistinct``):
``*-next`` to the own-layer criterion, the own-layer criterion to ``l1``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from autoprune.prune.criteria.base import (
    Indistinct,
    ScoreFunction,
    ScoringContext,
    combine_producers,
    register_criterion,
)
from autoprune.prune.groups import ChannelGroup, is_depthwise
from autoprune.quant import weight_bits

KernelScore = Callable[[nn.Module], torch.Tensor]


def _quantized_weight(layer: nn.Module) -> torch.Tensor:
    quantize = getattr(layer, "quantized_weight", None)
    return quantize() if quantize is not None else layer.weight


def _latent_and_quantized(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    weight = layer.weight.detach()
    latent = weight.flatten(2) if weight.dim() > 2 else weight[..., None]
    return latent, _quantized_weight(layer).detach().reshape(latent.shape)


def kernel_angles(layer: nn.Module) -> torch.Tensor:
    """Angle (radians) between each kernel ``W[o, i]`` and its quantized image: ``[out, in]``."""
    latent, quantized = _latent_and_quantized(layer)
    dot = (latent * quantized).sum(-1)
    norms = latent.norm(dim=-1) * quantized.norm(dim=-1)
    cosine = torch.where(norms > 0, dot / norms.clamp_min(1e-12), torch.ones_like(dot))
    return torch.arccos(cosine.clamp(-1.0, 1.0))


def kernel_distances(layer: nn.Module) -> torch.Tensor:
    """Squared distance ``||Q(w) - w||^2`` of each kernel ``W[o, i]``: ``[out, in]``."""
    latent, quantized = _latent_and_quantized(layer)
    return (quantized - latent).pow(2).sum(-1)


def _has_patterned_kernels(layer: nn.Module) -> bool:
    """A quantized conv whose kernels have more than one weight."""
    return (
        isinstance(layer, nn.Conv2d)
        and weight_bits(layer) < 32
        and layer.kernel_size[0] * layer.kernel_size[1] > 1
    )


def _per_input_channel(layer: nn.Module, per_kernel: KernelScore) -> torch.Tensor:
    """Score of each input channel of ``layer``: the mean over the kernels reading it."""
    scores = per_kernel(layer)  # [out, in / groups]
    return scores[:, 0] if is_depthwise(layer) else scores.mean(dim=0)


def _own_layer(per_kernel: KernelScore) -> ScoreFunction:
    def score(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
        producers = [p for p in group.producers if _has_patterned_kernels(p)]
        filters = [dw for dw in group.depthwise if _has_patterned_kernels(dw)]
        if not producers and not filters:
            raise Indistinct("their own kernels are 1x1 or full precision")
        per_layer = [-per_kernel(p).mean(dim=1) for p in producers]
        per_layer += [-per_kernel(dw)[:, 0][group.reader_indices(dw)].mean(dim=1) for dw in filters]
        return combine_producers(per_layer)

    return score


def _next_layer(per_kernel: KernelScore) -> ScoreFunction:
    def score(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
        readers = [layer for layer in group.consumers if _has_patterned_kernels(layer)]
        if not readers:
            raise Indistinct("only 1x1 kernels or full-precision layers read them")
        # mean over every reading kernel: readers' kernels are all angles (or distances) of
        # the same kind, so a plain mean over them, as the paper does for one next layer
        per_channel = torch.stack(
            [
                _per_input_channel(layer, per_kernel)[group.reader_indices(layer)].mean(dim=1)
                for layer in readers
            ]
        )
        return -per_channel.mean(dim=0)

    return score


register_criterion("angle", fallback="l1")(_own_layer(kernel_angles))
register_criterion("distance", fallback="l1")(_own_layer(kernel_distances))
register_criterion("angle-next", fallback="angle")(_next_layer(kernel_angles))
register_criterion("distance-next", fallback="distance")(_next_layer(kernel_distances))
