"""How much of a network's quantized size each channel group controls.

A group's share is the fraction of the quantized size attached to its channels: the weights
and biases of the layers that produce them, read them, or filter them (depthwise), which
removing all of its channels would remove. It is measured, not estimated: the group is shrunk
to one channel on a copy of the network, and the removed size is scaled by ``n / (n - 1)``
(a single group's size is linear in its channel count). The share of several groups together
(``combined_share``) is the size removed when every one of them keeps one channel, which
counts a layer between two of them once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.metrics import measure
from autoprune.prune.apply import shrink_to_
from autoprune.prune.groups import find_groups


@dataclass(frozen=True)
class GroupShare:
    """One group: its name, channel count, whether it is residual and its size share."""

    name: str
    channels: int
    residual: bool
    share: float  # fraction of the quantized size, in [0, 1]


def _size_after(model: nn.Module, kept: dict[str, int], input_shape: Sequence[int]) -> int:
    pruned = copy.deepcopy(model)
    with torch.inference_mode(False), torch.enable_grad():  # Torch-Pruning traces with autograd
        shrink_to_(pruned, kept, example_input=torch.zeros(1, *input_shape))
    return measure(pruned, input_shape).size_bits


def group_shares(model: nn.Module, input_shape: Sequence[int]) -> list[GroupShare]:
    """Every group of ``model`` (residual ones included), in definition order, with its share."""
    example = torch.zeros(1, *input_shape)
    with torch.inference_mode(False), torch.enable_grad():
        groups = find_groups(model, example, residual=True)
    total = measure(model, input_shape).size_bits
    shares = []
    for group in groups:
        n = group.num_channels
        removed = total - _size_after(model, {group.name: 1}, input_shape) if n > 1 else 0
        share = removed * n / (n - 1) / total if n > 1 and total else 0.0
        shares.append(GroupShare(group.name, n, group.residual, min(share, 1.0)))
    return shares


def combined_share(model: nn.Module, input_shape: Sequence[int], names: Sequence[str]) -> float:
    """The fraction of the quantized size removed when every group in ``names`` keeps one
    channel: what a search over those groups can act on."""
    if not names:
        return 0.0
    total = measure(model, input_shape).size_bits
    return 1.0 - _size_after(model, dict.fromkeys(names, 1), input_shape) / total
