"""Contract of every registered quantizer: its values lie in the documented set and its
autograd gradient equals the documented straight-through (STE) formula.

The references below are written from the docstrings' formulas, independently of the
implementation. A newly registered quantizer fails ``test_every_quantizer_has_a_contract``
until its reference is added here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from autoprune.quant import ACTIVATION_QUANTIZERS, WEIGHT_QUANTIZERS

Tensor = torch.Tensor


@dataclass(frozen=True)
class Contract:
    """``bits``: the widths to test; ``values(x, bits)``: the expected output;
    ``levels(x, bits)``: the allowed values, broadcastable against ``x[..., None]`` (None: any
    real value); ``grad(x, g, bits)``: the expected input gradient for upstream gradient g."""

    bits: tuple[int, ...]
    values: Callable[[Tensor, int], Tensor]
    levels: Callable[[Tensor, int], Tensor] | None
    grad: Callable[[Tensor, Tensor, int], Tensor]


def _sign(x: Tensor) -> Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def _grid(first: float, bits: int) -> Tensor:
    """{first + (1 - first) j / (2^k - 1)}: [0, 1] for first = 0, [-1, 1] for first = -1."""
    steps = 2**bits - 1
    return first + (1 - first) * torch.arange(steps + 1) / steps


def _xnor_alpha(w: Tensor) -> Tensor:
    return w.abs().reshape(w.shape[0], -1).mean(1).view(-1, *[1] * (w.dim() - 1))


def _dorefa_weight(w: Tensor, bits: int) -> Tensor:
    steps = 2**bits - 1
    u = torch.tanh(w)
    return 2 * torch.round((u / (2 * u.abs().max()) + 0.5) * steps) / steps - 1


def _dorefa_weight_grad(w: Tensor, g: Tensor, bits: int) -> Tensor:
    u = torch.tanh(w)
    peak = u.abs().max()
    grad = g * (1 - u**2) / peak
    arg = u.abs().argmax()
    ua = u.reshape(-1)[arg]
    grad.reshape(-1)[arg] -= torch.sign(ua) * (1 - ua**2) / peak**2 * (g * u).sum()
    return grad


def _uniform(x: Tensor, bits: int) -> Tensor:
    steps = 2**bits - 1
    return torch.round(x.clamp(0, 1) * steps) / steps


WEIGHT_CONTRACTS = {
    "fp": Contract((32,), lambda w, k: w, None, lambda w, g, k: g),
    "bnn": Contract(
        (1,),
        lambda w, k: _sign(w),
        lambda w, k: torch.tensor([-1.0, 1.0]),
        lambda w, g, k: g * (w.abs() <= 1),
    ),
    "xnor": Contract(
        (1,),
        lambda w, k: _xnor_alpha(w) * _sign(w),
        lambda w, k: torch.stack([-_xnor_alpha(w), _xnor_alpha(w)], -1),
        lambda w, g, k: g * (1 / w[0].numel() + _xnor_alpha(w) * (w.abs() <= 1)),
    ),
    "dorefa": Contract(
        (2, 3, 4, 8),
        _dorefa_weight,
        lambda w, k: _grid(-1.0, k),
        _dorefa_weight_grad,
    ),
}

ACTIVATION_CONTRACTS = {
    "fp": Contract((32,), lambda x, k: x, None, lambda x, g, k: g),
    "bnn": Contract(
        (1,),
        lambda x, k: _sign(x),
        lambda x, k: torch.tensor([-1.0, 1.0]),
        lambda x, g, k: g * (x.abs() <= 1),
    ),
    "dorefa": Contract(
        (2, 3, 4, 8),
        _uniform,
        lambda x, k: _grid(0.0, k),
        lambda x, g, k: g * ((x >= 0) & (x <= 1)),
    ),
    "signed": Contract(
        (2, 3, 4, 8),
        lambda x, k: 2 * _uniform((x + 1) / 2, k) - 1,
        lambda x, k: _grid(-1.0, k),
        lambda x, g, k: g * (x.abs() <= 1),
    ),
}

KINDS = {
    "weight": (WEIGHT_QUANTIZERS, WEIGHT_CONTRACTS),
    "activation": (ACTIVATION_QUANTIZERS, ACTIVATION_CONTRACTS),
}
CASES = [
    (kind, name, bits)
    for kind, (registry, contracts) in KINDS.items()
    for name in registry.names()
    for bits in (contracts[name].bits if name in contracts else (None,))
]


def _inputs(kind: str, seed: int) -> Tensor:
    """Random values beyond the clipping ranges, plus the ties 0, +-1 and 1/2 written in."""
    generator = torch.Generator().manual_seed(seed)
    shape = (6, 4, 3, 3) if kind == "weight" else (2, 3, 5, 5)
    x = 1.6 * torch.randn(shape, generator=generator)
    flat = x.view(-1)
    flat[:5] = torch.tensor([0.0, 1.0, -1.0, 0.5, -0.5])
    return x


def test_every_quantizer_has_a_contract() -> None:
    for kind, (registry, contracts) in KINDS.items():
        missing = set(registry.names()) - set(contracts)
        assert not missing, f"add the {kind} contract of {sorted(missing)} to this file"


@pytest.mark.parametrize(("kind", "name", "bits"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_values_and_ste_gradient(kind: str, name: str, bits: int | None, seed: int) -> None:
    registry, contracts = KINDS[kind]
    if name not in contracts:
        pytest.fail(f"no contract for {kind} quantizer {name!r}")
    contract = contracts[name]
    quantizer = registry.get(name)(bits)
    assert quantizer.bits == bits

    x = _inputs(kind, seed)
    upstream = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed + 10)) + 0.5
    latent = x.clone().requires_grad_(True)
    y = quantizer(latent)
    (y * upstream).sum().backward()
    y = y.detach()

    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, contract.values(x, bits), rtol=0, atol=1e-6)
    if contract.levels is not None:
        on_a_level = torch.isclose(y[..., None], contract.levels(x, bits), atol=1e-6)
        assert on_a_level.any(-1).all(), "a value outside the allowed set"
    assert latent.grad is not None
    torch.testing.assert_close(latent.grad, contract.grad(x, upstream, bits), rtol=1e-5, atol=1e-6)
