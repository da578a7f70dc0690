"""``python -m taskd_lab.repeat [--runs N] [--out DIR] -- demo|bench [options]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from streams.errors import TaskdError
from taskd_lab.repeat.run import print_report, repeat


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m taskd_lab.repeat",
        description="Run `taskd demo` or `taskd bench` several times; each figure's median, "
        "min and max in OUT/repeat.json. Put the taskd command after --.",
    )
    parser.add_argument("--runs", type=int, default=3, help="how many runs (3)")
    parser.add_argument("--out", type=Path, default=Path("out/repeat"), help="out/repeat")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- demo|bench [options]")
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    console = Console()
    invoked = shlex.join(["python", "-m", "taskd_lab.repeat", *argv])
    try:
        doc = repeat(
            command,
            runs=options.runs,
            out=options.out,
            say=lambda line: console.print(line, highlight=False, soft_wrap=True),
            invoked=invoked,
        )
    except TaskdError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_report(doc, console)
    console.print(f"written: {options.out / 'repeat.json'}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
