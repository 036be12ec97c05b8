"""One HTTP/1.1 connection on h11: request heads in, whole responses out, keep-alive.

Why this module: the health endpoint needs correct HTTP (keep-alive, HEAD, malformed input,
``Expect: 100-continue``) without a framework. h11 does the protocol, this module the I/O, and
the endpoint only says what to answer. It imports h11, the optional ``health`` extra: the
endpoint imports this module only once it has checked that h11 is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http import HTTPStatus

import h11
import trio

__all__ = ["Answer", "Headers", "serve_connection"]

#: What to answer a request: status, headers (without content-length), body.
Answer = tuple[int, list[tuple[str, str]], bytes]
#: A request's headers, as h11 gives them: lowercase names, values as sent.
Headers = Sequence[tuple[bytes, bytes]]

_MAX_READ = 16384


async def serve_connection(
    stream: trio.SocketStream,
    answer: Callable[[bytes, bytes, Headers], Answer],
    idle: trio.CancelScope,
    idle_timeout: float,
) -> None:
    """Answer the requests on *stream* with ``answer(method, target, headers)`` until closed.

    Each exchange must end within *idle_timeout*: *idle*'s deadline moves on after each one.
    A request the client sends malformed gets the status h11 suggests, and the connection ends.
    """
    connection = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _next_request(connection, stream)
            if request is None:
                return
            status, headers, body = answer(request.method, request.target, request.headers)
            headers = [*headers, ("content-length", str(len(body)))]
            response = h11.Response(status_code=status, headers=headers, reason=_reason(status))
            await _send(connection, stream, response)
            if request.method != b"HEAD":
                await _send(connection, stream, h11.Data(data=body))
            await _send(connection, stream, h11.EndOfMessage())
            if not _request_read(connection) or connection.our_state is not h11.DONE:
                return  # a body we did not read, or either side wants to close
            connection.start_next_cycle()
            idle.deadline = trio.current_time() + idle_timeout
    except h11.RemoteProtocolError as exc:
        if connection.our_state in {h11.IDLE, h11.SEND_RESPONSE}:
            response = h11.Response(
                status_code=exc.error_status_hint,
                headers=[("content-length", "0"), ("connection", "close")],
                reason=_reason(exc.error_status_hint),
            )
            await _send(connection, stream, response)


def _reason(status: int) -> bytes:
    """The reason phrase of *status* (``OK``, ``Service Unavailable``)."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


async def _next_request(
    connection: h11.Connection, stream: trio.SocketStream
) -> h11.Request | None:
    """Read the head of the next request (not its body); ``None`` when the client closed.

    A health check has no body to wait for: answering at once also serves a client that
    sent ``Expect: 100-continue`` and waits for us before sending one.
    """
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(_MAX_READ))
        elif isinstance(event, h11.Request):
            return event
        else:  # ConnectionClosed, or PAUSED after a protocol switch we never agree to
            return None


def _request_read(connection: h11.Connection) -> bool:
    """Read what is left of the request from the buffer (an empty body); never waits."""
    while connection.their_state is h11.SEND_BODY:
        event = connection.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return False
    return connection.their_state is h11.DONE


async def _send(connection: h11.Connection, stream: trio.SocketStream, event: h11.Event) -> None:
    data = connection.send(event)
    if data:
        await stream.send_all(data)
