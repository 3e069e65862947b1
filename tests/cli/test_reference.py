"""The README's command reference is the one generated from the Typer app (cli/reference.py)."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer import _click as click

from autoprune_cli.main import app
from autoprune_cli.reference import COMMAND, END, START, render, replace_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_reference_is_the_generated_one() -> None:
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs {START} ... {END}"
    assert replace_reference(text, render()) == text, (
        f"README.md's command reference differs from the command line: run `{COMMAND}`"
    )


def test_every_command_and_visible_option_appears_with_its_default() -> None:
    reference = render()
    group = typer.main.get_command(app)
    root = click.Context(group, info_name="autoprune")
    for name, command in group.commands.items():
        assert f"### `autoprune {name}`" in reference
        section = reference.split(f"### `autoprune {name}`", 1)[1].split("\n### ", 1)[0]
        context = click.Context(command, info_name=name, parent=root)
        for param in command.params:
            record = param.get_help_record(context)
            if record is None:  # hidden
                assert not any(f"`{opt}" in section for opt in param.opts)
                continue
            assert f"- `{record[0]}`" in section, record[0]
            default = re.search(r"\[default: ([^\]]*)\]", record[1])
            if default:
                assert f"default: {default.group(1)}" in section


def test_replace_reference_keeps_the_text_around_the_markers() -> None:
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert replace_reference(text, "new") == f"intro\n{START}\nnew\n{END}\noutro\n"
