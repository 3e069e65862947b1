"""The paper's criteria: how far each kernel's latent weights sit from their quantized image.

Guerra et al. (2020, docs METHOD 1.2). For each 2-D kernel ``w = W[o, i]`` of ``n`` weights:
``theta = arccos(<w, Q(w)> / (||w||_2 ||Q(w)||_2))`` (for BNN, ``Q = sign`` gives
``arccos(||w||_1 / (||w||_2 sqrt(n)))``), or the squared distance ``||Q(w) - w||_2^2``.
Kernels far from their quantized version are the redundant ones, so importance is the
*negated* score: the channels with the largest angle / distance are pruned first.

- ``angle`` / ``distance``: channel ``c`` of a conv scores the mean over its input channels
  of its own kernels ``W[c, i]``. In a residual group, each quantized producer conv is scored
  so and the producers are combined with ``combine_producers`` (mean of the scores normalised
  by each producer's mean magnitude); full-precision producers (the stem) are left out, their
  angle and distance are identically 0, unless no producer is quantized.
- ``angle-next`` / ``distance-next`` (the paper's default): channel ``c`` scores the mean over
  every kernel ``W'[o, c]`` of the quantized convs that read it (all of a residual stream's
  readers for a residual group); where no quantized conv reads it (e.g. only the
  full-precision classifier does), the own-layer score.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from autoprune.prune.criteria.base import (
    ScoreFunction,
    ScoringContext,
    combine_producers,
    register_criterion,
)
from autoprune.prune.groups import ChannelGroup
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


def _is_quantized_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and weight_bits(layer) < 32


def _own_layer(per_kernel: KernelScore) -> ScoreFunction:
    def score(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
        producers = [p for p in group.producers if _is_quantized_conv(p)] or group.producers
        return combine_producers([-per_kernel(p).mean(dim=1) for p in producers])

    return score


def _next_layer(per_kernel: KernelScore) -> ScoreFunction:
    own = _own_layer(per_kernel)

    def score(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
        readers = [layer for layer in group.consumers if _is_quantized_conv(layer)]
        if not readers:
            return own(group, context)
        # mean over every reading kernel: readers' kernels are all angles (or distances) of
        # the same kind, so a plain mean over them, as the paper does for one next layer
        per_channel = torch.stack([per_kernel(layer).mean(dim=0) for layer in readers])
        return -per_channel.mean(dim=0)

    return score


register_criterion("angle")(_own_layer(kernel_angles))
register_criterion("distance")(_own_layer(kernel_distances))
register_criterion("angle-next")(_next_layer(kernel_angles))
register_criterion("distance-next")(_next_layer(kernel_distances))
