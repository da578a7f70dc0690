"""Typed reading of one TOML table, so that every scenario error names its field.

A :class:`Fields` wraps a mapping and a dotted path (``tasks[2].work``); each getter checks the
type and range of one key and raises :class:`ConfigError` naming ``path.key`` otherwise.
``done()`` then rejects any key nobody asked for, so a misspelt option is an error, not a
silently ignored line.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from typing import Any

from streams.errors import ConfigError


def load_toml(text: str) -> dict[str, Any]:
    """The table a scenario's TOML text holds; ConfigError if it is not valid TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"scenario: not valid TOML: {error}") from error


class Fields:
    """The keys of one table, read once each by a typed getter."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'scenario'}: expected a table, got {data!r}")
        self._data: Mapping[str, object] = data
        self._path = path
        self._read: set[str] = set()

    def name(self, key: str) -> str:
        """The dotted name of ``key`` in this table, as error messages show it."""
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        return key in self._data

    def table_keys(self) -> list[str]:
        """Every key of the table, sorted (for tables whose keys are data, such as tenants)."""
        return sorted(self._data)

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.name(key)}: {problem}")

    def raw(self, key: str) -> object:
        """The value as it is (for sub-tables and arrays); absent keys read as ``None``."""
        self._read.add(key)
        return self._data.get(key)

    def str_(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value

    def opt_str(self, key: str) -> str | None:
        return self.str_(key) if self._present(key) else None

    def choice(self, key: str, valid: tuple[str, ...], default: str | None = None) -> str:
        value = self.str_(key, default)
        if value not in valid:
            raise self.error(key, f"unknown value {value!r}; valid: {', '.join(valid)}")
        return value

    def bool_(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def int_(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def opt_int(self, key: str, *, minimum: int = 0) -> int | None:
        return self.int_(key, minimum=minimum) if self._present(key) else None

    def float_(
        self, key: str, default: float | None = None, *, low: float = 0.0, high: float = math.inf
    ) -> float:
        """A finite number in ``[low, high]`` (integers are accepted)."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or not low <= number <= high:
            raise self.error(key, f"must be a finite number in [{low}, {high}], got {value!r}")
        return number

    def positive(self, key: str, default: float | None = None) -> float:
        """A finite number > 0."""
        number = self.float_(key, default)
        if number <= 0:
            raise self.error(key, f"must be > 0, got {number!r}")
        return number

    def opt_positive(self, key: str) -> float | None:
        return self.positive(key) if self._present(key) else None

    def str_list(self, key: str) -> tuple[str, ...]:
        """A list of non-empty strings; absent reads as empty."""
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            raise self.error(key, f"expected a list of non-empty strings, got {value!r}")
        return tuple(value)

    def int_list(self, key: str, default: list[int]) -> tuple[int, ...]:
        """A non-empty list of integers > 0."""
        value = self._get(key, default)
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a non-empty list of integers, got {value!r}")
        numbers = [v for v in value if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        if len(numbers) != len(value):
            raise self.error(key, f"expected integers > 0, got {value!r}")
        return tuple(numbers)

    def tables(self, key: str) -> list[object]:
        """An array of tables (``[[key]]``); must be present and non-empty."""
        value = self._get(key, None)
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a non-empty array of tables, got {value!r}")
        return value

    def sub(self, key: str) -> Fields:
        """The sub-table ``key``; absent reads as an empty table."""
        value = self._get(key, {})
        return Fields(value, self.name(key))

    def done(self) -> None:
        """Reject the keys no getter read (misspelt or unsupported options)."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            raise self.error(unknown[0], f"unknown key (unknown keys here: {', '.join(unknown)})")

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        if key in self._data:
            return self._data[key]
        if default is None:
            raise self.error(key, "required")
        return default

    def _present(self, key: str) -> bool:
        """Whether the optional ``key`` is given (marking it read either way)."""
        self._read.add(key)
        return key in self._data
