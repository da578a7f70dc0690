"""The dispatcher's HTTP views: ``/metrics``, ``/status``, ``/context``, ``/scale`` and a live
dashboard.

A small aiohttp server on the dispatcher's event loop. The views are plain callables that the
server calls on that loop for each request, so they may read the distributor, which that loop
owns, without locks. The dashboard (``/``) is one self-contained page shipped beside this module
(``dashboard.html``: no external assets) that polls ``/status`` and ``/context``.
"""

from __future__ import annotations

import functools
import hmac
import socket
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from streams.errors import ConfigError, TaskdError

View = Callable[[], Mapping[str, object]]
"""Builds one JSON view (``/status``, ``/context`` or ``/scale``) at the time of the request."""

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
        scale: View | None = None,
    ) -> None:
        self._host = host
        self._token = None if token is None else f"Bearer {token}".encode()
        self._metrics_open = metrics_open
        self._wanted_port = port
        self._status = status
        self._context = context
        self._scale = scale
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
        if self._scale is not None:
            app.router.add_get("/scale", self._scale_view)
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

    async def _scale_view(self, _request: web.Request) -> web.Response:
        assert self._scale is not None
        return web.json_response(dict(self._scale()), headers=_JSON_HEADERS)

    async def _dashboard(self, _request: web.Request) -> web.Response:
        return web.Response(text=dashboard_html(), content_type="text/html", headers=_PAGE_HEADERS)


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


@functools.cache
def dashboard_html() -> str:
    """The dashboard's page (``streams/adapters/dashboard.html``, package data of the wheel)."""
    page = resources.files("streams.adapters").joinpath("dashboard.html")
    return page.read_text(encoding="utf-8")
