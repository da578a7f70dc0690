"""State shared by the CLI's commands: the settings, built once on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from streams.settings import Settings, load_settings


@dataclass
class CliState:
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    """Settings given as global options (``--bootstrap-servers``): stronger than ``TASKD_*``
    and the settings file."""
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file, **self.overrides)
        return self._settings


def settings_of(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings of this invocation (walks up to the root command's state); a command's
    own ``overrides`` (its options that are settings) are validated like every other."""
    root = ctx.find_root()
    state = root.obj if isinstance(root.obj, CliState) else CliState()
    if not overrides:
        return state.settings
    return load_settings(state.config_file, **{**state.overrides, **overrides})
