"""The README's first example, run as a reader would: its code blocks written to files, its shell
commands run as processes against the test's broker, and its promised output checked."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from streams.settings import Settings
from tests.e2e.test_pipeline_crash import taskd, taskd_env

README = Path(__file__).resolve().parents[2] / "README.md"
FIRST_EXAMPLE = "## A first example"
RUN_TIMEOUT_S = 120
TASKD_SCRIPT = str(Path(sys.executable).with_name("taskd"))
"""The command the package installs, as a reader runs it."""


def _section() -> str:
    text = README.read_text()
    start = text.index(FIRST_EXAMPLE)
    end = text.index("\n## ", start + len(FIRST_EXAMPLE))
    return text[start:end]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _python_files(section: str) -> dict[str, str]:
    """The python blocks that open with a ``# name.py`` line, by name."""
    files = {}
    for block in _blocks(section, "python"):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            files[first[2:]] = block
    return files


def _commands(section: str) -> list[str]:
    """The first shell block's commands, comments and the trailing ``&`` dropped."""
    lines = _blocks(section, "sh")[0].splitlines()
    return [line.split("#")[0].strip().rstrip("&").strip() for line in lines if line.strip()]


def test_the_readme_first_example_runs_as_written(topics: Settings, tmp_path: Path) -> None:
    section = _section()
    files = _python_files(section)
    assert set(files) == {"tasks.py", "producer.py"}
    assert sum(len(code.splitlines()) for code in files.values()) <= 20, "a ten-line example"
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    commands = _commands(section)
    assert commands == [
        "taskd topics create",
        "taskd dispatcher",
        "taskd agent --app tasks:app --capacity 4",
        "python producer.py",
    ]
    settings = topics.model_copy(update={"data_dir": tmp_path / "state"})
    env = _env(settings, tmp_path)
    created = _run([TASKD_SCRIPT, *commands[0].split()[1:]], env, tmp_path)
    assert created.returncode == 0, created.stderr
    logs = tmp_path / "logs"
    logs.mkdir()

    def started(name: str, command: str) -> AbstractContextManager[object]:
        args = command.split()[1:]
        return taskd(settings, logs / name, *args, ready="ready", env=env, program=[TASKD_SCRIPT])

    with started("dispatcher.log", commands[1]), started("agent.log", commands[2]):
        produced = _run([sys.executable, "producer.py"], env, tmp_path)
    assert produced.returncode == 0, produced.stderr
    promised = files["producer.py"].splitlines()[-1].split("# ")[-1]
    assert ast.literal_eval(produced.stdout.strip()) == ast.literal_eval(promised)


def _run(argv: list[str], env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _env(settings: Settings, folder: Path) -> dict[str, str]:
    """The reader's shell: the test's broker and prefix (as the other process tests give
    them), and the example's folder importable (as ``python producer.py`` and ``taskd``
    started in that folder would have it)."""
    path = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    return {**taskd_env(settings), "PYTHONPATH": path, "TASKD_HTTP_PORT": "0"}
