"""How settings mistakes are told: one line for each, naming the setting, the variable that
sets it and the value given (never a secret's)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from pydantic import ValidationError

ENV_PREFIX = "TASKD_"
ENV_NESTING = "__"
"""``TASKD_DISPATCHER__LEASE_MS`` sets ``dispatcher.lease_ms``."""


def describe(
    error: ValidationError,
    *,
    within: Sequence[str] = (),
    toml_path: Path | None = None,
    secrets: Collection[str] = (),
) -> str:
    """``invalid settings: ...``, one line per mistake. ``within``: where the model that
    failed sits in the settings (``("dispatcher",)``); ``secrets``: settings whose value is
    never shown (nor is the input of a check across settings, which holds them all)."""
    problems = [_problem(item, within, toml_path, secrets) for item in error.errors()]
    if len(problems) == 1:
        return f"invalid settings: {problems[0]}"
    return f"invalid settings ({len(problems)} mistakes):\n" + "\n".join(
        f"  - {problem}" for problem in problems
    )


def _problem(
    item: object, within: Sequence[str], toml_path: Path | None, secrets: Collection[str]
) -> str:
    assert isinstance(item, dict)
    place = [*within, *(str(part) for part in item["loc"])]
    message = str(item["msg"]).removeprefix("Value error, ")
    if not item["loc"]:  # a check across the values of one model
        return f"{'.'.join(place)}: {message}" if place else message
    name = ".".join(place)
    if item["type"] == "extra_forbidden":
        return f"unknown setting {name!r}" + (f" in {toml_path}" if toml_path else "")
    env = ENV_PREFIX + ENV_NESTING.join(place[:2]).upper()
    where = f"{name} (env {env}" + (f" or {toml_path})" if toml_path else ")")
    shown = "***" if place[0] in secrets else repr(item.get("input"))
    return f"{where}: {message} (got {shown})"
