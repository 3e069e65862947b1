"""``taylor``: first-order Taylor importance on the fake-quantized network (seed 000).

For mini-batch ``b`` of the calibration data, with ``L_b`` the cross-entropy of the network's
*quantized* forward (every quantizer active, the model in eval mode so BatchNorm uses its
running statistics and nothing in the model changes) and ``g = dL_b/dW`` the gradient with
respect to the latent full-precision weights (through the quantizers' straight-through
estimators), channel ``c`` of a group gets

    t_b[c] = sum_{p in producers and depthwise convs} sum_{k in filter c of p} W_p[k] * g_p[k]
    importance[c] = mean_b t_b[c]^2

i.e. the squared first-order estimate of the loss change when the channel's weights (in every
producer conv of a residual group at once) are set to zero, averaged over the batches
(the squared group variant of Molchanov et al., 2019; Yu et al. use ``|w * dL/dw|``); the
depthwise convs filtering the channel lose their filter ``c`` with it, so it counts too. A
channel whose output no layer reads, or whose weights are zero, scores 0 and goes first; a
group whose channels all score equal (e.g. all 0) is scored by ``l1`` instead. Eval mode
matters: with batch statistics BatchNorm would make the loss invariant to a filter's scale and
every ``t_b`` would be 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoprune.prune.criteria.base import ScoringContext, register_criterion
from autoprune.prune.groups import ChannelGroup

_CACHE_KEY = "taylor_terms"


def _conv_terms(context: ScoringContext) -> dict[nn.Module, torch.Tensor]:
    model = context.model
    assert model is not None  # Criterion.__call__ checked it
    wanted = {layer for group in context.groups for layer in _scored_layers(group)}
    # only the producers to be scored: autograd then skips every other weight's gradient
    convs = [
        module
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.Linear) and (not wanted or module in wanted)
    ]
    weights = [conv.weight for conv in convs]
    was_training = model.training
    needed_grad = [weight.requires_grad for weight in weights]
    terms: list[list[torch.Tensor]] = [[] for _ in convs]
    model.eval()
    try:
        for weight in weights:
            weight.requires_grad_(True)
        with torch.enable_grad():
            for images, labels in context.batches:
                loss = F.cross_entropy(model(images), labels)
                # autograd.grad leaves every .grad untouched
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                for index, (weight, grad) in enumerate(zip(weights, grads, strict=True)):
                    if grad is None:  # a conv the loss does not depend on
                        grad = torch.zeros_like(weight)
                    terms[index].append((weight.detach() * grad).flatten(1).sum(dim=1))
    finally:
        for weight, needed in zip(weights, needed_grad, strict=True):
            weight.requires_grad_(needed)
        model.train(was_training)
    return {conv: torch.stack(per_batch) for conv, per_batch in zip(convs, terms, strict=True)}


@register_criterion("taylor", needs_data=True, fallback="l1")
def taylor_importance(group: ChannelGroup, context: ScoringContext) -> torch.Tensor:
    terms = context.cache.get(_CACHE_KEY, {})
    if any(layer not in terms for layer in _scored_layers(group)):
        # one forward/backward pass serves every group of the context
        context.cache[_CACHE_KEY] = terms = _conv_terms(context)
    # float64: in an untrained deep network (BatchNorm statistics not yet fitted) the terms
    # can reach 1e27, whose square overflows float32 and would tie every channel at inf
    per_layer = [terms[producer] for producer in group.producers]
    per_layer += [terms[dw][:, group.reader_indices(dw)[:, 0]] for dw in group.depthwise]
    return torch.stack(per_layer).sum(dim=0).double().pow(2).mean(dim=0)


def _scored_layers(group: ChannelGroup) -> list[nn.Module]:
    """The layers whose filters of the group's channels go with them: producers, depthwise."""
    return [*group.producers, *group.depthwise]
