"""No connection refused through a restart of a server player, on loopback (s. 12, s. 14)."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

import httpx
import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra.testing import BackgroundRun, background

HOST = "127.0.0.1"
#: A bound on every loop here: the tests run on real time.
SECONDS = 20


class Tally:
    """What a client loop saw."""

    def __init__(self) -> None:
        """Nothing yet."""
        self.ok = 0
        self.refused = 0
        self.failed: list[str] = []
        self.done = False


async def tcp_client(port: int, tally: Tally) -> None:
    """Connect, send a line, read its echo, close; again and again until told to stop."""
    with trio.fail_after(SECONDS):
        while not tally.done:
            try:
                stream = await trio.open_tcp_stream(HOST, port)
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError):
                    tally.refused += 1
                else:
                    tally.failed.append(repr(exc))
                continue
            async with stream:
                try:
                    await stream.send_all(b"ping\n")
                    answer = await stream.receive_some(100)
                except (trio.BrokenResourceError, OSError) as exc:
                    tally.failed.append(repr(exc))
                    continue
            if answer.startswith(b"pong"):
                tally.ok += 1
            else:
                tally.failed.append(repr(answer))


def echo(answer: bytes) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """A handler that answers each connection's first line with *answer*."""

    async def handle(stream: trio.SocketStream) -> None:
        await stream.receive_some(100)
        await stream.send_all(answer)

    return handle


def port_of(conductor: orchestra.Conductor, name: str) -> int:
    """The port the ``serve_tcp`` player *name* listens on (from its started value)."""
    listeners = cast("list[trio.SocketListener]", conductor.status().children[name].started_value)
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def until_ok(tally: Tally, more: int) -> None:
    """Wait for *more* answered requests."""
    target = tally.ok + more
    with trio.fail_after(SECONDS):
        while tally.ok < target:  # noqa: ASYNC110 - polling another party
            await trio.sleep(0.005)


async def test_serve_tcp_refuses_nothing_through_restarts_a_reload_and_a_failure() -> None:
    """restart() three times, an update with a new handler, a crash restarted by its policy."""
    crash = trio.Event()

    async def crashing(stream: trio.SocketStream) -> None:
        await stream.receive_some(100)
        await stream.send_all(b"pong 1\n")
        if crash.is_set():
            raise RuntimeError("the handler broke")

    spec = orchestra.PlayerSpec(
        orchestra.serve_tcp(crashing, 0, host=HOST), restart="on_failure", backoff=None
    )
    conductor = orchestra.Conductor({"echo": spec}, name="app", max_restarts=10)
    tally = Tally()
    async with background(conductor) as run:
        port = port_of(run.conductor, "echo")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tcp_client, port, tally)
            await until_ok(tally, 20)
            for _ in range(3):
                await run.conductor.restart("echo")
                await until_ok(tally, 20)
            new = orchestra.PlayerSpec(
                orchestra.serve_tcp(echo(b"pong 2\n"), 0, host=HOST),
                restart="on_failure",
                backoff=None,
            )
            await run.conductor.update({"echo": new})
            await until_ok(tally, 20)
            assert port_of(run.conductor, "echo") == port
            tally.done = True
        assert (tally.refused, tally.failed) == (0, [])
        assert tally.ok >= 100

    # A crash: the policy restarts it at once, with the same socket.
    tally = Tally()
    conductor = orchestra.Conductor({"echo": spec}, name="app", max_restarts=10)
    async with background(conductor) as run:
        port = port_of(run.conductor, "echo")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tcp_client, port, tally)
            await until_ok(tally, 10)
            crash.set()
            with trio.fail_after(SECONDS):
                while run.conductor.status().children["echo"].restarts < 3:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            crash = trio.Event()
            await until_ok(tally, 10)
            tally.done = True
        assert tally.refused == 0
        # A connection whose handler broke may see its stream cut: that is the crash, not a
        # refusal; every other one is answered.
        assert all("pong" not in failure for failure in tally.failed)


async def test_a_stop_for_good_still_refuses_at_once_and_frees_the_port() -> None:
    """remove(): the socket is closed at the soft stop, not kept; the port is free again."""
    conductor = orchestra.Conductor({"echo": orchestra.serve_tcp(echo(b"pong\n"), 0, host=HOST)})
    async with background(conductor) as run:
        port = port_of(run.conductor, "echo")
        await run.conductor.remove("echo")
        with pytest.raises(OSError, match=r"onnect"):
            await trio.open_tcp_stream(HOST, port)
        with socket.socket() as probe:
            probe.bind((HOST, port))  # nobody holds it


async def test_a_new_port_in_an_update_closes_the_old_socket() -> None:
    """The new run does not claim the old address: the old socket is closed once it is started."""
    conductor = orchestra.Conductor({"echo": orchestra.serve_tcp(echo(b"pong\n"), 0, host=HOST)})
    async with background(conductor) as run:
        old = port_of(run.conductor, "echo")
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            new_port = probe.getsockname()[1]
        await run.conductor.update(
            {"echo": orchestra.serve_tcp(echo(b"pong\n"), new_port, host=HOST)}
        )
        with pytest.raises(OSError, match=r"onnect"):
            await trio.open_tcp_stream(HOST, old)
        stream = await trio.open_tcp_stream(HOST, new_port)
        await stream.aclose()


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:  # noqa: ANN401 - ASGI
    """An ASGI app: a slow path for an in-flight request, else a quick answer."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/slow":
        await trio.sleep(1)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


async def http_client(port: int, tally: Tally) -> None:
    """GET / on a new connection each time, until told to stop; count what failed."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", limits=limits) as client:
        with trio.fail_after(SECONDS):
            while not tally.done:
                try:
                    answer = await client.get("/", timeout=10)
                except httpx.ConnectError as exc:
                    tally.refused += 1
                    tally.failed.append(repr(exc))
                    continue
                except httpx.HTTPError as exc:
                    tally.failed.append(repr(exc))
                    continue
                if answer.status_code == 200:
                    tally.ok += 1
                else:
                    tally.failed.append(f"{answer.status_code} {answer.text}")


async def reload_and_restarts_under_load(tally: Tally) -> list[int]:
    """Two clients in a loop, a slow request in flight, an update with a new app, restarts."""

    async def hello_again(scope: dict[str, Any], receive: Any, send: Any) -> None:  # noqa: ANN401
        await hello(scope, receive, send)

    port = _free_port()
    web = orchestra.PlayerSpec(orchestra.serve_asgi(hello, bind=f"{HOST}:{port}"), grace=5)
    conductor = orchestra.Conductor({"web": web}, name="app")
    slow: list[int] = []
    async with background(conductor) as run:

        async def slow_request() -> None:
            async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
                slow.append((await client.get("/slow", timeout=10)).status_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(http_client, port, tally)
            nursery.start_soon(http_client, port, tally)
            await until_ok(tally, 10)
            nursery.start_soon(slow_request)
            await trio.sleep(0.2)  # the slow request is in flight in the old run
            new = orchestra.PlayerSpec(
                orchestra.serve_asgi(hello_again, bind=f"{HOST}:{port}"), grace=5
            )
            await run.conductor.update({"web": new})
            await until_ok(tally, 10)
            for _ in range(5):
                await run.conductor.restart("web")
                await until_ok(tally, 10)
            tally.done = True
    return slow


async def test_serve_asgi_refuses_no_connection_and_fails_no_request_through_restarts() -> None:
    """The bar: zero refused connections, zero failed requests; the one in flight finishes.

    A connection accepted an instant before a stop has its request read by the old run, or,
    if it had sent nothing yet, goes to the next run with the socket (the tests below).
    """
    pytest.importorskip("hypercorn")
    tally = Tally()
    slow = await reload_and_restarts_under_load(tally)
    assert (tally.refused, tally.failed) == (0, [])
    assert slow == [200]  # finished within the old run's grace
    assert tally.ok >= 70


GET = b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"


async def read_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    with trio.fail_after(SECONDS):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    return answer


def asgi_web(
    app: Callable[..., Awaitable[None]],
    port: int,
    config: Any = None,  # noqa: ANN401 - optional
) -> orchestra.PlayerSpec:
    """The player ``web``: *app* served on *port*, with a hypercorn *config* if given."""
    player = orchestra.serve_asgi(app, bind=f"{HOST}:{port}", config=config)
    return orchestra.PlayerSpec(player, grace=5)


def answering(text: bytes) -> Callable[..., Awaitable[None]]:
    """An ASGI app whose every answer is *text* (and its lifespan, as :func:`hello`'s)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:  # noqa: ANN401
        if scope["type"] == "lifespan":
            await hello(scope, receive, send)
            return
        length = [(b"content-length", str(len(text)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": text})

    return app


@contextlib.asynccontextmanager
async def old_web(config: Any = None) -> AsyncGenerator[tuple[BackgroundRun, int]]:  # noqa: ANN401
    """Run ``app`` with its player ``web`` answering ``old`` on a free port; stop it at the end.

    Yields the run and the port. Skips the test without hypercorn.
    """
    pytest.importorskip("hypercorn")
    port = _free_port()
    conductor = orchestra.Conductor({"web": asgi_web(answering(b"old"), port, config)}, name="app")
    async with background(conductor) as run:
        yield run, port
        await run.stop()


async def test_a_connection_that_sent_nothing_before_a_restart_is_served_by_the_next_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Accepted by the old run with nothing to read: handed over, answered by the new app."""
    async with old_web() as (run, port):
        stream = await trio.open_tcp_stream(HOST, port)
        await trio.testing.wait_all_tasks_blocked()  # accepted, waiting for its first bytes
        await run.conductor.update({"web": asgi_web(answering(b"new"), port)})
        await stream.send_all(GET)
        answer = await read_all(stream)
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"\r\n\r\nnew")
        await stream.aclose()


async def test_a_stop_for_good_closes_a_connection_that_sent_nothing_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove(): the waiting connection is closed at the stop, not kept or waited for."""
    pytest.importorskip("hypercorn")
    port = _free_port()
    conductor = orchestra.Conductor(
        {"web": asgi_web(answering(b"old"), port), "idle": trio.sleep_forever}, name="app"
    )
    async with background(conductor) as run:
        stream = await trio.open_tcp_stream(HOST, port)
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        await run.conductor.remove("web")
        assert trio.current_time() == started  # nothing waited for it
        assert await read_all(stream) == b""  # closed without an answer
        await stream.aclose()
        await run.stop()


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 5, 8])
async def test_a_request_sent_an_instant_before_a_restart_is_answered(steps: int) -> None:
    """However the request's bytes and the stop meet, old run or new one answers it."""
    async with old_web() as (run, port):
        for _ in range(5):
            stream = await trio.open_tcp_stream(HOST, port)
            await stream.send_all(GET)
            for _ in range(steps):
                await trio.lowlevel.checkpoint()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run.conductor.restart, "web")
                answer = await read_all(stream)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            await stream.aclose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def h2_client() -> Any:  # noqa: ANN401 - h2 comes with hypercorn, imported only here
    """An HTTP/2 client connection (prior knowledge, no TLS), its preface ready to send."""
    h2_connection = pytest.importorskip("h2.connection")
    h2_config = pytest.importorskip("h2.config")
    client = h2_connection.H2Connection(h2_config.H2Configuration(client_side=True))
    client.initiate_connection()
    return client


async def h2_get(stream: trio.SocketStream, client: Any) -> tuple[str, bytes]:  # noqa: ANN401
    """Send GET / as stream 1 on *client*; the status and the body of its answer."""
    events = pytest.importorskip("h2.events")
    headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
    client.send_headers(1, headers, end_stream=True)
    await stream.send_all(client.data_to_send())
    status, body = "", b""
    with trio.fail_after(SECONDS):
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return status, body  # closed
            for event in client.receive_data(data):
                if isinstance(event, events.ResponseReceived):
                    status = dict(event.headers)[b":status"].decode()
                elif isinstance(event, events.DataReceived):
                    body += event.data
                elif isinstance(event, events.StreamEnded):
                    return status, body
            await stream.send_all(client.data_to_send())


async def test_an_http2_request_after_its_preface_is_answered_through_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The preface came before the stop, the request after: the old run waits for it."""
    async with old_web() as (run, port):
        stream = await trio.open_tcp_stream(HOST, port)
        client = h2_client()
        await stream.send_all(client.data_to_send())
        await trio.testing.wait_all_tasks_blocked()  # hypercorn has the preface, no request
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.conductor.restart, "web")
            await trio.testing.wait_all_tasks_blocked()  # the stop waits for a first request
            assert await h2_get(stream, client) == ("200", b"old")
        await stream.aclose()


@pytest.mark.parametrize("completed_after", [0.5, None])
async def test_a_request_begun_before_a_restart_has_the_first_request_wait_to_end(
    autojump_clock: trio.testing.MockClock, completed_after: float | None
) -> None:
    """Half a request line before the stop: the stop waits FIRST_REQUEST_WAIT for the rest.

    Completed within it, the old run answers it; never completed, it is closed then, no sooner.
    """
    pytest.importorskip("hypercorn")
    from trio_orchestra._hypercorn import FIRST_REQUEST_WAIT  # noqa: PLC0415 - on hypercorn

    async with old_web() as (run, port):
        stream = await trio.open_tcp_stream(HOST, port)
        await stream.send_all(GET[:10])
        await trio.testing.wait_all_tasks_blocked()  # hypercorn has read it: no request yet
        began = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.conductor.restart, "web")
            if completed_after is None:
                assert await read_all(stream) == b""  # closed without an answer
                assert trio.current_time() == began + FIRST_REQUEST_WAIT
            else:
                await trio.sleep(completed_after)
                await stream.send_all(GET[10:])
                assert (await read_all(stream)).endswith(b"\r\n\r\nold")
        await stream.aclose()


async def test_a_silent_connection_keeps_its_keep_alive_deadline_through_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A connection that sends nothing is closed when it would have been without the restart.

    That is ``keep_alive_timeout`` after it connected, not after the restart.
    """
    pytest.importorskip("hypercorn")
    from hypercorn.config import Config  # noqa: PLC0415 - hypercorn is optional

    config = Config()
    config.keep_alive_timeout = 2
    async with old_web(config) as (run, port):
        stream = await trio.open_tcp_stream(HOST, port)
        connected = trio.current_time()
        await trio.sleep(1)
        await run.conductor.restart("web")  # handed over, with 1 s left
        assert await read_all(stream) == b""
        assert trio.current_time() == connected + 2
        await stream.aclose()
