"""Library parameters shown as command-line flags: how the CLI prints a library error.

The library names its parameters in backticks, as in a call (`data_dir`, `resume='restart'`;
see ``autoprune.errors``); a CLI user must read the flag they type instead. The table is read
from the Typer app itself (each option's Python name and flags), so a renamed flag takes its
errors along. ``ALIASES`` holds the library parameters set by a CLI option of another name,
``SETTINGS`` the values a flag of their own spells. ``tests/cli/test_flags.py`` checks that
every alias and setting names a real option and that every parameter the library names in an
error message is shown as a flag (or listed in ``LIBRARY_ONLY``).
"""

from __future__ import annotations

import ast
import json
import shlex
from functools import cache
from typing import Any

import typer
import typer.main
from typer.core import TyperOption

from autoprune.errors import AutopruneError, ConfigError, render_parameters
from autoprune.search.samplers import check_sampler_options

# library parameter -> the CLI option (its Python name in the Typer command) that sets it
ALIASES: dict[str, str] = {
    "path": "out",  # train_checkpoint(path) and the other writers: --out
    "study_name": "study",
    "sampler_options": "sampler_option",
    "binary_weights": "weights",  # QuantSpec.from_bits(binary_weights=...)
}
# library parameters no CLI option sets (an error naming one keeps its backticks)
LIBRARY_ONLY: frozenset[str] = frozenset({"quant"})  # the CLI builds it from --bits etc.
# (library parameter, value) -> the flag that sets exactly that value
SETTINGS: dict[tuple[str, Any], str] = {
    ("resume", "restart"): "--restart",
    ("resume", "require"): "--resume",
    ("resume", "auto"): "--no-resume",
    ("amp", "on"): "--amp",
    ("amp", "off"): "--no-amp",
}


@cache
def option_flags(app: typer.Typer) -> dict[str, tuple[str, str | None]]:
    """Every option of ``app``'s commands: Python name -> (its flag, its ``--no-`` flag)."""
    flags: dict[str, tuple[str, str | None]] = {}
    group = typer.main.get_command(app)
    for command in getattr(group, "commands", {}).values():
        for parameter in command.params:
            if isinstance(parameter, TyperOption) and parameter.name:
                longest = max(parameter.opts, key=len)
                negative = max(parameter.secondary_opts, key=len, default=None)
                flags.setdefault(parameter.name, (longest, negative))
    return flags


def flag_for(app: typer.Typer, parameter: str, literal: str | None = None) -> str | None:
    """How ``parameter`` (set to the Python ``literal``, if given) is typed on the command
    line, e.g. ``--data-dir``, ``--device cpu``, ``--restart``; None if no option sets it."""
    value = _value(literal) if literal is not None else None
    if literal is not None and (parameter, value) in SETTINGS:
        return SETTINGS[parameter, value]
    flags = option_flags(app).get(ALIASES.get(parameter, parameter))
    if flags is None:
        return None
    flag, negative = flags
    if literal is None or value is True:
        return flag
    if value is False and negative is not None:
        return negative
    return f"{flag} {shlex.quote(str(value))}"


def cli_message(error: AutopruneError, app: typer.Typer) -> str:
    """``error``'s message with each parameter it names shown as its flag."""
    return render_parameters(str(error), lambda name, literal: flag_for(app, name, literal))


def parse_sampler_options(sampler: str, items: list[str] | None) -> dict[str, Any]:
    """``--sampler-option key=value`` items as the sampler's keyword options. A value is read
    as a JSON scalar (``20``, ``0.5``, ``true``, ``null``, ``"x"``), else kept as text; the
    options are then checked against those ``sampler`` accepts."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(
                f"--sampler-option {item!r} is not key=value: e.g. population_size=20"
            )
        if key in options:
            raise ConfigError(f"--sampler-option {key} is given twice: keep one")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, list | dict):
            raise ConfigError(f"--sampler-option {item!r} holds more than one value: give one")
        options[key] = value
    return check_sampler_options(sampler, options)


def _value(literal: str) -> Any:
    """The value of a Python literal (never code: ``literal_eval``), or its text."""
    try:
        return ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal
