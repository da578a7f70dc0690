"""The dashboard as an operator sees it: ``taskd dispatcher`` and two ``taskd agent`` processes
on the broker, tasks of every priority, three tenants and two types flowing through them, some
of which dead-letter, and the page loaded under that load in headless Chromium (Debian's
``chromium``, installed by ``scripts/chromium.py`` on first use) behind the views' token.

What is checked is what the rendered page shows: each agent with the capacity it announced
(not the slots this instance counts, which include prefetch) and its state; the dead letters by
reason with the counts that were sent, MALFORMED included; throughput and queue time per
priority drawn over the page's window; the breakdowns by type and tenant; and every panel
saying whether its figures are now, over the window, or since start. The screenshot is kept in
``out/test-artifacts/dashboard.png``.

Chromium is driven over the DevTools protocol (a websocket, with aiohttp's client) so the test
can wait for the page to fill in real time; ``--dump-dom`` with a virtual-time budget would run
the page's one-second polls in virtual time, faster than the dispatcher's figures change.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from streams.client import TaskClient
from streams.settings import Settings, child_environment
from streams.wire import Task
from streams.worker import FatalError
from tests.adapters.test_worker_support import WAIT_S
from tests.e2e.taskd_process import ROOT, running

ARTEFACTS = ROOT / "out" / "test-artifacts"
CHROMIUM_SCRIPT = ROOT / "scripts" / "chromium.py"
TOKEN = "dashboard-token"
HANDLER = "tests.e2e.test_dashboard_browser:work"
AGENTS = {"dash-small": 4, "dash-large": 8}
"""Agent id -> the capacity it announces. With a prefetch share of 0.25 the dispatcher counts
5 and 10 slots for them: the page must show 4 and 8 as their capacity."""
PREFETCH_SHARE = "0.25"
SLOTS = {"dash-small": 5, "dash-large": 10}
TENANTS = ("acme", "globex", "initech")
TYPES = ("resize", "encode")
LOAD_S = 14.0
RATE_PER_S = 40
FAILED, EXPIRED, MALFORMED, NO_CAPABLE_AGENT = 3, 2, 2, 1
"""The dead letters sent, by reason."""
NO_CAPABLE_AGENT_MS = 2_000
VIEWS_LINE = "dispatcher HTTP views on "


async def work(task: Task) -> bytes:
    """The agents' handler: a short run by type; ``fail`` fails for good."""
    await asyncio.sleep(0.15 if task.type == "encode" else 0.08)
    if task.payload == b"fail":
        raise FatalError("failed on purpose")
    return b"done"


# --- the processes -----------------------------------------------------------------------------


def _views_url(log: Path, process: subprocess.Popen[str]) -> str:
    """The dispatcher's views' base URL, from the line of its JSON log that announces them."""
    deadline = time.monotonic() + 2 * WAIT_S
    while time.monotonic() < deadline:
        *complete, _ = log.read_text().split("\n")  # the last line may be half-written
        for line in complete:
            message = json.loads(line)["message"]
            if message.startswith(VIEWS_LINE):
                return str(message.removeprefix(VIEWS_LINE))
        assert process.poll() is None, "the dispatcher exited:\n" + log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError("the dispatcher never served its views:\n" + log.read_text()[-3000:])


class Load:
    """Tasks submitted in a thread at about ``RATE_PER_S`` for ``LOAD_S``: every priority,
    tenant and type, plus the ones that dead-letter. ``sent`` counts them by tenant and type."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent_by_tenant: Counter[str] = Counter()
        self.sent_by_type: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=LOAD_S + WAIT_S)
        assert self.done.is_set() and self.error is None, f"the load failed: {self.error!r}"

    def _run(self) -> None:
        try:
            self._submit()
        except BaseException as error:  # reported by join, in the test's thread
            self.error = error
        finally:
            self.done.set()

    def _submit(self) -> None:
        producer = Producer(self.settings.kafka_config())
        for i in range(MALFORMED):
            producer.produce(self.settings.topics.tasks(i % 4), b"\x00not a task", partition=0)
        assert producer.flush(WAIT_S) == 0
        with TaskClient(self.settings) as client:

            def send(task_type: str, priority: int, tenant: str, **options: Any) -> None:
                client.submit_new(type=task_type, priority=priority, tenant=tenant, **options)
                self.sent_by_tenant[tenant] += 1
                self.sent_by_type[task_type] += 1

            for i in range(FAILED):
                send("resize", i % 4, "acme", payload=b"fail")
            for _ in range(EXPIRED):
                send("encode", 3, "globex", deadline=1)  # long past: expires before dispatch
            for _ in range(NO_CAPABLE_AGENT):
                send("encode", 2, "initech", required_skills=("tpu",))  # no agent has it
            started = time.monotonic()
            mix = itertools.product(range(4), TENANTS, TYPES)
            for count, (priority, tenant, task_type) in enumerate(itertools.cycle(mix)):
                due = started + count / RATE_PER_S
                if due - started >= LOAD_S:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                send(task_type, priority, tenant)
            client.flush(WAIT_S)


# --- the browser -------------------------------------------------------------------------------


def _chromium() -> str:
    """Debian's chromium, installed by scripts/chromium.py when missing (it says so)."""
    done = subprocess.run(
        [sys.executable, str(CHROMIUM_SCRIPT), "--path"],
        capture_output=True,
        text=True,
        timeout=1_000,
        check=False,
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        pytest.fail(f"Chromium is needed and could not be had: {done.stderr.strip()}")
    return done.stdout.strip()


class Page:
    """One tab of a headless Chromium, over the DevTools protocol."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._events: list[str] = []
        """The names of the events received (in order)."""

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are noted)."""
        number = next(self._ids)
        await self._socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await self._socket.receive_json(timeout=WAIT_S)
            if message.get("id") != number:
                if "method" in message:
                    self._events.append(message["method"])
                continue
            if "error" in message:
                raise AssertionError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    async def open(self, url: str) -> None:
        """Load ``url`` and return once its load event fired (its script has run)."""
        await self.call("Page.enable")
        self._events.clear()
        await self.call("Page.navigate", url=url)
        while "Page.loadEventFired" not in self._events:
            message = await self._socket.receive_json(timeout=WAIT_S)
            self._events.append(message.get("method", ""))

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"the page threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        """The whole page (not only the window) as a PNG."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = await self.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        path.write_bytes(base64.b64decode(shot["data"]))


@asynccontextmanager
async def browser(binary: str, profile: Path, log: Path) -> AsyncIterator[Page]:
    """A headless Chromium with a page open on about:blank, stopped at the end."""
    profile.mkdir()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # we run as root on CI; the page is our own
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--no-proxy-server",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=sink,
            stderr=sink,
        )
        try:
            port = await _devtools_port(profile / "DevToolsActivePort", process, log)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                page = next(target for target in targets if target["type"] == "page")
                async with session.ws_connect(
                    page["webSocketDebuggerUrl"], max_msg_size=0
                ) as socket:
                    yield Page(socket)
        finally:
            process.terminate()
            try:
                process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=WAIT_S)


async def _devtools_port(path: Path, process: subprocess.Popen[bytes], log: Path) -> int:
    """The port Chromium picked for the DevTools protocol (it writes it into its profile)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        assert process.poll() is None, "chromium exited:\n" + log.read_text()[-3000:]
        await asyncio.sleep(0.1)
    raise AssertionError("chromium opened no DevTools port:\n" + log.read_text()[-3000:])


SHOWN = """(() => {
  const text = (node) => node.innerText.trim();
  const rows = (id) => Object.fromEntries(
    [...document.querySelectorAll(`#${id} tbody tr`)].map((r) => [
      text(r.cells[0]), [...r.cells].map(text)]));
  const charts = Object.fromEntries(
    [...document.querySelectorAll("#priorities tbody tr")].map((r) => [
      text(r.cells[0]),
      [...r.querySelectorAll("polyline")].map(
        (line) => line.getAttribute("points").split(" ").filter(Boolean).length)]));
  return {
    state: text(document.getElementById("state")),
    headings: [...document.querySelectorAll("h2")].map(text),
    now: text(document.getElementById("now")),
    lifetime: text(document.getElementById("lifetime")),
    agents: rows("agents"), dlq: rows("dlq"), priorities: rows("priorities"),
    types: rows("types"), tenants: rows("tenants"), charts,
  };
})()"""
"""What the page shows: each table's rows by their first cell, as the text a user reads, and
how many points each priority's charts draw."""

Shown = dict[str, Any]


async def until_shown(page: Page, check: Callable[[Shown], bool], what: str) -> Shown:
    """What the page shows once ``check`` holds; fails with the last view after a while."""
    deadline = time.monotonic() + 2 * WAIT_S
    while True:
        shown: Shown = await page.evaluate(SHOWN)
        if check(shown):
            return shown
        assert time.monotonic() < deadline, f"the page never showed {what}:\n" + json.dumps(
            shown, indent=1
        )
        await asyncio.sleep(0.5)


def _rate(cell: str) -> float:
    """``12/s`` or ``0.4/s`` -> the number; ``n/a`` -> 0."""
    return float(cell.removesuffix("/s")) if cell.endswith("/s") else 0.0


def _busy_priorities(shown: Shown) -> bool:
    """Every priority shows a throughput and a queue time now, and both its charts have some
    points."""
    rows = shown["priorities"]
    return sorted(rows) == ["p0", "p1", "p2", "p3"] and all(
        _rate(row[2]) > 0 and row[4].endswith(("ms", " s")) and min(shown["charts"][level]) >= 5
        for level, row in rows.items()
    )


def _dead_letters_counted(shown: Shown) -> bool:
    dlq = shown["dlq"]
    wanted = {
        "FAILED": FAILED,
        "EXPIRED": EXPIRED,
        "MALFORMED": MALFORMED,
        "NO_CAPABLE_AGENT": NO_CAPABLE_AGENT,
    }
    return all(reason in dlq and int(dlq[reason][1]) == n for reason, n in wanted.items())


# --- the test ----------------------------------------------------------------------------------


def test_the_dashboard_shows_agents_dead_letters_and_history_under_load(
    topics: Settings, tmp_path: Path
) -> None:
    binary = _chromium()  # first: installing it must not eat the broker's time below
    settings = topics.model_copy(
        update={"http_port": 0, "http_token": SecretStr(TOKEN), "agent_metrics_port": 0}
    )
    dispatcher_log = tmp_path / "dispatcher.log"
    dispatcher_args = (
        "dispatcher",
        "--log-format", "json",
        "--prefetch-share", PREFETCH_SHARE,
        "--no-capable-agent-ms", str(NO_CAPABLE_AGENT_MS),
        "--heartbeat-ms", "500",
    )  # fmt: skip
    env = child_environment(settings)
    with (
        dispatcher_log.open("w") as dispatcher_sink,
        (tmp_path / "agents.log").open("w") as agents_sink,
        running(env, *dispatcher_args, stderr=dispatcher_sink) as dispatcher,
        running(
            env,
            *("agent", "--id", "dash-small", "--capacity", str(AGENTS["dash-small"])),
            *("--handler", HANDLER, "--heartbeat-ms", "500"),
            stderr=agents_sink,
        ),
        running(
            env,
            *("agent", "--id", "dash-large", "--capacity", str(AGENTS["dash-large"])),
            *("--handler", HANDLER, "--heartbeat-ms", "500"),
            stderr=agents_sink,
        ),
    ):
        url = _views_url(dispatcher_log, dispatcher)
        load = Load(settings)
        screenshot = ARTEFACTS / "dashboard.png"
        ARTEFACTS.mkdir(parents=True, exist_ok=True)

        async def look() -> tuple[Shown, Shown]:
            async with browser(binary, tmp_path / "profile", tmp_path / "chromium.log") as page:
                await page.open(f"{url}/#token={TOKEN}")
                await until_shown(
                    page,
                    lambda shown: len(shown["agents"]) == 2,
                    "both agents (is the token taken from the address?)",
                )
                load.start()
                busy = await until_shown(page, _busy_priorities, "every priority busy")
                await page.screenshot(screenshot)
                await asyncio.to_thread(load.join)
                sent = sum(load.sent_by_tenant.values())
                settled = await until_shown(
                    page,
                    lambda shown: (
                        _dead_letters_counted(shown)
                        and sum(int(row[1]) for row in shown["tenants"].values()) == sent
                    ),
                    "every dead letter and every task received",
                )
                return busy, settled

        busy, settled = asyncio.run(look())
    print(f"\ndashboard screenshot: {screenshot}")

    # the agents with the capacity they announced (the slots counted here include prefetch),
    # and their state
    for agent_id, capacity in AGENTS.items():
        row = busy["agents"][agent_id]
        assert row[1] == "READY"
        assert row[2] == str(capacity), row
        assert row[3].endswith(f"/ {SLOTS[agent_id]}"), row
    assert any(int(row[3].split(" / ")[0]) > 0 for row in busy["agents"].values())
    # per priority: a throughput and a queue time now, and both drawn over the window
    for level, row in busy["priorities"].items():
        assert _rate(row[2]) > 0, (level, row)
        assert min(busy["charts"][level]) >= 5, (level, busy["charts"])
    # the dead letters by reason, as many as were sent; the other reasons at 0
    dlq = settled["dlq"]
    assert {reason: int(row[1]) for reason, row in dlq.items() if int(row[1])} == {
        "FAILED": FAILED,
        "EXPIRED": EXPIRED,
        "MALFORMED": MALFORMED,
        "NO_CAPABLE_AGENT": NO_CAPABLE_AGENT,
    }
    assert {"MAX_ATTEMPTS", "REJECTED", "TOO_LARGE"} <= set(dlq)
    # per type and per tenant: every task received (malformed records are no task of either)
    assert {name: int(row[1]) for name, row in settled["tenants"].items()} == dict(
        load.sent_by_tenant
    )
    assert {name: int(row[1]) for name, row in settled["types"].items()} == dict(load.sent_by_type)
    assert int(settled["types"]["resize"][3]) == FAILED  # dead-lettered, by type
    # instantaneous, windowed and lifetime figures say which they are
    scopes = {
        "Now": "now",
        "Per priority": "last 5 min",
        "Agents": "now",
        "Dead letters by reason": "since start",
        "By task type": "since start",
        "By tenant": "since start",
        "Totals": "since start",
        "Targets": "since start",
    }
    assert settled["headings"] == [f"{title} {scope}" for title, scope in scopes.items()]
    assert "succeeded, last 10 s" in busy["now"] and "received" in settled["lifetime"]
    assert settled["state"] in ("distributing", "idle")
    assert screenshot.stat().st_size > 10_000
