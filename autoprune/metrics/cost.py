"""Exact cost of a (pruned, quantized) network: size in bits, parameters, MACs and BOPs.

Definitions (docs/METHOD section 3), counted per layer from the layers' real shapes:
- size: every conv/linear weight at its quantizer's bits, plus the bits its quantizer stores per
  output channel (XNOR: one 32-bit scale per output channel, METHOD section 1.1; these scales
  are derived from the weights, so they count in size but not in params); BatchNorm as
  2 x 32 bits per channel (scale and shift once folded); biases and any other parameter at
  32 bits.
- MACs of a conv: ``k_h * k_w * C_in * C_out * H_out * W_out / groups``; of a linear:
  ``in * out``. Output sizes are read from one forward pass at batch size 1.
- BOPs: ``MACs * b_w * b_a`` with ``b_a`` the bits of the layer's input; 32 x 32 when float.
- MB means MiB here: ``bits / 8 / 2**20``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from autoprune.quant import input_bits, weight_bits, weight_scale_bits

BITS_PER_MB = 8 * 2**20
FLOAT_BITS = 32


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    in_channels: int
    out_channels: int
    weight_bits: int
    input_bits: int
    params: int
    size_bits: int
    macs: int
    bops: int
    scale_bits: int = 0  # per-output-channel storage of the weight quantizer, in size_bits


@dataclass(frozen=True)
class ModelCost:
    layers: list[LayerCost] = field(default_factory=list)
    params: int = 0
    size_bits: int = 0
    macs: int = 0
    bops: int = 0

    @property
    def size_mb(self) -> float:
        return self.size_bits / BITS_PER_MB


def _layer_macs(layer: nn.Module, output: torch.Tensor) -> int:
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        spatial = output.shape[-2] * output.shape[-1]
        return kh * kw * layer.in_channels * layer.out_channels * spatial // layer.groups
    return layer.in_features * layer.out_features  # type: ignore[union-attr]


def measure(model: nn.Module, input_shape: Sequence[int]) -> ModelCost:
    """Cost of ``model`` for one input of shape ``(C, H, W)``; the model is left unchanged."""
    outputs: dict[str, torch.Tensor] = {}
    compute_layers = {
        name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
        for name, m in compute_layers.items()
    ]
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    layers = []
    counted: set[int] = set()
    for name, layer in compute_layers.items():
        wbits, abits = weight_bits(layer), input_bits(layer)
        out_ch = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        params = layer.weight.numel()
        scale_bits = out_ch * weight_scale_bits(layer)
        size = params * wbits + scale_bits
        counted.add(id(layer.weight))
        if layer.bias is not None:
            params += layer.bias.numel()
            size += layer.bias.numel() * FLOAT_BITS
            counted.add(id(layer.bias))
        macs = _layer_macs(layer, outputs[name]) if name in outputs else 0
        in_ch = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        kind = "conv" if isinstance(layer, nn.Conv2d) else "linear"
        layers.append(
            LayerCost(
                name,
                kind,
                in_ch,
                out_ch,
                wbits,
                abits,
                params,
                size,
                macs,
                macs * wbits * abits,
                scale_bits,
            )
        )
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            channels = module.num_features
            counted.update(id(p) for p in module.parameters(recurse=False))
            layers.append(
                LayerCost(
                    name,
                    "batchnorm",
                    channels,
                    channels,
                    FLOAT_BITS,
                    FLOAT_BITS,
                    2 * channels,
                    2 * channels * FLOAT_BITS,
                    0,
                    0,
                )
            )
    other = sum(p.numel() for p in model.parameters() if id(p) not in counted)
    return ModelCost(
        layers=layers,
        params=sum(layer.params for layer in layers) + other,
        size_bits=sum(layer.size_bits for layer in layers) + other * FLOAT_BITS,
        macs=sum(layer.macs for layer in layers),
        bops=sum(layer.bops for layer in layers),
    )
