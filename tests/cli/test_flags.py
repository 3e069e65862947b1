"""Library errors speak of parameters, the CLI shows its flags; CLI help lists what is
registered.

The library names a parameter in backticks (`data_dir`, `resume='restart'`); ``cli/flags.py``
turns it into the flag a user types, from a table read off the Typer app. These tests keep the
two sides from drifting apart: no string in ``autoprune/`` names a ``--flag``, every parameter
an error message names is shown as a real flag, and every alias points at a real option.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from autoprune.errors import (
    AutopruneError,
    ConfigError,
    UntrustedModelError,
    named_parameters,
)
from autoprune.search.samplers import SAMPLERS
from autoprune_cli import choices as help_choices
from autoprune_cli.flags import (
    ALIASES,
    LIBRARY_ONLY,
    SETTINGS,
    cli_message,
    flag_for,
    option_flags,
    parse_sampler_options,
)
from autoprune_cli.main import app

LIBRARY = Path(__file__).resolve().parents[2] / "autoprune"
# "--name" as a command-line flag (not "---" rules, not "a--b"), or an f-string's "--{name}"
FLAG = re.compile(r"(?<![\w-])--(?:[a-z][a-z0-9-]*|$)")


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant in ``path`` (docstrings and f-string parts included)."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_no_library_string_names_a_command_line_flag() -> None:
    found = [
        f"{path.relative_to(LIBRARY.parent)}:{line}: {FLAG.search(text).group(0)}"  # type: ignore[union-attr]
        for path in _library_files()
        for line, text in _strings(path)
        if FLAG.search(text)
    ]
    assert not found, "name the parameter in backticks instead (see autoprune.errors):\n" + (
        "\n".join(found)
    )


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants in ``tree`` (they may quote code in backticks)."""
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _named_in_library() -> dict[str, str]:
    """Parameter -> where a library message names it: in backticks, or as ``parameter=``."""
    named: dict[str, str] = {}
    for path in _library_files():
        tree = ast.parse(path.read_text(), str(path))
        where, docstrings = str(path.relative_to(LIBRARY.parent)), _docstrings(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and id(node) not in docstrings:
                for name in named_parameters(text):
                    named.setdefault(name, f"{where}:{node.lineno}")
            keyword = node.value if isinstance(node, ast.keyword) else None
            if _is_parameter_keyword(node) and isinstance(keyword, ast.Constant):
                named.setdefault(str(keyword.value), f"{where}:{node.lineno}")
    return named


def _is_parameter_keyword(node: ast.AST) -> bool:
    return isinstance(node, ast.keyword) and node.arg == "parameter"


def test_every_parameter_an_error_names_is_shown_as_a_flag() -> None:
    named = _named_in_library()
    assert {"data_dir", "model", "uniform"} <= set(named)  # the scan finds them
    missing = {
        name: where
        for name, where in named.items()
        if name not in LIBRARY_ONLY and flag_for(app, name) is None
    }
    assert not missing, f"add these to cli/flags.py ALIASES (or LIBRARY_ONLY): {missing}"


def test_aliases_and_settings_name_real_options() -> None:
    flags = option_flags(app)
    for parameter, option in ALIASES.items():
        assert option in flags, f"ALIASES[{parameter!r}]: no option {option!r} in the CLI"
    typed = {flag for pair in flags.values() for flag in pair if flag is not None}
    for key, flag in SETTINGS.items():
        assert flag in typed, f"SETTINGS[{key!r}]: no flag {flag} in the CLI"
    assert not LIBRARY_ONLY & set(flags), "a LIBRARY_ONLY parameter has a flag after all"


def test_an_option_name_has_one_flag_in_every_command() -> None:
    seen: dict[str, tuple[str, ...]] = {}
    group = typer.main.get_command(app)
    for command in group.commands.values():  # type: ignore[attr-defined]
        for parameter in command.params:
            if parameter.param_type_name == "option":
                opts = tuple(parameter.opts)
                assert seen.setdefault(parameter.name, opts) == opts, parameter.name


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("pass `data_dir` pointing at a folder", "pass --data-dir pointing at a folder"),
        ("pass `device='cpu'`", "pass --device cpu"),
        (
            "pass `resume='restart'` or choose another `path`",
            "pass --restart or choose another --out",
        ),
        ("pass `amp='off'` on this device", "pass --no-amp on this device"),
        ("lower `warmup_epochs`", "lower --warmup-epochs"),
        ("check `sampler_options`", "check --sampler-option"),
        ("`study_name`", "--study"),
        ("run `autoprune search` first", "run `autoprune search` first"),  # not a parameter
        ("no `such_parameter` here", "no `such_parameter` here"),  # no flag: left as it is
        ("pass `data_dir='/a b'`", "pass --data-dir '/a b'"),  # quoted for the shell
    ],
)
def test_the_cli_shows_flags_for_parameters(message: str, shown: str) -> None:
    assert cli_message(ConfigError(message), app) == shown


def test_an_untrusted_model_names_the_model_flag() -> None:
    error = UntrustedModelError("x.pt", "pkg.mod:net")
    assert "pass `model='pkg.mod:net'`" in str(error)  # the library's own wording
    assert error.parameters == ["model"]
    assert "pass --model pkg.mod:net (and add its folder" in cli_message(error, app)


def test_parameters_are_listed_once_with_the_explicit_one_first() -> None:
    error = AutopruneError("`b` and `a`, `b` again", parameter="c")
    assert error.parameters == ["c", "b", "a"]
    assert AutopruneError("no parameter").parameters == []


def test_sampler_options_from_the_command_line() -> None:
    options = parse_sampler_options("nsga2", ["population_size=20", "crossover_prob=0.5"])
    assert options == {"population_size": 20, "crossover_prob": 0.5}
    assert parse_sampler_options("tpe", ["multivariate=false"]) == {"multivariate": False}
    assert parse_sampler_options("gp", None) == {}
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_sampler_options("tpe", ["multivariate"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_sampler_options("tpe", ["group=true", "group=false"])
    with pytest.raises(ConfigError, match="more than one value"):
        parse_sampler_options("tpe", ["n_ei_candidates=[1, 2]"])
    with pytest.raises(ConfigError, match="accepts: multivariate, group"):
        parse_sampler_options("tpe", ["population_size=20"])


# --- help from the registries ------------------------------------------------------------------


def _help(command: str, option: str) -> str:
    group = typer.main.get_command(app)
    for parameter in group.commands[command].params:  # type: ignore[attr-defined]
        if parameter.name == option:
            return parameter.help or ""
    raise AssertionError(f"{command} has no option {option}")


@pytest.mark.parametrize(
    ("command", "option", "kind"),
    [
        ("search", "sampler", "sampler"),
        ("search", "criterion", "criterion"),
        ("search", "method", "method"),
        ("prune", "criterion", "criterion"),
        ("train", "dataset", "dataset"),
        ("train", "augment", "augment"),
        ("train", "optimizer", "optimizer"),
        ("train", "schedule", "schedule"),
        ("train", "weights", "weights"),
    ],
)
def test_help_lists_exactly_the_registered_names(command: str, option: str, kind: str) -> None:
    names, _ = help_choices.CHOICES[kind]
    text = _help(command, option)
    listed = [item.split(" (")[0] for item in re.split(r", (?![^()]*\))", text.rstrip("."))]
    listed[0] = listed[0].split(": ")[-1]  # after a lead-in such as "Channel criterion: "
    assert listed == names()


def test_every_help_remark_is_about_a_registered_name() -> None:
    for kind, (names, remarks) in help_choices.CHOICES.items():
        assert set(remarks) <= set(names()), kind


def test_a_newly_registered_sampler_appears_in_the_help(tmp_path: Path) -> None:
    """A plugin registered before the CLI is built is listed without touching the CLI."""
    script = (
        "from autoprune.search.samplers import SAMPLERS, random_sampler\n"
        "SAMPLERS.register('dummy-sampler')(random_sampler)\n"
        "from autoprune_cli.main import app\n"
        "import typer.main\n"
        "command = typer.main.get_command(app).commands['search']\n"
        "print([p.help for p in command.params if p.name == 'sampler'][0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AUTOPRUNE_CACHE": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "dummy-sampler" in done.stdout
    assert "dummy-sampler" not in SAMPLERS  # this process's registry is untouched
