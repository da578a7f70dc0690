#!/usr/bin/env python3
"""Find Debian's headless-capable ``chromium``, installing it on first use when we are root.

Standard library only. ``TASKD_CHROMIUM`` (a path) is used when set, else ``chromium`` (or
``chromium-browser``, ``google-chrome``) on PATH. Otherwise, as root, Debian's ``chromium``
package is installed (``apt-get install -y --no-install-recommends chromium``, after an
``apt-get update`` if the package is unknown); as any other user, one line says how to get it.
The browser needs its shared libraries, so unlike ``scripts/promtool.py`` it is installed
system-wide rather than unpacked into a cache; a second run finds it on PATH and installs
nothing. When it cannot be had, one line says why and the exit status is 2.

  scripts/chromium.py --path       install if missing and print the binary's path
  scripts/chromium.py ARGS...      run chromium with ARGS (e.g. --headless --dump-dom URL)

Used by ``tests/e2e/test_dashboard_browser.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "chromium"
NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
INSTALL_TIMEOUT_S = 900


class ChromiumError(Exception):
    """One clear line for the user; the script exits 2 with it."""


def chromium() -> Path:
    """TASKD_CHROMIUM, else a Chromium on PATH, else Debian's package (installed as root)."""
    chosen = os.environ.get("TASKD_CHROMIUM")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise ChromiumError(f"TASKD_CHROMIUM={chosen} is not an executable file")
        return Path(chosen)
    found = _on_path()
    if found is None:
        install()
        found = _on_path()
        if found is None:
            raise ChromiumError(f"`{' '.join(INSTALL)}` succeeded but no chromium is on PATH")
    return found


def _on_path() -> Path | None:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def install() -> None:
    """Install Debian's chromium package with apt-get (root only)."""
    if shutil.which("apt-get") is None:
        raise ChromiumError(
            "no chromium on PATH and no apt-get to install it: install Chromium or set"
            " TASKD_CHROMIUM to its path"
        )
    if os.geteuid() != 0:
        raise ChromiumError(
            f"no chromium on PATH: run `sudo {' '.join(INSTALL)}` or set TASKD_CHROMIUM to"
            " a Chromium binary"
        )
    # One line on what is happening: the first install downloads about 100 MB.
    print(f"installing Debian's {PACKAGE} package ({' '.join(INSTALL)}) ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if _run(INSTALL, env).returncode == 0:
        return
    # A fresh machine may have no package lists yet (or stale ones naming removed versions).
    for command, what in ((["apt-get", "update"], "apt-get update"), (INSTALL, "apt-get install")):
        done = _run(command, env)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if line.startswith("E:")]
            detail = (errors or done.stderr.strip().splitlines()[-1:] or ["no output"])[0]
            raise ChromiumError(f"{what} failed (exit {done.returncode}): {detail}")


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=INSTALL_TIMEOUT_S
    )


def main(argv: list[str]) -> int:
    try:
        binary = chromium()
    except (ChromiumError, subprocess.TimeoutExpired) as error:
        print(f"chromium: {error}", file=sys.stderr)
        return 2
    if argv == ["--path"]:
        print(binary)
        return 0
    os.execv(binary, [str(binary), *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
