"""The router is pure core: standard library only, no clock, no unseeded randomness, no hash()."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import streams.core.routing

PACKAGE = Path(streams.core.routing.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
FORBIDDEN = {"time", "datetime", "os", "io", "socket", "asyncio", "threading", "subprocess"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def test_the_package_has_modules() -> None:
    assert len(MODULES) >= 10


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_a_routing_module_imports_only_the_standard_library_and_the_core(path: Path) -> None:
    for name in _imports(_tree(path)):
        root = name.split(".")[0]
        if root == "streams":
            assert name.startswith(("streams.core", "streams.errors")), name
        else:
            assert root in sys.stdlib_module_names and root not in FORBIDDEN, name


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_randomness_is_seeded_and_hashing_is_stable(path: Path) -> None:
    """Only ``random.Random(seed)`` instances; never the salted built-in ``hash()``."""
    for node in ast.walk(_tree(path)):
        on_random = isinstance(node, ast.Attribute) and _is_name(node.value, "random")
        if on_random:
            assert isinstance(node, ast.Attribute) and node.attr == "Random", path.name
        if isinstance(node, ast.Call):
            assert not _is_name(node.func, "hash"), f"hash() in {path.name}"


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name
