"""The core is pure: standard library and the core only, no clock, no I/O, seeded randomness.

One check over every module under ``streams/core`` (docs/architecture.md, "Layers"), so a
module added later is covered without anyone remembering to write its own check.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import streams.core

CORE = Path(streams.core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))
FORBIDDEN = {
    "time", "datetime", "os", "io", "socket", "asyncio", "threading", "subprocess", "secrets",
    "uuid",
}  # fmt: skip
RANDOM_USERS = ("routing", "sim")
"""Only the router (seeded strategies) and the simulator (seeded workloads) may use ``random``."""


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def _id(path: Path) -> str:
    return str(path.relative_to(CORE))


def test_every_layer_of_the_core_is_checked() -> None:
    packages = {path.relative_to(CORE).parts[0] for path in MODULES}
    assert {"routing", "scheduling", "sim", "agents.py", "distributor.py", "stats.py"} <= packages


@pytest.mark.parametrize("path", MODULES, ids=_id)
def test_imports_only_the_standard_library_and_the_core(path: Path) -> None:
    may_use_random = path.relative_to(CORE).parts[0] in RANDOM_USERS
    for name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        root = name.split(".")[0]
        if root == "streams":
            assert name.startswith(("streams.core", "streams.errors")), f"{_id(path)}: {name}"
            continue
        assert root in sys.stdlib_module_names, f"{_id(path)} imports {name}"
        assert root not in FORBIDDEN, f"{_id(path)} imports {name}"
        assert root != "random" or may_use_random, f"{_id(path)} imports random"


@pytest.mark.parametrize("path", MODULES, ids=_id)
def test_randomness_is_seeded_and_hashing_is_stable(path: Path) -> None:
    """Only ``random.Random(seed)`` instances; never the salted built-in ``hash()``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "random":
            assert node.attr == "Random", f"{_id(path)}: random.{node.attr}"
        if isinstance(node, ast.Call):
            assert ast.unparse(node.func) != "hash", f"hash() in {_id(path)}"
            if ast.unparse(node.func) == "random.Random":
                assert node.args, f"{_id(path)}: an unseeded random.Random()"
