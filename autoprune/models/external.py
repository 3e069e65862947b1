"""Bring your own network: a model named ``"package.module:factory"`` is built by your code.

The factory is any callable (a function or an ``nn.Module`` class) that returns an
``nn.Module``. It receives ``num_classes`` and ``in_channels`` only if its signature names
them (``**kwargs`` does not count, so wrappers that forward keywords elsewhere are called
without them), and ``spec`` (a ``QuantSpec``) if it names that too: it then builds its own
quantized network. Otherwise the float network it returns is quantized by
``autoprune.quant.quantize_``, with its first conv (in definition order) as the stem and its
last linear as the classifier. Checkpoints store the name; ``autoprune.load`` rebuilds the model
from it only when the caller names the same factory (a file never makes autoprune import code).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from torch import nn

from autoprune.errors import ConfigError
from autoprune.quant import QuantSpec, quantize_
from autoprune.registry import UnknownNameError

SEPARATOR = ":"
OPTIONAL_ARGUMENTS = ("num_classes", "in_channels", "spec")


def is_external(name: str) -> bool:
    """Whether ``name`` points at user code (``"package.module:factory"``)."""
    return SEPARATOR in name


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _import(module_name: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                f"cannot import module {module_name!r} of model {name!r}: add its folder to "
                "PYTHONPATH (e.g. PYTHONPATH=. when it is here)"
            ) from error
        raise ConfigError(  # the module exists but needs something missing
            f"module {module_name!r} of model {name!r} failed to import ({_one_line(error)}): "
            "install what it needs"
        ) from error
    except Exception as error:
        raise ConfigError(
            f"module {module_name!r} of model {name!r} failed to import ({_one_line(error)}): "
            "fix the module"
        ) from error


def _resolve(module: ModuleType, attribute_path: str, name: str) -> Any:
    target: Any = module
    for part in attribute_path.split("."):
        if not hasattr(target, part):
            candidates = [n for n in dir(target) if not n.startswith("_")]
            close = difflib.get_close_matches(part, candidates, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UnknownNameError(
                f"{module.__name__!r} has no attribute {attribute_path!r} (model {name!r}): "
                f"{hint}name a factory the module defines"
            )
        target = getattr(target, part)
    return target


def load_factory(name: str) -> Callable[..., Any]:
    """The callable that ``"package.module:attribute"`` names (``attribute`` may be dotted)."""
    module_name, _, attribute_path = name.partition(SEPARATOR)
    if not module_name or not attribute_path or SEPARATOR in attribute_path:
        raise ConfigError(
            f"model {name!r} is not of the form package.module:factory: name a registered "
            "model or a factory function, e.g. mynets:build"
        )
    factory = _resolve(_import(module_name, name), attribute_path, name)
    if not callable(factory):
        raise ConfigError(
            f"{name!r} is a {type(factory).__name__}, not callable: point at a function or "
            "class that returns an nn.Module"
        )
    return factory


def _accepted_arguments(factory: Callable[..., Any]) -> set[str]:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: pass nothing
        return set()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in named and p.name in OPTIONAL_ARGUMENTS}


def _check_shapes(model: nn.Module, name: str, num_classes: int, in_channels: int) -> None:
    """The stem and the classifier that ``quantize_`` assumes must fit the data."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if convs and convs[0].in_channels != in_channels:
        raise ConfigError(
            f"model {name!r} reads {convs[0].in_channels}-channel images but the data has "
            f"{in_channels}: let the factory take an in_channels argument"
        )
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features != num_classes:
        raise ConfigError(
            f"model {name!r} has {linears[-1].out_features} outputs but the data has "
            f"{num_classes} classes: let the factory take a num_classes argument"
        )


def create_external_model(
    name: str,
    *,
    spec: QuantSpec,
    num_classes: int,
    in_channels: int,
    factory: Callable[..., Any] | None = None,
) -> nn.Module:
    """Import ``"package.module:factory"`` (or take ``factory`` as given, importing nothing),
    call it and quantize what it returns as ``spec``.

    Every failure is a ``ConfigError`` (``UnknownNameError`` for a missing attribute) whose
    one-line message names the problem and the fix.
    """
    factory = factory if factory is not None else load_factory(name)
    offered: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels, "spec": spec}
    accepted = _accepted_arguments(factory)
    arguments = {key: value for key, value in offered.items() if key in accepted}
    try:
        model = factory(**arguments)
    except Exception as error:
        passed = ", ".join(f"{k}={v!r}" for k, v in arguments.items() if k != "spec")
        raise ConfigError(
            f"model factory {name!r} raised {_one_line(error)} (called with "
            f"{passed or 'no arguments'}{', spec' if 'spec' in arguments else ''}): fix the factory"
        ) from error
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model factory {name!r} returned a {type(model).__name__}, not an nn.Module: "
            "return the network"
        )
    _check_shapes(model, name, num_classes, in_channels)
    return model if "spec" in arguments else quantize_(model, spec)
