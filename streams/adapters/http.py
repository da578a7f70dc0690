"""The dispatcher's HTTP views: ``/metrics``, ``/status``, ``/context`` and a live dashboard.

A small aiohttp server on the dispatcher's event loop. The views are plain callables that the
server calls on that loop for each request, so they may read the distributor, which that loop
owns, without locks. The dashboard (``/``) is one self-contained page: no external assets.
"""

from __future__ import annotations

import hmac
import socket
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from streams.errors import ConfigError, TaskdError

View = Callable[[], Mapping[str, object]]
"""Builds one JSON view (``/status`` or ``/context``) at the time of the request."""

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What ``generate_latest`` writes: the Prometheus text exposition format 0.0.4."""

_SHUTDOWN_S = 1.0
"""How long ``stop`` lets requests under way finish."""

_JSON_HEADERS = {"Cache-Control": "no-store"}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'"
    ),
}


class StatusServer:
    """Serves the views on ``host:port`` (0: any free port) between ``start`` and ``stop``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: View,
        context: View,
        registry: CollectorRegistry,
        token: str | None = None,
        metrics_open: bool = True,
    ) -> None:
        self._host = host
        self._token = None if token is None else f"Bearer {token}".encode()
        self._metrics_open = metrics_open
        self._wanted_port = port
        self._status = status
        self._context = context
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when 0 was asked for)."""
        if self._port is None:
            raise TaskdError("the status server is not started")
        return self._port

    @property
    def url(self) -> str:
        """Its base URL, e.g. ``http://127.0.0.1:6066``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; ConfigError if the address cannot be bound. Twice is an error."""
        if self._runner is not None:
            raise TaskdError("the status server is already started")
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=_SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._wanted_port).start()
        except OSError as error:
            await runner.cleanup()
            raise bind_error(self._host, self._wanted_port, error) from error
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving and free the port; a no-op when not started."""
        runner, self._runner, self._port = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._authorize] if self._token else [])
        app.router.add_get("/", self._dashboard)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status_view)
        app.router.add_get("/context", self._context_view)
        return app

    @web.middleware
    async def _authorize(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """With a token: every view but the dashboard's page (it holds no figures) and, when
        open, ``/metrics`` asks for ``Authorization: Bearer <token>``, compared in constant
        time; else 401."""
        assert self._token is not None
        open_paths = ("/", "/metrics") if self._metrics_open else ("/",)
        given = request.headers.get("Authorization", "").encode()
        if request.path in open_paths or hmac.compare_digest(given, self._token):
            return await handler(request)
        return web.json_response(
            {"error": "this view needs the header 'Authorization: Bearer <TASKD_HTTP_TOKEN>'"},
            status=401,
            headers={**_JSON_HEADERS, "WWW-Authenticate": 'Bearer realm="taskd"'},
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )

    async def _status_view(self, _request: web.Request) -> web.Response:
        return web.json_response(dict(self._status()), headers=_JSON_HEADERS)

    async def _context_view(self, _request: web.Request) -> web.Response:
        return web.json_response(dict(self._context()), headers=_JSON_HEADERS)

    async def _dashboard(self, _request: web.Request) -> web.Response:
        return web.Response(text=DASHBOARD_HTML, content_type="text/html", headers=_PAGE_HEADERS)


def check_address(host: str, port: int) -> None:
    """ConfigError now if ``host:port`` cannot be bound: a check before a long start-up (the
    port may still be taken in between, which ``StatusServer.start`` reports the same way)."""
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        raise bind_error(host, port, error) from error


def bind_error(host: str, port: int, error: OSError) -> ConfigError:
    """The one-line error for an address the views cannot be served on."""
    return ConfigError(
        f"cannot serve the dispatcher's HTTP views on {host}:{port}: "
        f"{error.strerror or error} (set TASKD_HTTP_PORT, 0 for any free port)"
    )


DASHBOARD_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taskd dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 15px; margin: 20px 0 8px; }
  #state { font-weight: bold; }
  #state.distributing { color: #1a7f37; } #state.idle { color: #666; }
  #state.starting, #state.draining { color: #9a6700; } #state.unreachable { color: #cf222e; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; }
  .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; }
  .card b { display: block; font-size: 22px; }
  .row { display: grid; grid-template-columns: 180px 1fr 140px; gap: 8px; align-items: center;
         margin: 3px 0; }
  .track { background: #e8e8e8; height: 14px; border-radius: 3px; overflow: hidden; }
  .bar { background: #0969da; height: 100%; }
  .bar.down, .bar.suspect { background: #cf222e; } .bar.draining { background: #9a6700; }
  .muted { color: #666; }
  td, th { padding: 2px 10px 2px 0; text-align: left; }
</style>
</head>
<body>
<h1>Task Distributor <span id="state" class="starting">connecting</span></h1>
<div class="muted" id="details"></div>
<div class="cards" id="progress"></div>
<h2>Queue depth by priority</h2>
<div id="queues"></div>
<h2>Load per agent</h2>
<div id="agents"></div>
<h2>Targets</h2>
<table id="targets"></table>
<script>
"use strict";
const LABELS = {tasks_distributed: "tasks distributed", avg_queue_time: "avg queue time",
                load_variance: "load variance", deadline_success: "deadline success"};

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function bars(target, rows) {
  const box = document.getElementById(target);
  box.replaceChildren(...rows.map(([label, share, text, css]) => {
    const row = el("div", {class: "row"});
    const track = el("div", {class: "track"});
    const bar = el("div", {class: "bar " + (css || "")});
    bar.style.width = (100 * Math.max(0, Math.min(1, share))).toFixed(1) + "%";
    track.append(bar);
    row.append(el("span", {}, label), track, el("span", {class: "muted"}, text));
    return row;
  }));
}

function showStatus(status) {
  const state = document.getElementById("state");
  state.textContent = status.status;
  state.className = status.status;
  const cards = Object.entries(status.progress || {}).map(([key, value]) => {
    const card = el("div", {class: "card"}, LABELS[key] || key);
    card.prepend(el("b", {}, value));
    return card;
  });
  document.getElementById("progress").replaceChildren(...cards);
  const d = status.details || {};
  const agents = d.agents || {};
  const dead = Object.values(d.dead_lettered || {}).reduce((a, b) => a + b, 0);
  document.getElementById("details").textContent =
    `received ${d.tasks} · completed ${d.completed} · dead-lettered ${dead} · ` +
    `held ${d.held} · in flight ${d.in_flight} · agents ${agents.ready}/${agents.total} ready`;
}

function showContext(context) {
  const held = Object.entries((context.volumes || {}).held_by_priority || {});
  const most = Math.max(1, ...held.map(([, count]) => count));
  bars("queues", held.map(([level, count]) => [level, count / most, `${count} held`]));
  bars("agents", (context.agents || []).map((a) => [
    a.id, a.load, `${a.in_flight}/${a.capacity} ${a.state.toLowerCase()}`, a.state.toLowerCase()
  ]));
  const rows = Object.entries(context.targets || {}).map(([name, t]) => {
    const row = el("tr");
    const mark = t.met === null ? "-" : (t.met ? "met" : "missed");
    const value = t.value === null ? "n/a"
      : (t.unit === "ratio" ? `${(100 * t.value).toFixed(1)}%` : `${t.value} ${t.unit}`);
    row.append(el("td", {}, name.replace(/_/g, " ")), el("td", {}, t.goal),
               el("td", {}, value), el("td", {}, mark));
    return row;
  });
  document.getElementById("targets").replaceChildren(...rows);
}

// With TASKD_HTTP_TOKEN set, open the page as /#token=<token>: the token stays in the browser.
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");

async function view(path) {
  const headers = TOKEN ? {Authorization: `Bearer ${TOKEN}`} : {};
  const response = await fetch(path, {cache: "no-store", headers});
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function poll() {
  try {
    const [status, context] = await Promise.all([view("status"), view("context")]);
    showStatus(status);
    showContext(context);
  } catch (error) {
    const state = document.getElementById("state");
    state.textContent = "unreachable";
    state.className = "unreachable";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""
