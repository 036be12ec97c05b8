"""An ASGI server player: ``serve_asgi(app)``, hypercorn's HTTP with our own accept loop.

Why this module: a web application is the player whose stop most needs to be graceful. Ready
means bound, so the players after it start only once requests are accepted; the soft phase is
hypercorn's own graceful shutdown (stop accepting, let the requests in flight finish, then run
the app's lifespan shutdown), bounded by the player's grace; the hard phase cancels what is
left. The grace is shared, so that the lifespan shutdown (where apps close their pools) gets its
turn even when a request outlasts the grace: at the stop, hypercorn's ``graceful_timeout`` on
our copy of the config is set to the requests' part, after which the requests are cancelled and
the lifespan shutdown runs in the part kept for it. The sockets are bound here, not by
hypercorn, so that a bad or busy address fails the start with one plain error naming the
player, and no socket is left open behind it. A stop for a restart keeps the socket open and
hands it to the next run (see :mod:`._handoff`), with the connections accepted that had sent
nothing yet; the worker of :mod:`._hypercorn` serves a duplicate of it.
"""

from __future__ import annotations

import copy
import logging
import math
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast, final

import trio

from ._checks import check_time, check_type, parse_address
from ._errors import lone_error
from ._handoff import claim, close_all, keep, will_run_again
from ._spec import describe
from ._stop import current_path, stop_or_never

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:  # hypercorn is an optional extra, imported when a player starts
    import hypercorn.config

    from ._hypercorn import Waiting, Worker

__all__ = ["serve_asgi"]

_DEFAULT_BIND = "127.0.0.1:8000"

#: The default share of the lifespan shutdown is a quarter of the grace, and at most this.
_SHARE_CAP = 5.0

#: An ASGI 3 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[..., Awaitable[object]]


def requests_time(left: float, lifespan_share: float | None) -> float:
    """The rule: of the *left* seconds before the hard cancel, those the requests get.

    The last ``min(lifespan_share, left)`` seconds are kept for the lifespan shutdown;
    ``lifespan_share=None`` keeps ``min(left / 4, 5)``. With no deadline (``left`` infinite)
    the requests have all the time they want.
    """
    if left == math.inf:
        return math.inf
    left = max(left, 0.0)
    kept = min(left / 4, _SHARE_CAP) if lifespan_share is None else min(lifespan_share, left)
    return left - kept


@final
class _Watched:
    """The app as hypercorn calls it, noting whether a lifespan shutdown is still to come.

    It is, once the app completed a lifespan startup and until its lifespan call returns; an
    app that does not speak the lifespan protocol (hypercorn goes on without it) never is, so
    nothing of the grace is kept for it.
    """

    __slots__ = ("app", "shutdown_to_come")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.shutdown_to_come = False

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[object]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                self.shutdown_to_come = True

        try:
            await self.app(scope, receive, watched_send)
        finally:
            self.shutdown_to_come = False


async def _listen(text: str, host: str, port: int, player: str) -> socket.socket:
    """Bind one TCP socket as hypercorn would (IPv6 when the host has a ``:``), not listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = await trio.socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            if sys.platform != "win32":  # on Windows it would let another socket steal the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(address)
            sock.setblocking(False)  # noqa: FBT003 - the socket API's own positional flag
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        msg = f"player {player!r} cannot listen on {text}: {exc.strerror or exc}"
        raise OSError(exc.errno, msg) from exc
    return sock


def _check_app(app: object) -> None:
    if not callable(app):
        kind = type(app).__name__
        msg = f"serve_asgi: the app must be an ASGI application (a callable), not {kind}"
        raise TypeError(msg)


def _import_hypercorn(player: str) -> tuple[type[hypercorn.config.Config], type[Worker]]:
    """Import hypercorn, the optional ``asgi`` extra, or say how to install it."""
    try:
        from hypercorn.config import Config  # noqa: PLC0415 - an optional extra, imported late

        from ._hypercorn import Worker  # noqa: PLC0415 - on hypercorn, so imported late too
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "hypercorn":
            raise  # hypercorn is there, but broken: its own error says more
        msg = (
            f"player {player!r} needs hypercorn, which is not installed;"
            " install it with pip install 'trio-orchestra[asgi]'"
        )
        raise ModuleNotFoundError(msg, name=exc.name) from exc
    return Config, Worker


def _settings(
    config_class: type[hypercorn.config.Config], config: object, player: str
) -> hypercorn.config.Config:
    """Check *config* and copy it (or make a default one): the caller's is never changed."""
    if config is None:
        settings = config_class()
        # hypercorn's default ("-") replaces the handlers of the "hypercorn.error" logger with
        # a stderr handler of its own; a library leaves handlers to the application.
        settings.errorlog = logging.getLogger("hypercorn.error")
        return settings
    if not isinstance(config, config_class):
        msg = (
            f"player {player!r}: config must be a hypercorn.config.Config or None,"
            f" not {type(config).__name__}"
        )
        raise TypeError(msg)
    return copy.copy(config)


def serve_asgi(
    app: ASGIApp,
    *,
    bind: str = _DEFAULT_BIND,
    config: hypercorn.config.Config | None = None,
    lifespan_share: float | None = None,
) -> Callable[..., Awaitable[None]]:
    """Return a player that serves the ASGI application *app* with hypercorn.

    The player serves each connection with hypercorn's own HTTP/1, HTTP/2 and WebSocket
    handling, as :func:`hypercorn.trio.serve` does, from an accept loop of its own (the
    optional extra ``asgi``: ``pip install 'trio-orchestra[asgi]'``; hypercorn is imported
    when the player starts). It:

    * is started once its sockets are bound and listening, after the application's lifespan
      startup; its started value is the list of addresses hypercorn reports, such as
      ``["http://127.0.0.1:8000"]`` (``bind="127.0.0.1:0"`` picks a free port: read it from
      there);
    * on a stop, stops accepting at once (on a stop for good new connections are refused; on a
      restart they wait for the next run, below), closes idle keep-alive connections (once every
      connection has begun its request, 1 s at most: below), lets the requests in flight finish,
      then runs the lifespan shutdown, all within the player's grace, which they share so that the
      lifespan shutdown always gets its turn. Of the *left* seconds from the stop to the player's
      hard cancel (``token.deadline``: its grace), the last ``min(lifespan_share, left)`` are kept
      for the lifespan shutdown, by default ``min(left / 4, 5)``: with a 30 s grace the requests get
      25 s, with the default grace of 5 s, 3.75 s. Requests still in flight when their part runs out
      are cancelled (their connections closed, without a response) and the lifespan shutdown runs at
      once; requests that end sooner leave it more time. An app that does not speak the lifespan
      protocol has nothing kept for it. The hard phase, at the deadline, cancels what is left, a
      lifespan shutdown that overran too. A stop with no soft phase (a forced stop, a cancelled
      conductor, or a plain nursery cancelled) cancels everything at once: then the lifespan
      shutdown does not run;
    * fails to start, with an error naming the player and before it is started (so its
      conductor's rollback applies), when hypercorn is not installed
      (:class:`ModuleNotFoundError`), *config* is not a hypercorn ``Config``
      (:class:`TypeError`), an address is not ``HOST:PORT`` (:class:`ValueError`), or it
      cannot listen on one, e.g. the port is in use (:class:`OSError` with the ``errno``);
    * when its conductor restarts it (a reload, :meth:`Conductor.restart`, a group restart,
      its restart policy), keeps its listening socket open: the old run stops accepting and
      finishes its requests in flight as on any stop, new connections wait in the socket's
      backlog, and the next run serves them, on the same port. No connection is refused
      during a restart, and no request is lost at its instant: a connection goes to
      hypercorn only once it has bytes to read, those accepted that have sent nothing yet
      go to the next run, and idle connections are closed only once every connection
      hypercorn was given has begun a request (waiting 1 s at most for one that sent part
      of a request). A keep-alive connection idle at the stop is closed, as any HTTP/1.1
      server closes it.

    Args:
        app: the ASGI 3 application, ``await app(scope, receive, send)``.
        bind: the address to listen on, ``HOST:PORT`` or ``[IPV6]:PORT``; TCP only.
        config: a :class:`hypercorn.config.Config` for everything else (TLS, timeouts,
            logging, ...). Without one, hypercorn logs to the ``hypercorn.error`` logger
            through your logging configuration, instead of adding a stderr handler of its
            own (its default). It is copied when the player starts, never changed. Its own
            ``bind`` is ignored (*bind* says where to listen: one place for it), and so is
            its ``graceful_timeout`` (3 s by default, it would cut the requests short): the
            rule above sets it on the copy at the stop.
        lifespan_share: seconds at the end of the grace kept for the lifespan shutdown;
            ``None`` (the default) keeps a quarter of the grace, at most 5 s; ``0`` keeps
            nothing (the requests may use the whole grace, and the lifespan shutdown runs
            only if they end in time); more than the grace keeps all of it (the requests in
            flight are cancelled at once).

    Raises:
        TypeError: *app* is not callable, *bind* is not a str, *lifespan_share* is not a
            number, or *config* is neither ``None`` nor, checked at start since hypercorn
            may be absent, a hypercorn ``Config``.
        ValueError: *lifespan_share* is negative or NaN.

    Example::

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                await receive()  # lifespan.startup
                pool = await open_pool()
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown, even if a request outlasts the grace
                await pool.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"hello"})


        # On a stop the requests in flight get 25 s, the lifespan shutdown the last 5 s.
        web = orchestra.serve_asgi(app, bind="0.0.0.0:8000")
        conductor = orchestra.Conductor({"web": orchestra.PlayerSpec(web, grace=30)})
        # Or keep 10 s for it: the requests get 20 s.
        web = orchestra.serve_asgi(app, bind="0.0.0.0:8000", lifespan_share=10)
    """
    _check_app(app)
    check_type(bind, str, "serve_asgi: bind", "a str")
    check_time(lifespan_share, "lifespan_share", "serve_asgi", allow_none=True)

    async def serve_asgi(
        *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        stop = stop_or_never()  # first: no stop can come before the subscription
        player = current_path("serve_asgi")
        config_class, worker_class = _import_hypercorn(player)
        settings = _settings(config_class, config, player)
        host, port = parse_address(bind, f"player {player!r}: bind")
        watched = _Watched(app)

        kept = cast("list[socket.socket] | None", claim(key))
        waiting = cast("list[Waiting]", claim(f"{key} waiting") or [])
        try:
            originals = kept if kept is not None else [await _listen(bind, host, port, player)]
        except BaseException:
            close_all(waiting)
            raise

        async def shutdown() -> bool:
            # Once this returns, the worker stops accepting, closes idle connections, gives
            # the requests in flight graceful_timeout (read now), then runs the lifespan
            # shutdown. The cut is set once, from the deadline the stop came with.
            await stop.wait()
            again = will_run_again()
            if not again:  # a stop for good: refuse new connections now
                close_all(originals)
            share = lifespan_share if watched.shutdown_to_come else 0.0
            left = stop.deadline - trio.current_time()
            settings.graceful_timeout = requests_time(left, share)
            return again

        settings.bind = []  # we bound the socket: hypercorn binds the rest (see _listen)
        sockets: list[socket.socket] = []  # what the worker serves and closes: duplicates
        worker: Worker | None = None
        lone: BaseException | None = None
        try:
            worker = worker_class(watched, settings)  # may fail: a bad certificate file
            sockets.extend(sock.dup() for sock in originals)
            await worker.serve(sockets, waiting, shutdown, task_status=task_status)
        except BaseExceptionGroup as group:
            # The worker's errors come out of its nurseries: one error is raised as itself,
            # as a plain player would raise it.
            lone = lone_error(group)
            if lone is None:
                raise
        finally:
            close_all(sockets)  # closed by the worker when it served; here in any case
            _leave(key, originals, waiting if worker is None else worker.left)
        if lone is not None:
            raise lone  # out of the except clause: its own cause and context stay as they were

    key = f"serve_asgi {bind}"
    serve_asgi.__qualname__ = f"serve_asgi({describe(app)}, {bind})"
    return serve_asgi


def _leave(key: str, originals: list[socket.socket], waiting: list[Waiting]) -> None:
    """Leave the socket and the connections that sent nothing to the next run, or close them.

    The socket is left unless the stop closed it; both are closed if there is no next run.
    """
    if originals[0].fileno() != -1 and not keep(key, originals):
        close_all(originals)
    if waiting and not keep(f"{key} waiting", waiting):
        close_all(waiting)
