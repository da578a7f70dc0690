"""One style for the ``taskd`` command's help and errors.

Help is click's plain layout (no boxes, no markup read into help texts): a flag shows no type,
an option taking a value shows what it takes (``INTEGER``, ``TEXT``, ``PATH``, or its choices
``[a|b]``), a required one says ``[required]``.

Every error is one line on stderr, ``error: ...``: our own errors (exit status 1) and usage
errors (an unknown option, a bad or missing value: exit status 2, and the line names the help
to read). Red on a terminal only.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperArgument, TyperGroup, TyperOption

USAGE_EXIT = 2
"""Exit status of a usage error (click's)."""

_err = Console(stderr=True, soft_wrap=True, highlight=False, force_terminal=sys.stderr.isatty())
"""Error lines: red on a terminal; plain text into a pipe or a file (a service's log) even with
``FORCE_COLOR`` set, which rich would otherwise obey with escape sequences."""

_METAVARS: dict[type, str] = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}
_SENTENCE = re.compile(r"[A-Z][a-z]")


class TidyGroup(TyperGroup):
    """The root command: once built, gives every option of every command its plain metavar."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        tidy(self)


def tidy(command: Any) -> None:
    """Set the metavar of every option under ``command`` that has none (see the module); an
    argument shows its name in capitals and no type (its help says what it takes)."""
    for param in getattr(command, "params", ()):
        if isinstance(param, TyperOption):
            if param.metavar is None:
                param.metavar = metavar(param)
        elif isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = str(param.name).upper()
            setattr(param, "display_type_rich", _no_type)  # noqa: B010 (a method, per instance)
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)


def _no_type(ctx: Any) -> None:
    return None


def metavar(option: TyperOption) -> str:
    """What an option takes: empty for a flag, its choices, else the name of its type."""
    if option.is_flag:
        return ""
    described = option.type_descriptor
    if described.is_choice and described.choices is not None:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in described.choices) + "]"
    annotation = described.annotation
    args = getattr(annotation, "__args__", ())
    if described.is_list and args:
        annotation = args[0]
    return _METAVARS.get(annotation, "VALUE")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``: one line, or for a message
    listing several mistakes (lines after the first starting with ``  - ``, as the settings'
    errors do), its head and one line per mistake."""
    head, *rest = message.splitlines() or [""]
    mistakes = [line.strip()[2:] for line in rest if line.strip().startswith("- ")]
    if mistakes and len(mistakes) == len(rest):
        _err.print(Text.assemble(("error:", "red"), " ", " ".join(head.split())))
        for mistake in mistakes:
            _err.print(Text(f"  - {' '.join(mistake.split())}"))
        sys.exit(code)
    line = " ".join(message.split())  # one line, whatever the message held
    _err.print(Text.assemble(("error:", "red"), " ", line))
    sys.exit(code)


def usage_message(error: typer.TyperException) -> str:
    """A click usage error in our words: ``--capacity is required``, ``no such option: --x``,
    then the help to read."""
    param = getattr(error, "param", None)
    if hasattr(error, "param_type") and param is not None:  # a MissingParameter
        names = [name for name in getattr(param, "opts", ()) if name.startswith("--")]
        shown = names[0] if names else str(param.metavar or param.name or "an argument").upper()
        text = f"{shown} is required"
    else:
        text = error.format_message().rstrip(".").replace(": Value error, ", ": ")
        if _SENTENCE.match(text):
            text = text[0].lower() + text[1:]
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        text += f" (see {ctx.command_path} --help)"
    return text


def wide_console(min_width: int, **options: Any) -> Console:
    """A console on stdout at least ``min_width`` columns wide, even into a pipe (rich would
    squeeze a table to 80 there)."""
    console = Console(**options)
    return console if console.width >= min_width else Console(width=min_width, **options)


def grid(
    title: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    text: Collection[int] = (0,),
) -> Table:
    """A table of figures: the columns numbered in ``text`` read as text (left-aligned), the
    others as numbers (right-aligned); no cell wraps."""
    table = Table(title=title)
    for index, header in enumerate(headers):
        table.add_column(header, no_wrap=True, justify="left" if index in text else "right")
    for row in rows:
        table.add_row(*row)
    return table
