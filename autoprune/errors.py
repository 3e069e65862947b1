"""Errors a user can fix. The CLI prints their message as one line and exits non-zero.

Every message names the problem and the fix. The library speaks of its parameters, never of
command-line flags: a parameter is written in backticks as in a call, `data_dir` or
`restart=True` / `device='cpu'` (a Python literal after ``=``), e.g. "dataset 'cifar10' not
found in /x: pass `data_dir` pointing at ...". ``named_parameters`` finds them and
``render_parameters`` rewrites them, which is how the CLI shows its own flags instead
(``autoprune_cli.flags``). Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# `name` or `name=literal`: a parameter as it is written in a message (not ``rst`` code)
PARAMETER = re.compile(r"(?<!`)`([a-z_][a-z0-9_]*)(?:=([^`]*))?`(?!`)")


class AutopruneError(Exception):
    """Base of every error caused by input the user can change.

    ``parameter`` optionally names the parameter at fault when the message does not name it
    in backticks; ``parameters`` lists it and every parameter the message names.
    """

    def __init__(self, *args: object, parameter: str | None = None) -> None:
        super().__init__(*args)
        self.parameter = parameter

    @property
    def parameters(self) -> list[str]:
        named = named_parameters(str(self))
        if self.parameter is not None and self.parameter not in named:
            return [self.parameter, *named]
        return named


def named_parameters(message: str) -> list[str]:
    """The parameters ``message`` names in backticks, in order, once each."""
    return list(dict.fromkeys(match.group(1) for match in PARAMETER.finditer(message)))


def render_parameters(message: str, render: Callable[[str, str | None], str | None]) -> str:
    """``message`` with each `name` / `name=value` replaced by ``render(name, value)``
    (``value`` is the literal's text, or None); where ``render`` returns None the text stays."""

    def replace(match: re.Match[str]) -> str:
        rendered = render(match.group(1), match.group(2))
        return match.group(0) if rendered is None else rendered

    return PARAMETER.sub(replace, message)


class DatasetNotFoundError(AutopruneError, FileNotFoundError):
    """A dataset's files are missing or incomplete."""


class CheckpointError(AutopruneError):
    """A checkpoint is unreadable, corrupt, or does not match the requested model."""


class UntrustedModelError(CheckpointError):
    """A file names user code (``package.module:factory``) that the caller did not name.

    autoprune never imports code because a checkpoint or study says so: the caller allows it by
    naming the same factory (or passing the factory or a model object) as ``model``.
    """

    def __init__(self, source: str, name: str) -> None:
        self.source, self.name = source, name
        super().__init__(
            f"{source} was made from your own model {name!r}; autoprune imports code named in "
            f"a file only when you name it too: pass `model={name!r}` (and add its folder to "
            "PYTHONPATH)",
            parameter="model",
        )


class OutputError(AutopruneError):
    """An output path cannot be written, or writing it would destroy an input."""


class ConfigError(AutopruneError, ValueError):
    """An option, bit-width, search-space file or study configuration is invalid."""


class StorageError(AutopruneError):
    """The Optuna storage cannot be opened."""
