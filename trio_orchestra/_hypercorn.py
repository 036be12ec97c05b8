"""hypercorn's worker over an accept loop of our own, so that a restart loses no request.

Why this module: :func:`hypercorn.trio.serve` accepts and shuts down in one step. The instant
its shutdown begins it stops accepting and closes every connection it counts idle, and a
connection it accepted a moment before counts idle until its request is read: a request the
client had already sent is lost. Through a restart on a kept socket (see :mod:`._handoff`)
that is the one failure left (DESIGN s. 12 and 14 ask for none). So the accept loop is ours:

* a connection goes to hypercorn only once it has bytes to read (what Linux's
  ``TCP_DEFER_ACCEPT`` does in the kernel); until then it is *waiting*;
* at the stop, accepting ends first; the waiting connections are handed back to the caller
  (who leaves them to the next run, with the listening socket) or, on a stop for good, closed;
* only then, once each connection hypercorn was given has begun its first request (within
  the requests' time, and :data:`FIRST_REQUEST_WAIT` at most), is hypercorn told that the
  worker is terminated, which closes the idle connections and ends keep-alive.

Each connection is served by hypercorn's own connection class (a subclass that hears when
its first request begins), and the rest is hypercorn's
``worker_serve`` step for step: the lifespan, TLS, QUIC, ``max_requests``, the statsd logger.
This uses hypercorn's internal classes (``TCPServer``, ``UDPServer``, ``Lifespan``,
``WorkerContext``), whose signatures are the same from 0.17 to 0.18.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast, final

import trio
from hypercorn.config import Config
from hypercorn.events import Event, Updated
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.udp_server import UDPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState

# Their types have a bare tuple and a bare dict in them: pyright calls them partly unknown.
from hypercorn.utils import (
    repr_socket_addr,  # pyright: ignore[reportUnknownVariableType]
    wrap_app,  # pyright: ignore[reportUnknownVariableType]
)

__all__ = ["FIRST_REQUEST_WAIT", "Worker"]

#: accept() errors that mean "too many connections for now", as in :func:`trio.serve_listeners`.
_CAPACITY_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_CAPACITY_PAUSE = 0.1
_ACCEPT_LOG = logging.getLogger("trio.serve_listeners")

#: At a stop, how long at most the connections that sent bytes but no whole request yet have
#: to begin one (an HTTP/2 client sends its preface, then its request; a TLS handshake comes
#: first) before hypercorn counts them idle and closes them.
FIRST_REQUEST_WAIT = 1.0

#: How an HTTP/2 connection with prior knowledge begins (RFC 9113, 3.4): ``PRI * HTTP/2.0``.
_PREFACE = b"PRI "

#: What the caller says at the stop: whether the server runs again (``True``: the connections
#: still waiting are handed back for the next run; ``False``: they are closed at once).
Shutdown = Callable[[], Awaitable[bool]]


class _Connection(TCPServer):
    """hypercorn's handler of one connection, telling the worker when its first request began.

    Until then hypercorn counts the connection idle, and once the worker is terminated it
    closes an idle connection (HTTP/1) or refuses its new requests (HTTP/2). (A subclass of an
    internal class: its ``protocol_send`` is what hypercorn's protocols call with
    ``Updated(idle=False)`` when a request begins.) *preface* says the connection opened with
    HTTP/2's preface in the clear, which hypercorn's HTTP/1 side reports as a request before it
    hands the connection to its HTTP/2 side: that one is not counted.
    """

    def __init__(
        self, worker: Worker, stream: trio.abc.Stream, state: ConnectionState, *, preface: bool
    ) -> None:
        super().__init__(worker._app, worker._config, worker._context, state, cast("Any", stream))
        self._worker: Worker | None = worker
        self._not_counted = int(preface)

    async def protocol_send(self, event: Event) -> None:
        await super().protocol_send(event)  # first: a request stops the idle timer here
        if self._worker is not None and isinstance(event, Updated) and not event.idle:
            if self._not_counted:
                self._not_counted -= 1
            else:
                self.settle()

    def settle(self) -> None:
        """The first request began, or the connection ended: the worker waits no more."""
        if self._worker is not None:
            self._worker._began()
            self._worker = None


@final
class Worker:
    """One run of a hypercorn worker serving *app* with *config* (a copy of its own)."""

    __slots__ = (
        "_app",
        "_config",
        "_context",
        "_keeping",
        "_settled",
        "_state",
        "_tls",
        "_unstarted",
        "_waiting",
        "left",
    )

    def __init__(self, app: Callable[..., Awaitable[object]], config: Config) -> None:
        self._app = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        self._config = config
        self._state: LifespanState = {}
        max_requests = config.max_requests
        if max_requests is not None:  # as hypercorn does: a random jitter on top
            max_requests += random.randint(0, config.max_requests_jitter)  # noqa: S311
        self._context = WorkerContext(max_requests)
        #: The TLS of the sockets served in place of ``config.bind``, if any.
        self._tls = config.create_ssl_context() if config.ssl_enabled else None
        #: Connections accepted that have nothing to read yet, with the scope of their wait.
        self._waiting: dict[trio.SocketStream, trio.CancelScope] = {}
        #: Connections given to hypercorn whose first request has not begun yet.
        self._unstarted = 0
        self._settled: trio.Event | None = None
        #: Whether the waiting connections are handed back at the stop (else closed).
        self._keeping: bool | None = None
        #: After :meth:`serve` returns: the waiting connections handed back for the next run.
        self.left: list[trio.socket.SocketType] = []

    async def serve(
        self,
        sockets: Sequence[socket.socket],
        waiting: Sequence[trio.socket.SocketType],
        shutdown: Shutdown,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the bound *sockets* and the last run's *waiting* connections until the stop.

        Started with the addresses served, as hypercorn reports them. The *sockets* are
        listened on and closed here; the connections still waiting at a stop after which the
        server runs again (*shutdown* says) are in :attr:`left` once this returns.
        """
        config = self._config
        config.set_statsd_logger_class(StatsdLogger)
        lifespan = Lifespan(self._app, config, self._state)
        async with trio.open_nursery() as lifespan_nursery:
            await lifespan_nursery.start(lifespan.handle_lifespan)
            await lifespan.wait_for_startup()
            async with trio.open_nursery() as connections:
                listeners, binds = await self._listeners(sockets, connections)
                for sock in waiting:
                    connections.start_soon(self._connection, trio.SocketStream(sock), self._tls)
                task_status.started(binds)
                again = False  # max_requests reached: no stop came
                end = math.inf  # when the requests' time runs out
                try:
                    async with trio.open_nursery() as accepting:
                        accepting.start_soon(self._until_terminate, accepting.cancel_scope)
                        for listener, tls in listeners:
                            accepting.start_soon(self._accept, listener, tls, connections)
                        again = await shutdown()
                        accepting.cancel_scope.cancel()
                    end = trio.current_time() + config.graceful_timeout
                    self._stop_waiting(keep=again)
                    await self._until_settled(end)
                finally:
                    self._stop_waiting(keep=False)
                    await self._context.terminated.set()
                    now = trio.current_time()
                    connections.cancel_scope.deadline = min(end, now + config.graceful_timeout)
            await lifespan.wait_for_shutdown()
            lifespan_nursery.cancel_scope.cancel()

    async def _listeners(
        self, ours: Sequence[socket.socket], connections: trio.Nursery
    ) -> tuple[list[tuple[trio.SocketListener, ssl.SSLContext | None]], list[str]]:
        """Listen on *ours* and on what hypercorn binds itself, logging as hypercorn does.

        With TLS on, hypercorn binds its ``insecure_bind`` (plain HTTP) and ``quic_bind``;
        ``config.bind`` is empty, *ours* stand for it.
        """
        config = self._config
        created = config.create_sockets()
        streams = [(sock, self._tls) for sock in ours]
        streams += [(sock, None) for sock in created.insecure_sockets]
        listeners: list[tuple[trio.SocketListener, ssl.SSLContext | None]] = []
        binds: list[str] = []
        for sock, tls in streams:
            sock.listen(config.backlog)
            listeners.append((trio.SocketListener(trio.socket.from_stdlib_socket(sock)), tls))
            scheme = "http" if tls is None else "https"
            bind = f"{scheme}://{repr_socket_addr(sock.family, sock.getsockname())}"
            binds.append(bind)
            await config.log.info("Running on %s (CTRL + C to quit)", bind)
        for sock in created.quic_sockets:
            state = ConnectionState(self._state.copy())
            await connections.start(UDPServer(self._app, config, self._context, state, sock).run)
            bind = repr_socket_addr(sock.family, sock.getsockname())
            await config.log.info("Running on https://%s (QUIC) (CTRL + C to quit)", bind)
        return listeners, binds

    async def _until_terminate(self, accepting: trio.CancelScope) -> None:
        """``max_requests`` reached: hypercorn ends the worker, as on a stop."""
        await self._context.terminate.wait()
        accepting.cancel()

    async def _accept(
        self, listener: trio.SocketListener, tls: ssl.SSLContext | None, connections: trio.Nursery
    ) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _CAPACITY_ERRORS:
                        raise
                    _ACCEPT_LOG.exception(
                        "accept returned %s (%s); retrying in %s seconds",
                        errno.errorcode[exc.errno],
                        os.strerror(exc.errno),
                        _CAPACITY_PAUSE,
                    )
                    await trio.sleep(_CAPACITY_PAUSE)
                    continue
                connections.start_soon(self._connection, stream, tls)

    async def _connection(self, stream: trio.SocketStream, tls: ssl.SSLContext | None) -> None:
        """Wait for the connection's first bytes, then let hypercorn serve it."""
        scope = trio.CancelScope()
        self._waiting[stream] = scope
        try:
            with scope:
                await trio.lowlevel.wait_readable(stream.socket)
        except BaseException:
            stream.socket.close()
            raise
        finally:
            del self._waiting[stream]
        if scope.cancelled_caught:  # the stop came first: for the next run, or closed
            self._left_or_closed(stream)
            return
        # Given to hypercorn in the step that ends the wait: the stop sees one or the other.
        self._unstarted += 1
        connection: _Connection | None = None
        try:
            served: trio.abc.Stream = stream
            preface = False
            if tls is None:
                preface = await stream.socket.recv(len(_PREFACE), socket.MSG_PEEK) == _PREFACE
            else:
                served = trio.SSLStream(stream, tls, server_side=True, https_compatible=True)
            state = ConnectionState(self._state.copy())
            connection = _Connection(self, served, state, preface=preface)
            await connection.run()
        finally:
            if connection is None:
                self._began()
            else:
                connection.settle()
            stream.socket.close()  # hypercorn's own close is skipped when it is cancelled

    def _left_or_closed(self, stream: trio.SocketStream) -> None:
        if self._keeping:
            self.left.append(stream.socket)
        else:
            stream.socket.close()
        self._changed()

    def _stop_waiting(self, *, keep: bool) -> None:
        """Stop waiting for the first bytes of the connections that have sent none.

        The first call says what becomes of them: left for the next run, or closed.
        """
        if self._keeping is None:
            self._keeping = keep
        for scope in self._waiting.values():
            scope.cancel()

    def _began(self) -> None:
        self._unstarted -= 1
        self._changed()

    def _changed(self) -> None:
        if self._settled is not None and not self._waiting and not self._unstarted:
            self._settled.set()

    async def _until_settled(self, end: float) -> None:
        """Wait until no connection waits and each given to hypercorn has begun a request.

        Until then a request already sent may still count idle. The wait ends at *end* (the
        requests' time) or after :data:`FIRST_REQUEST_WAIT`, whichever comes first.
        """
        if not self._waiting and not self._unstarted:
            return
        self._settled = trio.Event()
        with trio.move_on_at(min(end, trio.current_time() + FIRST_REQUEST_WAIT)):
            await self._settled.wait()
