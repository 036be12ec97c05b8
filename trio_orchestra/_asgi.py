"""An ASGI server player: ``serve_asgi(app)`` over :func:`hypercorn.trio.serve`.

Why this module: a web application is the player whose stop most needs to be graceful. Ready
means bound, so the players after it start only once requests are accepted; the soft phase is
hypercorn's own graceful shutdown (stop accepting, let the requests in flight finish), bounded
by the player's grace instead of hypercorn's ``graceful_timeout``; the hard phase cancels what
is left. The sockets are bound here, not by hypercorn, so that a bad or busy address fails the
start with one plain error naming the player, and no socket is left open behind it.
"""

from __future__ import annotations

import copy
import logging
import math
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

import trio

from ._checks import check_type, parse_address
from ._errors import lone_error
from ._spec import describe
from ._stop import current_path, stop_or_never

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:  # hypercorn is an optional extra, imported when a player starts
    import hypercorn.config

__all__ = ["serve_asgi"]

_DEFAULT_BIND = "127.0.0.1:8000"

#: An ASGI 3 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[..., Awaitable[object]]


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


def _import_hypercorn(
    player: str,
) -> tuple[type[hypercorn.config.Config], Callable[..., Awaitable[None]]]:
    """Import hypercorn, the optional ``asgi`` extra, or say how to install it."""
    try:
        from hypercorn.config import Config  # noqa: PLC0415 - an optional extra, imported late

        # hypercorn's WSGI type has a bare dict in it: pyright calls serve partly unknown.
        from hypercorn.trio import serve  # noqa: PLC0415  # pyright: ignore[reportUnknownVariableType]
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "hypercorn":
            raise  # hypercorn is there, but broken: its own error says more
        msg = (
            f"player {player!r} needs hypercorn, which is not installed;"
            " install it with pip install 'trio-orchestra[asgi]'"
        )
        raise ModuleNotFoundError(msg, name=exc.name) from exc
    return Config, cast("Callable[..., Awaitable[None]]", serve)


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
    app: ASGIApp, *, bind: str = _DEFAULT_BIND, config: hypercorn.config.Config | None = None
) -> Callable[..., Awaitable[None]]:
    """Return a player that serves the ASGI application *app* with hypercorn.

    The player runs :func:`hypercorn.trio.serve` (the optional extra ``asgi``:
    ``pip install 'trio-orchestra[asgi]'``; hypercorn is imported when the player starts).
    It:

    * is started once its sockets are bound and listening, after the application's lifespan
      startup; its started value is the list of addresses hypercorn reports, such as
      ``["http://127.0.0.1:8000"]`` (``bind="127.0.0.1:0"`` picks a free port: read it from
      there);
    * on a stop, stops accepting at once, so new connections are refused, closes idle
      keep-alive connections, lets the requests in flight finish, then runs the lifespan
      shutdown, all within the player's grace; hypercorn's own ``graceful_timeout`` is not
      used (it would cut the requests at 3 s by default), the hard phase cancels what is left
      at the grace's deadline;
    * fails to start, with an error naming the player and before it is started (so its
      conductor's rollback applies), when hypercorn is not installed
      (:class:`ModuleNotFoundError`), *config* is not a hypercorn ``Config``
      (:class:`TypeError`), an address is not ``HOST:PORT`` (:class:`ValueError`), or it
      cannot listen on one, e.g. the port is in use (:class:`OSError` with the ``errno``).

    Args:
        app: the ASGI 3 application, ``await app(scope, receive, send)``.
        bind: the address to listen on, ``HOST:PORT`` or ``[IPV6]:PORT``; TCP only.
        config: a :class:`hypercorn.config.Config` for everything else (TLS, timeouts,
            logging, ...). Without one, hypercorn logs to the ``hypercorn.error`` logger
            through your logging configuration, instead of adding a stderr handler of its
            own (its default). It is copied when the player starts, never changed. Its own
            ``bind`` is ignored (*bind* says where to listen: one place for it), and so is
            its ``graceful_timeout``, as said above.

    Raises:
        TypeError: *app* is not callable, *bind* is not a str, or *config* is neither ``None``
            nor, checked at start since hypercorn may be absent, a hypercorn ``Config``.

    Example::

        async def app(scope, receive, send):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"hello"})


        web = orchestra.serve_asgi(app, bind="0.0.0.0:8000")
        conductor = orchestra.Conductor({"web": orchestra.PlayerSpec(web, grace=30)})
    """
    _check_app(app)
    check_type(bind, str, "serve_asgi: bind", "a str")

    async def serve_asgi(
        *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        stop = stop_or_never()  # first: no stop can come before the subscription
        player = current_path("serve_asgi")
        config_class, serve = _import_hypercorn(player)
        settings = _settings(config_class, config, player)
        host, port = parse_address(bind, f"player {player!r}: bind")
        sockets: list[socket.socket] = []
        lone: BaseException | None = None
        try:
            sockets.append(await _listen(bind, host, port, player))
            _use_sockets(settings, sockets)
            settings.graceful_timeout = math.inf  # our grace bounds the drain, not hypercorn
            await serve(
                app, settings, shutdown_trigger=stop.wait, task_status=task_status, mode="asgi"
            )
        except BaseExceptionGroup as group:
            # hypercorn nests its errors three nursery groups deep: one error is raised as
            # itself, as a plain player would raise it.
            lone = lone_error(group)
            if lone is None:
                raise
        finally:
            for sock in sockets:  # closed by hypercorn when it served; here in any case
                sock.close()
        if lone is not None:
            raise lone  # out of the except clause: its own cause and context stay as they were

    serve_asgi.__qualname__ = f"serve_asgi({describe(app)}, {bind})"
    return serve_asgi


def _use_sockets(settings: hypercorn.config.Config, sockets: list[socket.socket]) -> None:
    """Make hypercorn serve our bound *sockets* instead of binding ``settings.bind`` itself.

    hypercorn binds inside ``serve``, where a failed bind leaves its socket open and comes
    out three nursery groups deep; binding first gives plain errors, and we close what we
    opened. ``settings`` is our own copy, so replacing its method touches nobody else.
    """
    create_sockets = settings.create_sockets
    settings.bind = []  # hypercorn binds the rest (with TLS: insecure_bind, quic_bind)

    def create_ours() -> hypercorn.config.Sockets:
        created = create_sockets()
        if settings.ssl_enabled:  # with TLS, hypercorn's bind is the list of secure sockets
            created.secure_sockets = [*sockets, *created.secure_sockets]
        else:
            created.insecure_sockets = [*sockets, *created.insecure_sockets]
        return created

    settings.create_sockets = create_ours  # type: ignore[method-assign]
