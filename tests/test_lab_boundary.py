"""The runtime package stands without the lab: no module of ``streams`` needs ``taskd_lab`` or
the lab's packages (matplotlib, psutil, the peers, Faust) to import, and the CLI options that
``taskd demo`` and ``taskd bench`` declare without the lab say the lab's own defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import typer

from streams.cli.main import app
from taskd_lab.bench.plan import DEFAULT_TASKS, SECTIONS
from taskd_lab.demo.session import DemoOptions
from taskd_lab.demo.workload import RATE_PER_S

LAB_ONLY = ("taskd_lab", "matplotlib", "psutil", "celery", "dramatiq", "redis", "faust")

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import streams
for module in pkgutil.walk_packages(streams.__path__, "streams."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_every_runtime_module_imports_without_the_lab() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "streams.cli.main" in loaded
    assert [name for name in loaded if name.split(".")[0] in LAB_ONLY] == []


def _help(command: str, option: str) -> str:
    group: Any = typer.main.get_command(app)  # typer's click group
    (param,) = [p for p in group.commands[command].params if option in p.opts]
    return str(param.help)


def test_demo_help_says_the_reference_workload_defaults() -> None:
    assert _help("demo", "--tasks").endswith(f"({DemoOptions().tasks:,})")
    assert _help("demo", "--rate").endswith(f"(the workload's {RATE_PER_S:g})")


def test_bench_help_names_every_section_and_the_default_size() -> None:
    assert _help("bench", "--sections") == f"comma-separated: {', '.join(SECTIONS)} (default: all)"
    assert f"({DEFAULT_TASKS:,};" in _help("bench", "--tasks")
