"""The command reference of the README, generated from the Typer app so that it cannot drift.

``python -m cli.reference`` prints it; ``python -m cli.reference --write README.md`` replaces
the text between the markers ``<!-- reference:start -->`` and ``<!-- reference:end -->``.
Every command, argument and option appears with the help and default ``--help`` shows
(hidden options excepted); ``tests/cli/test_reference.py`` fails when the README differs.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import typer
from typer import _click as click

from autoprune_cli.main import app

START = "<!-- reference:start -->"
END = "<!-- reference:end -->"
COMMAND = "python -m cli.reference --write README.md"
# The bracketed tail click appends to a help text: "[default: 3; x>=1]", "[required]", ...
_TAIL = re.compile(r"\s*(\[[^\[\]]*\])\s*$")


def _markdown(text: str) -> str:
    """Plain help text made safe for Markdown: angle brackets would read as HTML tags."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")


def _paragraphs(text: str) -> list[str]:
    """A docstring's paragraphs, each on one line."""
    blocks = re.split(r"\n\s*\n", inspect.cleandoc(text or ""))
    return [" ".join(line.strip() for line in block.splitlines()) for block in blocks if block]


def _parameter(param: Any, context: click.Context) -> str | None:
    """One Markdown bullet: the option (or argument) as ``--help`` names it, its help and its
    default or requirement; None for a hidden option."""
    record = param.get_help_record(context)
    if record is None:
        return None
    names, text = record
    tails = []
    while (match := _TAIL.search(text)) is not None and text:
        tails.insert(0, match.group(1))
        text = text[: match.start()]
    line = f"- `{names}`"
    if text.strip():
        line += f": {_markdown(text.strip())}"
    if tails:
        line += " " + " ".join(f"`{tail}`" for tail in tails)
    return line


def render(typer_app: typer.Typer = app, program: str = "autoprune") -> str:
    """The Markdown reference of every command of ``typer_app``, in the order they are shown."""
    group = typer.main.get_command(typer_app)
    root = click.Context(group, info_name=program)
    lines = [
        f"Generated from the command line itself by `{COMMAND}`; `{program} COMMAND --help` "
        "says the same.",
        "",
    ]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if command.hidden:
            continue
        context = click.Context(command, info_name=name, parent=root)
        lines += [f"### `{program} {name}`", ""]
        for paragraph in _paragraphs(command.help or ""):
            lines += [_markdown(paragraph), ""]
        bullets = [b for b in (_parameter(p, context) for p in command.params) if b is not None]
        lines += [*bullets, ""]
    return "\n".join(lines)


def replace_reference(text: str, reference: str) -> str:
    """``text`` with what lies between the markers replaced by ``reference``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"the file needs the markers {START} and {END}, in that order")
    return text[: start + len(START)] + "\n" + reference + "\n" + text[end:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="Markdown file whose reference to replace")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(render())
        return
    old = args.write.read_text()
    new = replace_reference(old, render())
    if new != old:
        args.write.write_text(new)
    print(f"{args.write}: reference {'updated' if new != old else 'already up to date'}")


if __name__ == "__main__":
    main()
