"""Channel criteria: which channels of a group matter least.

A criterion maps a ``ChannelGroup`` to one importance score per channel; the channels with
the *lowest* importance are removed first. A new criterion is one function registered in
``CRITERIA``.

The paper's criterion (Guerra et al., 2020, docs/METHOD 1.2) measures how far each 2-D
kernel ``w`` of latent weights sits from its quantized image ``Q(w)``:
``theta = arccos(<w, Q(w)> / (||w||_2 ||Q(w)||_2))`` (for BNN, ``Q = sign`` gives
``arccos(||w||_1 / (||w||_2 sqrt(n)))``). Kernels far from their quantized version are the
redundant ones, so importance is ``-theta``. The "next layer" variant scores channel ``c`` by
the mean angle of the kernels of the consuming layers that read ``c``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from autoprune.prune.groups import ChannelGroup
from autoprune.quant import weight_bits
from autoprune.registry import Registry

Criterion = Callable[[ChannelGroup], torch.Tensor]
CRITERIA: Registry[Criterion] = Registry("criterion")


def _quantized_weight(layer: nn.Module) -> torch.Tensor:
    quantize = getattr(layer, "quantized_weight", None)
    return quantize() if quantize is not None else layer.weight


def kernel_angles(layer: nn.Module) -> torch.Tensor:
    """Angle (radians) between each kernel ``W[o, i]`` and its quantized image: ``[out, in]``."""
    latent = layer.weight.detach().flatten(2) if layer.weight.dim() > 2 else layer.weight[..., None]
    quantized = _quantized_weight(layer).detach().reshape(latent.shape)
    dot = (latent * quantized).sum(-1)
    norms = latent.norm(dim=-1) * quantized.norm(dim=-1)
    cosine = torch.where(norms > 0, dot / norms.clamp_min(1e-12), torch.ones_like(dot))
    return torch.arccos(cosine.clamp(-1.0, 1.0))


def kernel_distances(layer: nn.Module) -> torch.Tensor:
    """Squared distance ``||Q(w) - w||^2`` of each kernel ``W[o, i]``: ``[out, in]``."""
    latent = layer.weight.detach().flatten(2) if layer.weight.dim() > 2 else layer.weight[..., None]
    quantized = _quantized_weight(layer).detach().reshape(latent.shape)
    return (quantized - latent).pow(2).sum(-1)


def _own_layer(per_kernel: Callable[[nn.Module], torch.Tensor]) -> Criterion:
    def score(group: ChannelGroup) -> torch.Tensor:
        return -per_kernel(group.producer).mean(dim=1)

    return score


def _next_layer(per_kernel: Callable[[nn.Module], torch.Tensor]) -> Criterion:
    """Mean over the quantized convs that read the channel; own layer if none is quantized."""

    def score(group: ChannelGroup) -> torch.Tensor:
        readers = [
            layer
            for layer in group.consumers
            if isinstance(layer, nn.Conv2d) and weight_bits(layer) < 32
        ]
        if not readers:
            return _own_layer(per_kernel)(group)
        per_channel = torch.stack([per_kernel(layer).mean(dim=0) for layer in readers])
        return -per_channel.mean(dim=0)

    return score


CRITERIA.register("angle")(_own_layer(kernel_angles))
CRITERIA.register("distance")(_own_layer(kernel_distances))
CRITERIA.register("angle-next")(_next_layer(kernel_angles))
CRITERIA.register("distance-next")(_next_layer(kernel_distances))


@CRITERIA.register("l1")
def l1_norm(group: ChannelGroup) -> torch.Tensor:
    """L1 norm of each output filter's latent weights (Li et al., 2017)."""
    return group.producer.weight.detach().abs().flatten(1).sum(dim=1)
