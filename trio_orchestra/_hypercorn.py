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
its first request begins), and the rest follows hypercorn's ``worker_serve``: the lifespan,
TLS, ``insecure_bind`` and QUIC, ``max_requests`` (which ends the worker after the config's
``graceful_timeout``), the statsd logger, hypercorn's warnings. A connection that sends
nothing is closed after ``keep_alive_timeout`` as hypercorn's idle timer would (the time
runs on across a restart). What differs: the requests' time is counted from the stop's
deadline (see :mod:`._asgi`), and only connections accepted on the caller's own sockets go
to the next run (hypercorn's ``insecure_bind`` sockets are bound again by each run). This
uses hypercorn's internal classes (``TCPServer``, ``UDPServer``, ``Lifespan``,
``WorkerContext``), whose signatures are the same from 0.17 to 0.18; ``nox -s
hypercorn_floor`` tests 0.17.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import socket
import ssl
import warnings
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

__all__ = ["FIRST_REQUEST_WAIT", "Waiting", "Worker"]

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
class Waiting:
    """A connection accepted that had sent nothing yet at a stop: left for the next run.

    It keeps the instant hypercorn's idle timer (``keep_alive_timeout``) would have closed it,
    so that a restart does not give a silent connection more time.
    """

    __slots__ = ("deadline", "socket")

    def __init__(self, sock: trio.socket.SocketType, deadline: float) -> None:
        self.socket = sock
        self.deadline = deadline

    def close(self) -> None:
        """Close the connection (the conductor does, for a run that will not claim it)."""
        self.socket.close()


@final
class _Pending:
    """A connection accepted that has sent nothing yet, and the scope of its wait."""

    __slots__ = ("ours", "scope", "stream", "tls")

    def __init__(
        self, stream: trio.SocketStream, tls: ssl.SSLContext | None, deadline: float, *, ours: bool
    ) -> None:
        self.stream = stream
        self.tls = tls
        self.scope = trio.CancelScope(deadline=deadline)
        #: Accepted on the caller's own socket (which the next run serves), not hypercorn's.
        self.ours = ours


@final
class Worker:
    """One run of a hypercorn worker serving *app* with *config*.

    *config* is the caller's own copy: the worker changes it (hypercorn's statsd logger class,
    and ``graceful_timeout``, infinite until the caller's *shutdown* sets it at the stop).
    """

    __slots__ = (
        "_app",
        "_config",
        "_context",
        "_keeping",
        "_on_terminate",
        "_settled",
        "_state",
        "_tls",
        "_unstarted",
        "_waiting",
        "left",
    )

    def __init__(self, app: Callable[..., Awaitable[object]], config: Config) -> None:
        if config.debug:  # as hypercorn.trio.serve warns
            warnings.warn("The config `debug` has no affect when using serve", Warning, 2)
        if config.workers != 1:
            warnings.warn("The config `workers` has no affect when using serve", Warning, 2)
        self._app = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        self._config = config
        self._state: LifespanState = {}
        max_requests = config.max_requests
        if max_requests is not None:  # as hypercorn does: a random jitter on top
            max_requests += random.randint(0, config.max_requests_jitter)  # noqa: S311
        self._context = WorkerContext(max_requests)
        #: The requests' time when max_requests ends the worker: the config's own.
        self._on_terminate = config.graceful_timeout
        config.graceful_timeout = math.inf  # until the stop says how long
        #: The TLS of the sockets served in place of ``config.bind``, if any.
        self._tls = config.create_ssl_context() if config.ssl_enabled else None
        #: Connections accepted that have nothing to read yet.
        self._waiting: set[_Pending] = set()
        #: Connections given to hypercorn whose first request has not begun yet.
        self._unstarted = 0
        self._settled: trio.Event | None = None
        #: Whether the waiting connections are handed back at the stop (else closed).
        self._keeping: bool | None = None
        #: After :meth:`serve` returns: the waiting connections handed back for the next run.
        self.left: list[Waiting] = []

    async def serve(
        self,
        sockets: Sequence[socket.socket],
        waiting: Sequence[Waiting],
        shutdown: Shutdown,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the bound *sockets* and the last run's *waiting* connections until the stop.

        Started with the addresses served, as hypercorn reports them. The listeners made of
        *sockets* close them when they stop (the caller closes them too, for an early
        failure); the *waiting* connections are this worker's to close. Those still waiting
        at a stop after which the server runs again (*shutdown* says) are in :attr:`left`
        once this returns.
        """
        config = self._config
        config.set_statsd_logger_class(StatsdLogger)
        lifespan = Lifespan(self._app, config, self._state)
        handed = False
        try:
            async with trio.open_nursery() as lifespan_nursery:
                await lifespan_nursery.start(lifespan.handle_lifespan)
                await lifespan.wait_for_startup()
                async with trio.open_nursery() as connections:
                    listeners, binds = await self._listeners(sockets, connections)
                    for old in waiting:
                        stream = trio.SocketStream(old.socket)
                        self._wait(
                            connections, _Pending(stream, self._tls, old.deadline, ours=True)
                        )
                    handed = True
                    task_status.started(binds)
                    await self._serve_until_stop(listeners, connections, shutdown)
                await lifespan.wait_for_shutdown()
                lifespan_nursery.cancel_scope.cancel()
        finally:
            if not handed:
                for old in waiting:
                    old.close()

    async def _serve_until_stop(
        self,
        listeners: list[tuple[trio.SocketListener, ssl.SSLContext | None, bool]],
        connections: trio.Nursery,
        shutdown: Shutdown,
    ) -> None:
        """Accept until the stop, then end as hypercorn does, losing no request.

        Hand back the waiting connections, wait for the first requests of those given to
        hypercorn, then tell it that it is terminated, with the requests' deadline.
        """
        config = self._config
        again = True  # max_requests reached: the conductor decides what becomes of them
        end = math.inf  # when the requests' time runs out
        try:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(self._until_terminate, accepting.cancel_scope)
                for listener, tls, ours in listeners:
                    accepting.start_soon(self._accept, listener, tls, connections, ours)
                again = await shutdown()
                accepting.cancel_scope.cancel()
            if self._context.terminate.is_set() and config.graceful_timeout == math.inf:
                config.graceful_timeout = self._on_terminate  # no stop came: hypercorn's time
            end = trio.current_time() + config.graceful_timeout
            self._stop_waiting(keep=again)
            await self._until_settled(end)
        finally:
            self._stop_waiting(keep=False)
            await self._context.terminated.set()
            now = trio.current_time()
            connections.cancel_scope.deadline = min(end, now + config.graceful_timeout)

    async def _listeners(
        self, ours: Sequence[socket.socket], connections: trio.Nursery
    ) -> tuple[list[tuple[trio.SocketListener, ssl.SSLContext | None, bool]], list[str]]:
        """Listen on *ours* and on what hypercorn binds itself, logging as hypercorn does.

        With TLS on, hypercorn binds its ``insecure_bind`` (plain HTTP) and ``quic_bind``;
        ``config.bind`` is empty, *ours* stand for it. Each listener comes with its TLS and
        whether it is one of *ours* (whose waiting connections the next run can serve).
        """
        config = self._config
        created = config.create_sockets()
        streams = [(sock, self._tls, True) for sock in ours]
        streams += [(sock, None, False) for sock in created.insecure_sockets]
        listeners: list[tuple[trio.SocketListener, ssl.SSLContext | None, bool]] = []
        binds: list[str] = []
        for sock, tls, mine in streams:
            sock.listen(config.backlog)
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            listeners.append((listener, tls, mine))
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
        self,
        listener: trio.SocketListener,
        tls: ssl.SSLContext | None,
        connections: trio.Nursery,
        ours: bool,  # noqa: FBT001 - start_soon passes it positionally
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
                # hypercorn's idle timer would close a connection that sends nothing by then.
                deadline = trio.current_time() + self._config.keep_alive_timeout
                self._wait(connections, _Pending(stream, tls, deadline, ours=ours))

    def _wait(self, connections: trio.Nursery, pending: _Pending) -> None:
        """Wait for the first bytes of *pending*: waiting from now on, as the stop sees it."""
        self._waiting.add(pending)
        connections.start_soon(self._connection, pending)

    async def _connection(self, pending: _Pending) -> None:
        """Wait for the connection's first bytes, then let hypercorn serve it."""
        stream = pending.stream
        try:
            with pending.scope:
                await trio.lowlevel.wait_readable(stream.socket)
        except BaseException:
            stream.socket.close()
            raise
        finally:
            self._waiting.discard(pending)
        if pending.scope.cancelled_caught:  # the stop came first, or the idle timeout
            self._left_or_closed(pending)
            return
        # Given to hypercorn in the step that ends the wait: the stop sees one or the other.
        self._unstarted += 1
        connection: _Connection | None = None
        try:
            served: trio.abc.Stream = stream
            preface = False
            if pending.tls is None:
                try:
                    peeked = await stream.socket.recv(len(_PREFACE), socket.MSG_PEEK)
                except OSError:
                    return  # reset by the client: as hypercorn's handler, end it quietly
                preface = peeked == _PREFACE
            else:
                served = trio.SSLStream(
                    stream, pending.tls, server_side=True, https_compatible=True
                )
            state = ConnectionState(self._state.copy())
            connection = _Connection(self, served, state, preface=preface)
            await connection.run()
        finally:
            if connection is None:
                self._began()
            else:
                connection.settle()
            stream.socket.close()  # hypercorn's own close is skipped when it is cancelled

    def _left_or_closed(self, pending: _Pending) -> None:
        sock = pending.stream.socket
        if self._keeping and pending.ours and trio.current_time() < pending.scope.deadline:
            self.left.append(Waiting(sock, pending.scope.deadline))
        else:  # a stop for good, hypercorn's own listener, or silent too long
            sock.close()
        self._changed()

    def _stop_waiting(self, *, keep: bool) -> None:
        """Stop waiting for the first bytes of the connections that have sent none.

        The first call says what becomes of them: left for the next run, or closed.
        """
        if self._keeping is None:
            self._keeping = keep
        for pending in self._waiting:
            pending.scope.cancel()

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
