"""The wire layer imports only the standard library, the core, the errors and fastavro."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import streams.wire

WIRE_MODULES = sorted(Path(streams.wire.__file__).parent.glob("*.py"))
ALLOWED = ("streams.core", "streams.errors", "streams.wire", "fastavro")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    names += [
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    ]
    return names


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    return (
        top in sys.stdlib_module_names
        or module == "__future__"
        or any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED)
    )


@pytest.mark.parametrize("path", WIRE_MODULES, ids=lambda path: path.name)
def test_wire_modules_import_no_kafka_client_nor_adapter(path: Path) -> None:
    assert [module for module in _imports(path) if not _allowed(module)] == []


def test_the_check_would_catch_a_kafka_client() -> None:
    assert not _allowed("confluent_kafka")
    assert not _allowed("streams.adapters.producer")
    assert _allowed("fastavro.schema") and _allowed("json")
