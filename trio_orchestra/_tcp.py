"""A TCP server player: ``serve_tcp(handler, port)`` over :func:`trio.serve_tcp`.

Why this module: a server is the player that most needs a two-phase stop. Ready means
listening, so the players after it start only once connections are accepted; the soft phase
closes the listeners, so new connections are refused at once while the ones in flight finish
within the grace; the hard phase cancels what is left. A stop for a restart keeps the listening
sockets open instead (see :mod:`._handoff`), so the next run accepts what came in between.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import cast

import trio

from ._checks import MAX_PORT, check_type
from ._errors import lone_error
from ._handoff import claim, close_all, keep, will_run_again
from ._spec import check_async_callable, describe
from ._stop import current_path, stop_or_never

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

__all__ = ["serve_tcp"]


TcpHandler = Callable[[trio.SocketStream], Awaitable[object]]


def serve_tcp(
    handler: TcpHandler, port: int, *, host: str | None = None
) -> Callable[..., Awaitable[None]]:
    """Return a player that serves TCP connections on *port* with *handler*.

    Like :func:`trio.serve_tcp`, each connection is handled by ``await handler(stream)`` in a
    task of its own. The player:

    * is started once it listens, and its started value is the list of listeners
      (``port=0`` picks a free port: read it from ``listeners[0].socket.getsockname()``);
    * on a stop, closes the listeners at once, so new connections are refused, and waits for
      the handlers in flight to return within its grace (a handler can call
      :func:`current_stop` to learn about the stop, e.g. to close an idle keep-alive
      connection); the hard phase cancels them;
    * when its conductor restarts it (a reload, :meth:`Conductor.restart`, a group restart,
      its restart policy), keeps its listening sockets open instead: the old run stops
      accepting and finishes its connections within its grace, new connections wait in the
      socket's backlog, and the next run accepts them, on the same port (also with
      ``port=0``). No connection is refused during a restart;
    * fails when a handler raises, as :func:`trio.serve_tcp` does (give it a restart policy,
      or catch inside the handler); a single error is raised as itself, not in a group;
    * fails to start, with an :class:`OSError` naming the player, when it cannot listen
      (e.g. the port is in use), so its conductor's rollback applies.

    Args:
        handler: an async callable taking a :class:`trio.SocketStream`.
        port: the TCP port; ``0`` for any free port.
        host: the address to listen on (default: every interface, as in
            :func:`trio.open_tcp_listeners`).

    Example::

        async def echo(stream: trio.SocketStream) -> None:
            async for data in stream:
                await stream.send_all(data)


        conductor = orchestra.Conductor({"echo": orchestra.serve_tcp(echo, 7000)})
    """
    _check_arguments(handler, port, host)
    where = f"{host or '*'}:{port}"
    key = f"serve_tcp {where}"

    async def serve_tcp(
        *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        stop = stop_or_never()
        originals = cast("list[trio.socket.SocketType] | None", claim(key))
        if originals is None:
            try:
                opened = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                path = current_path("serve_tcp")
                msg = f"player {path!r} cannot listen on {where}: {exc.strerror or exc}"
                raise OSError(exc.errno, msg) from exc
            originals = [listener.socket for listener in opened]
        # The accept loops close what they serve: duplicates, so the sockets can be kept.
        listeners = [trio.SocketListener(sock.dup()) for sock in originals]
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as connections:
                task_status.started(listeners)
                with stop.soft_scope():
                    await trio.serve_listeners(handler, listeners, handler_nursery=connections)
                if not will_run_again():  # a stop for good: refuse new connections now
                    close_all(originals)
        except BaseExceptionGroup as group:
            # One handler's error is the failure itself, as a plain player would raise it (the
            # nursery may add the Cancelled of the accept loop it tore down for it).
            error = lone_error(group)
            if error is None:
                raise
        finally:
            close_all(listener.socket for listener in listeners)
            if originals[0].fileno() != -1 and not keep(key, originals):  # kept for the next run
                close_all(originals)
        if error is not None:
            raise error  # out of the except clause: its own cause and context stay as they were

    serve_tcp.__qualname__ = f"serve_tcp({describe(handler)}, {where})"
    return serve_tcp


def _check_arguments(handler: object, port: object, host: object) -> None:
    check_async_callable(handler, "serve_tcp: the handler")
    if isinstance(port, bool) or not isinstance(port, int):
        msg = f"serve_tcp: the port must be an int, not {type(port).__name__}"
        raise TypeError(msg)
    if not 0 <= port <= MAX_PORT:
        msg = f"serve_tcp: the port must be from 0 to {MAX_PORT}, not {port}"
        raise ValueError(msg)
    if host is not None:
        check_type(host, str, "serve_tcp: the host", "a str or None")
