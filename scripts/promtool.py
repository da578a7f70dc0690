#!/usr/bin/env python3
"""Run Prometheus's ``promtool``, fetched without root on first use.

Standard library only. ``TASKD_PROMTOOL`` (a path) is used when set, else a ``promtool`` on
PATH. Otherwise Debian's ``prometheus`` package is fetched as a normal user (``apt-get download
prometheus``; when the system's package lists are missing, with private lists refreshed into the
cache, which needs no root either), unpacked with ``dpkg-deb -x`` and its ``promtool`` kept in
``.cache/promtool/`` (ignored by git); a second run downloads nothing. When it cannot be had,
one line says why and the exit status is 2.

  scripts/promtool ARGS...         run promtool with ARGS (e.g. check rules FILE)
  scripts/promtool.py --path       fetch if missing and print the binary's path

Used by ``tests/test_monitoring.py`` on ``deploy/prometheus/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "promtool"
BINARY = CACHE_DIR / "promtool"
PACKAGE = "prometheus"


class PromtoolError(Exception):
    """One clear line for the user; the script exits 2 with it."""


def promtool() -> Path:
    """TASKD_PROMTOOL, else promtool on PATH, else the one from Debian's package (fetched)."""
    chosen = os.environ.get("TASKD_PROMTOOL")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise PromtoolError(f"TASKD_PROMTOOL={chosen} is not an executable file")
        return Path(chosen)
    on_path = shutil.which("promtool")
    if on_path:
        return Path(on_path)
    if not os.access(BINARY, os.X_OK):
        fetch()
    return BINARY


def fetch() -> None:
    """Download Debian's prometheus package and keep its promtool in the cache."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise PromtoolError(
                f"`{tool}` is not on PATH, so Debian's {PACKAGE} package cannot be fetched:"
                " install promtool (Prometheus) or set TASKD_PROMTOOL to its path"
            )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"fetching promtool from Debian's {PACKAGE} package (apt-get download) ...",
          file=sys.stderr)  # fmt: skip
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as scratch:
        debs = Path(scratch) / "debs"
        debs.mkdir()
        _download(debs)
        (deb,) = debs.glob("*.deb")
        unpacked = Path(scratch) / "root"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"unpacking {deb.name}")
        found = unpacked / "usr" / "bin" / "promtool"
        if not found.is_file():
            raise PromtoolError(f"{deb.name} holds no usr/bin/promtool")
        _run([str(found), "--version"], "running the unpacked promtool")
        staged = Path(scratch) / "promtool"
        found.rename(staged)
        staged.replace(BINARY)  # atomic: a concurrent run sees no half-written binary


def _download(target: Path) -> None:
    try:
        _run(["apt-get", "download", PACKAGE], "apt-get download", cwd=target)
        return
    except PromtoolError:
        pass
    lists = CACHE_DIR / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / "apt-cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    private = [
        "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={CACHE_DIR / 'apt-cache'}",
        "-o", "Debug::NoLocking=1",
    ]  # fmt: skip
    _run(["apt-get", *private, "update"], "apt-get update (private lists)")
    _run(["apt-get", *private, "download", PACKAGE], "apt-get download", cwd=target)


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("E:")]
        detail = (errors or result.stderr.strip().splitlines()[-1:] or ["no output"])[0]
        raise PromtoolError(f"{what} failed (exit {result.returncode}): {detail}")


def main(argv: list[str]) -> int:
    try:
        binary = promtool()
    except PromtoolError as error:
        print(f"promtool: {error}", file=sys.stderr)
        return 2
    if argv == ["--path"]:
        print(binary)
        return 0
    os.execv(binary, [str(binary), *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
