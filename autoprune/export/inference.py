"""A deployable copy of a fake-quantized network: weights quantized once, plain ops only.

Training runs every weight quantizer on every forward (``Q(w)`` from the latent weights) and
wraps quantization in autograd functions with straight-through gradients. At inference the
latent weights never change, so ``fold_quantizers`` computes ``Q(w)`` once and stores it as the
layer's weight, and replaces every input quantizer by the same arithmetic written with plain
tensor ops (clamp, round, mul, div; sign and add for the binary sign), which ONNX expresses
with standard operators. The copy computes exactly the same values as the original in PyTorch
(the same ops in the same order), and the original model is left untouched.

Activation forms (``L = 2^k - 1`` levels):

- DoReFa ``k`` bits: ``round(clip(x, 0, 1) * L) / L``;
- signed uniform ``k`` bits: ``2 * round(clip(x / 2 + 1/2, 0, 1) * L) / L - 1``;
- sign (BNN): ``sign(sign(x) + 1/2)``, which is ``-1`` for ``x < 0`` and ``+1`` otherwise:
  ``sign(0) = +1`` as in training, although ONNX's ``Sign`` (like ``torch.sign``) gives
  ``Sign(0) = 0``; the added 1/2 moves 0 to the + side explicitly. (``where(x < 0, -1, 1)``
  is the same function but about 20 times slower in PyTorch on CPU, measured.)

``round`` is round-half-to-even in PyTorch and in ONNX (``Round``), so ties agree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from autoprune.errors import ConfigError
from autoprune.quant import (
    DoReFaActivation,
    Identity,
    QuantConv2d,
    Quantizer,
    QuantLinear,
    Sign,
    SignedUniformActivation,
)


class UnitGridRound(nn.Module):
    """DoReFa activation at inference: ``round(clip(x, 0, 1) * L) / L``."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.levels = float(2**bits - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on the fresh clamp output: one buffer, as in the training quantizer
        return torch.clamp(x, 0.0, 1.0).mul_(self.levels).round_().div_(self.levels)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class SignedGridRound(UnitGridRound):
    """Signed uniform activation at inference: ``2 * unit(x / 2 + 1/2) - 1`` on [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * 0.5 + 0.5) * 2.0 - 1.0


class BinarySign(nn.Module):
    """Sign activation at inference: ``sign(sign(x) + 1/2)``, -1 for ``x < 0``, else +1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x).add_(0.5).sign_()


# One entry per activation quantizer class: the module that computes the same values with plain
# ops. A new activation quantizer needs its line here before its networks can be folded.
ACTIVATION_FORMS: dict[type[Quantizer], Callable[[Quantizer], nn.Module]] = {
    Identity: lambda q: nn.Identity(),
    DoReFaActivation: lambda q: UnitGridRound(q.bits),
    SignedUniformActivation: lambda q: SignedGridRound(q.bits),
    Sign: lambda q: BinarySign(),
}


def plain_activation(quantizer: nn.Module) -> nn.Module:
    """The plain-op module computing what the activation quantizer ``quantizer`` computes."""
    if not isinstance(quantizer, Quantizer):
        return nn.Identity()  # a plain torch layer has no input quantizer
    form = ACTIVATION_FORMS.get(type(quantizer))
    if form is None:
        raise ConfigError(
            f"activation quantizer {type(quantizer).__name__} has no inference form: add one "
            "to ACTIVATION_FORMS in autoprune/export/inference.py"
        )
    return form(quantizer)


class FoldedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is already quantized, reading ``input_op(x)``."""

    def __init__(self, layer: nn.Conv2d, weight: torch.Tensor, input_op: nn.Module) -> None:
        super().__init__(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,  # type: ignore[arg-type]
            stride=layer.stride,  # type: ignore[arg-type]
            padding=layer.padding,  # type: ignore[arg-type]
            dilation=layer.dilation,  # type: ignore[arg-type]
            groups=layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
            device=weight.device,
            dtype=weight.dtype,
        )
        self.input_op = input_op
        _copy_parameters(self, layer, weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.input_op(x))


class FoldedLinear(nn.Linear):
    """``nn.Linear`` whose weight is already quantized, reading ``input_op(x)``."""

    def __init__(self, layer: nn.Linear, weight: torch.Tensor, input_op: nn.Module) -> None:
        super().__init__(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        self.input_op = input_op
        _copy_parameters(self, layer, weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_op(x), self.weight, self.bias)


def _copy_parameters(target: nn.Module, source: nn.Module, weight: torch.Tensor) -> None:
    with torch.no_grad():
        target.weight.copy_(weight)  # type: ignore[operator]
        if source.bias is not None:
            target.bias.copy_(source.bias)  # type: ignore[union-attr,operator]
    target.requires_grad_(False)


def _folded(layer: nn.Module) -> nn.Module:
    with torch.no_grad():
        weight = layer.quantized_weight().detach()  # type: ignore[operator]
    input_op = plain_activation(layer.input_quantizer)
    if isinstance(layer, QuantConv2d):
        return FoldedConv2d(layer, weight, input_op)
    return FoldedLinear(layer, weight, input_op)  # type: ignore[arg-type]


def fold_quantizers(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every quantized layer folded (see the module doc).

    ``QuantConv2d`` / ``QuantLinear`` become ``FoldedConv2d`` / ``FoldedLinear`` holding
    ``Q(w)`` as a plain float weight; everything else (BatchNorm, activations, residual
    additions, pooling) is copied unchanged. The copy has no gradients and its outputs equal
    the original's in eval mode. Its cost metrics read as float (the weights are stored as
    float values on the quantization grid): measure the original for the quantized cost.
    """
    folded = copy.deepcopy(model).eval()
    replacements = [
        (name, module)
        for name, module in folded.named_modules()
        if isinstance(module, QuantConv2d | QuantLinear)
    ]
    for name, module in replacements:
        parent_name, _, child_name = name.rpartition(".")
        parent = folded.get_submodule(parent_name) if parent_name else folded
        if not child_name:  # the model itself is one quantized layer
            return _folded(module).eval()
        setattr(parent, child_name, _folded(module))
    return folded.requires_grad_(False)
