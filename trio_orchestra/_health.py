"""The health endpoint: ``/livez``, ``/readyz``, ``/status``, ``/metrics``, ``/tasks``, a page.

Why this module: Kubernetes probes, load balancers, Prometheus and a person with a browser all
ask the same question, "how is the tree?", over HTTP. The runner serves it next to the tree,
from before the first player starts until the root returns, so a probe never sees a program
that runs but cannot answer. HTTP is h11's (the optional ``health`` extra), never hand-parsed;
every answer is rendered from one :meth:`Conductor.status` snapshot taken per request, so an
idle endpoint costs nothing. ``/metrics`` is prometheus-client's rendering of a registry (the
same extra) on which the endpoint registers a :class:`TreeCollector` while it serves, so an
application's own metrics are served beside the tree's.
"""

from __future__ import annotations

import importlib.util
import logging
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._checks import parse_address
from ._conductor import Conductor
from ._logging import library_logger
from ._metrics import FAMILY_NAMES, TreeCollector, check_installed, exposition
from ._report import page_html, readiness, status_json
from ._watchdog import tasks_text

if TYPE_CHECKING:
    import prometheus_client

    from ._http import Answer, Headers
    from ._reload import Reloader

__all__ = ["HealthEndpoint"]

logger = library_logger()

#: Seconds a connection may stay idle (or take to send a request) before it is closed.
IDLE_TIMEOUT = 10.0
#: Connections served at once; more are closed at once (probes need a handful).
MAX_CONNECTIONS = 32
_TEXT = "text/plain; charset=utf-8"
_Response = tuple[int, str, str | bytes]  # status, content type, body


def _check_installed(where: str) -> None:
    """Raise a clear error now, before anything runs, if the ``health`` extra is missing."""
    if importlib.util.find_spec("h11") is None:
        msg = f"{where} needs h11, which is not installed; pip install 'trio-orchestra[health]'"
        raise ModuleNotFoundError(msg, name="h11")
    check_installed(where)


class RegistryClashError(ValueError):
    """The registry already serves a tree's metrics: one tree per registry."""


class HealthEndpoint:
    """Answers health requests about *conductor* on ``HOST:PORT``.

    ``/metrics`` serves *registry* (default ``prometheus_client.REGISTRY``), on which a
    :class:`TreeCollector` of *conductor* is registered while :meth:`serve` runs.

    Example::

        endpoint = HealthEndpoint(conductor, "127.0.0.1:8080")
        listeners = await nursery.start(endpoint.serve)
    """

    def __init__(
        self,
        conductor: Conductor,
        address: str,
        registry: prometheus_client.CollectorRegistry | None = None,
        reloader: Reloader | None = None,
    ) -> None:
        """Check *address* and that the ``health`` extra is installed; bind nothing yet."""
        self.address = address
        self.host, self.port = parse_address(address, "the health address")
        _check_installed(f"the health endpoint on {address}")
        if registry is None:
            from prometheus_client import REGISTRY  # noqa: PLC0415 - checked just above

            registry = REGISTRY
        self._registry = registry
        self._conductor = conductor
        self._reloader = reloader
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        self._routes: dict[str, Callable[[str], _Response]] = {
            "/livez": lambda _: (200, _TEXT, "ok\n"),
            "/readyz": self._readyz,
            "/status": self._status,
            "/metrics": self._metrics,
            "/tasks": self._tasks,
            "/": self._page,
        }

    async def serve(
        self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, report the listeners as started, and answer until cancelled.

        The tree's collector is on the registry from before the listeners are reported
        until this returns.

        Raises:
            OSError: it cannot listen on its address.
            RegistryClashError: the registry already has a tree's metrics.
        """
        collector = TreeCollector(self._conductor)
        self._register(collector)
        try:
            try:
                listeners = await trio.open_tcp_listeners(self.port, host=self.host)
            except OSError as exc:
                msg = f"the health endpoint cannot listen on {self.address}: {exc.strerror or exc}"
                raise OSError(exc.errno, msg) from exc
            if logger.isEnabledFor(logging.INFO):
                for listener in listeners:
                    host, port = listener.socket.getsockname()[:2]
                    shown = f"[{host}]" if ":" in host else host
                    logger.info("health endpoint on http://%s:%d/", shown, port)
            task_status.started(listeners)
            await trio.serve_listeners(self._connection, listeners)
        finally:
            self._registry.unregister(collector)

    def _register(self, collector: TreeCollector) -> None:
        """Put the tree's collector on the registry, or say clearly why it cannot be."""
        try:
            self._registry.register(collector)
        except ValueError as exc:  # prometheus-client's DuplicateTimeseries
            taken = ", ".join(name for name in FAMILY_NAMES if name in str(exc))
            msg = (
                f"the health endpoint on {self.address} cannot serve the metrics of"
                f" {self._conductor.path!r}: its registry already has {taken or exc}"
                " (another tree's?); give each tree a registry of its own"
                " (registry=prometheus_client.CollectorRegistry())"
            )
            raise RegistryClashError(msg) from exc

    # -- the answers --------------------------------------------------------------------------

    def _readyz(self, _accept: str) -> _Response:
        waiting = readiness(self._conductor.status())
        if waiting:
            return 503, _TEXT, "not ready: " + "; ".join(waiting) + "\n"
        return 200, _TEXT, "ready\n"

    def _status(self, _accept: str) -> _Response:
        reloader = self._reloader
        last = None if reloader is None else reloader.last
        body = status_json(self._conductor.status(), trio.current_time(), reload=last)
        return 200, "application/json", body

    def _metrics(self, accept: str) -> _Response:
        body, kind = exposition(self._registry, accept)
        return 200, kind, body

    def _tasks(self, _accept: str) -> _Response:
        return 200, _TEXT, tasks_text(self._conductor) + "\n"

    def _page(self, _accept: str) -> _Response:
        body = page_html(self._conductor.status(), trio.current_time())
        return 200, "text/html; charset=utf-8", body

    def _answer(self, method: bytes, target: bytes, headers: Headers) -> Answer:
        """What to answer *method* on *target*: status, headers, body."""
        if method not in {b"GET", b"HEAD"}:
            return _reply(405, _TEXT, "only GET and HEAD\n", ("allow", "GET, HEAD"))
        text = target.decode("ascii", "replace")
        path = urllib.parse.urlsplit(text).path or "/"  # also the absolute form, http://h/p
        route = self._routes.get(path)
        if route is None:
            return _reply(404, _TEXT, f"no {path}; try /livez /readyz /status /metrics /tasks /\n")
        accept = b", ".join(value for name, value in headers if name == b"accept")
        return _reply(*route(accept.decode("latin-1")))

    async def _connection(self, stream: trio.SocketStream) -> None:
        """Serve one client; whatever it sends, or does, ends only its own connection."""
        from ._http import serve_connection  # noqa: PLC0415 - h11, the optional extra

        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            return  # too many connections at once: this one is closed at once
        try:
            with trio.move_on_after(IDLE_TIMEOUT) as idle:
                await serve_connection(stream, self._answer, idle, IDLE_TIMEOUT)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception:
            logger.exception("the health endpoint failed to answer a client")
        finally:
            self._limiter.release()


def _reply(status: int, kind: str, body: str | bytes, *extra: tuple[str, str]) -> Answer:
    """An answer of *kind*, never cached, with any *extra* headers."""
    headers = [("content-type", kind), ("cache-control", "no-store"), *extra]
    if isinstance(body, str):
        body = body.encode(errors="replace")  # names may hold lone surrogates
    return status, headers, body
