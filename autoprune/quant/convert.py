"""``quantize_``: turn any float CNN into a fake-quantized one, in place.

Every ``nn.Conv2d`` and ``nn.Linear`` becomes a ``QuantConv2d`` / ``QuantLinear`` holding the
very same parameter tensors, so ``state_dict`` keys and values are unchanged (a float
checkpoint loads into the quantized model and back) and an optimizer built before still
updates the right tensors. The edge layers are treated as ``autoprune.models.layers`` treats
them in the bundled models.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.quant.layers import InplaceHardtanh, QuantConv2d, QuantLinear
from autoprune.quant.spec import QuantSpec

_PLAIN_LAYERS = (nn.Conv2d, nn.Linear)
_QUANTIZED_LAYERS = (QuantConv2d, QuantLinear)
_NON_NEGATIVE_ACTIVATIONS = (nn.ReLU, nn.ReLU6)


def _edge_layers_by_order(model: nn.Module) -> tuple[set[nn.Module], nn.Module | None]:
    """First conv (else first linear) and last linear in definition order."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    first = convs[0] if convs else linears[0] if linears else None
    return ({first} if first is not None else set()), (linears[-1] if linears else None)


def _edge_layers_by_forward(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[set[nn.Module], nn.Module | None]:
    """The layers that read ``example_input`` itself (else the first conv run) and the last
    linear run, found with forward hooks in eval mode (BatchNorm statistics stay untouched)."""
    called: list[nn.Module] = []
    reads_input: set[nn.Module] = set()

    def record(module: nn.Module, inputs: tuple[object, ...]) -> None:
        called.append(module)
        if inputs and inputs[0] is example_input:
            reads_input.add(module)

    layers = [m for m in model.modules() if isinstance(m, _PLAIN_LAYERS)]
    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    except Exception as error:
        message = " ".join(str(error).split())
        raise ConfigError(
            f"example input of shape {tuple(example_input.shape)} does not run through the "
            f"model ({type(error).__name__}: {message}): pass an input the model accepts"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    convs = [m for m in called if isinstance(m, nn.Conv2d)]
    stems = {m for m in reads_input if isinstance(m, nn.Conv2d)} or set(convs[:1])
    if not stems:  # no conv at all: the first linear reads the (flattened) image
        linears_first = [m for m in called if isinstance(m, nn.Linear)]
        stems = set(linears_first[:1])
    linears = [m for m in called if isinstance(m, nn.Linear)]
    return stems, (linears[-1] if linears else None)


def _quantized_copy(
    layer: nn.Conv2d | nn.Linear, spec: QuantSpec, *, stem: bool, head: bool
) -> QuantConv2d | QuantLinear:
    """A quantized layer of the same configuration sharing ``layer``'s parameter tensors."""
    edge = stem or head
    weight_quantizer = spec.weight_quantizer(edge=edge)
    # the stem reads the raw image (never quantized); the classifier's input is at edge bits
    input_quantizer = None if stem else spec.input_quantizer(edge=head)
    # built on the meta device: no memory or init time for weights replaced right after
    new: QuantConv2d | QuantLinear
    if isinstance(layer, nn.Conv2d):
        new = QuantConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
            device="meta",
            dtype=layer.weight.dtype,
            weight_quantizer=weight_quantizer,
            input_quantizer=input_quantizer,
        )
    else:
        new = QuantLinear(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            device="meta",
            dtype=layer.weight.dtype,
            weight_quantizer=weight_quantizer,
            input_quantizer=input_quantizer,
        )
    new.weight = layer.weight
    new.bias = layer.bias
    new.weight_quantizer.to(layer.weight.device)
    new.input_quantizer.to(layer.weight.device)
    new.train(layer.training)
    return new


def quantize_(
    model: nn.Module, spec: QuantSpec, example_input: torch.Tensor | None = None
) -> nn.Module:
    """Fake-quantize ``model`` in place as ``spec`` says; returns it (or, if ``model`` is itself
    a single conv/linear layer, its replacement).

    - Every ``nn.Conv2d`` / ``nn.Linear`` becomes ``QuantConv2d`` / ``QuantLinear`` with the
      same hyper-parameters and the same ``weight``/``bias`` Parameter objects; the quantizers
      come from ``spec.weight_quantizer(edge=...)`` and ``spec.input_quantizer(edge=...)``.
      Forward hooks registered on a replaced layer are not carried over.
    - The first conv (the one reading the image) gets edge-precision weights and no input
      quantizer; the last linear (the classifier) gets edge-precision weights and input, as
      ``autoprune.models.layers.classifier``. With ``example_input`` they are found by running
      it through the model with forward hooks (in eval mode, without gradients): every conv
      that receives ``example_input`` itself, else the first conv called; the last linear
      called. Without it: the first conv and the last linear in definition order.
    - Binary (sign) activations (``spec.binary``): every ``nn.ReLU`` / ``nn.ReLU6`` module
      becomes a Hardtanh (``InplaceHardtanh`` where it was in place), because a ReLU before a
      sign makes every sign +1. ReLUs called as functions in ``forward`` (``torch.relu``,
      ``F.relu``) cannot be seen or replaced: write them as modules.
    - Layers already quantized (``QuantConv2d`` / ``QuantLinear``) keep their quantizers, so
      applying ``quantize_`` twice changes nothing. Subclasses of ``nn.Conv2d`` / ``nn.Linear``
      with their own behaviour are left as they are, with a warning (replacing them would drop
      that behaviour); they then count as 32-bit layers in the cost metrics.
    """
    if example_input is not None:
        stems, head = _edge_layers_by_forward(model, example_input)
    else:
        stems, head = _edge_layers_by_order(model)
    replacements: dict[nn.Module, nn.Module] = {}
    skipped: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, _QUANTIZED_LAYERS) or not isinstance(module, _PLAIN_LAYERS):
            if spec.binary and isinstance(module, _NON_NEGATIVE_ACTIVATIONS):
                replacements[module] = (
                    InplaceHardtanh() if module.inplace else nn.Hardtanh(inplace=False)
                )
            continue
        if type(module) not in _PLAIN_LAYERS:
            skipped.append(f"{name or 'model'} ({type(module).__name__})")
            continue
        replacements[module] = _quantized_copy(
            module, spec, stem=module in stems, head=module is head
        )
    if skipped:
        warnings.warn(
            f"quantize_ left {len(skipped)} layer(s) of custom subclasses in float: "
            f"{', '.join(skipped[:3])}; build them from QuantConv2d / QuantLinear to quantize them",
            stacklevel=2,
        )
    for parent in list(model.modules()):
        # _modules, not named_children(): that skips a module registered twice in one parent
        for child_name, child in list(parent._modules.items()):
            if child in replacements:
                setattr(parent, child_name, replacements[child])
    return replacements.get(model, model)
