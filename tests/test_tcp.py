"""``serve_tcp`` on real loopback sockets, on the real clock.

Ready when listening; the soft stop refuses new connections and lets the ones in flight finish;
the hard phase cancels them.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra.testing import assert_failures, background

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def echo(stream: trio.SocketStream) -> None:
    """Echo until the client closes."""
    async for data in stream:
        await stream.send_all(data)


async def ask(port: int, message: bytes) -> bytes:
    """Send *message*, half-close, and read the whole answer."""
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        await stream.send_all(message)
        await stream.send_eof()
        answer = b""
        async for data in stream:
            answer += data
        return answer


async def test_it_is_started_once_listening() -> None:
    """The next player starts only once the server accepts connections."""
    port = free_port()
    answers: list[bytes] = []

    async def client(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        answers.append(await ask(port, b"hello"))  # would be refused if not listening yet
        task_status.started()

    conductor = orchestra.Conductor(
        {"echo": orchestra.serve_tcp(echo, port, host=HOST), "client": client}
    )
    with trio.fail_after(10):
        async with background(conductor) as run:
            assert answers == [b"hello"]
            assert await run.stop() is None


async def test_the_started_value_is_the_listeners() -> None:
    """Under a plain nursery, ``nursery.start`` gives the listeners (port 0 picks one)."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(orchestra.serve_tcp(echo, 0, host=HOST))
        port = listeners[0].socket.getsockname()[1]
        assert await ask(port, b"ping") == b"ping"
        nursery.cancel_scope.cancel()


async def test_a_stop_refuses_new_connections_and_lets_in_flight_ones_finish() -> None:
    """During the soft phase a connection in flight is answered; a new one is refused."""
    port = free_port()
    in_flight = trio.Event()
    finish = trio.Event()

    async def slow(stream: trio.SocketStream) -> None:
        request = await stream.receive_some()
        in_flight.set()
        await finish.wait()
        await stream.send_all(b"done: " + request)

    conductor = orchestra.Conductor({"web": orchestra.serve_tcp(slow, port, host=HOST)}, grace=30)
    with trio.fail_after(10):
        async with background(conductor) as run, trio.open_nursery() as nursery:
            answer: list[bytes] = []

            async def client() -> None:
                answer.append(await ask(port, b"job"))

            nursery.start_soon(client)
            await in_flight.wait()
            run.conductor.stop("deploy")
            await trio.sleep(0.05)
            assert run.running
            with pytest.raises(OSError, match="failed"):
                await trio.open_tcp_stream(HOST, port)
            finish.set()
            assert await run.wait_stopped() is None
    assert answer == [b"done: job"]


async def test_the_hard_phase_cancels_the_connections_left() -> None:
    """A handler that does not finish within the grace is cancelled; the client sees EOF."""
    port = free_port()
    in_flight = trio.Event()

    async def stuck(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        in_flight.set()
        await trio.sleep_forever()

    conductor = orchestra.Conductor({"web": orchestra.serve_tcp(stuck, port, host=HOST)}, grace=0.2)
    with trio.fail_after(10):
        async with background(conductor) as run:
            stream = await trio.open_tcp_stream(HOST, port)
            await stream.send_all(b"x")
            await in_flight.wait()
            began = trio.current_time()
            assert await run.stop() is None
            assert trio.current_time() - began >= 0.2
            assert await stream.receive_some() == b""
            await stream.aclose()


async def test_a_handler_error_fails_the_player_as_itself() -> None:
    """The handler's exception is the player's failure, not wrapped in a group."""
    port = free_port()

    async def broken(stream: trio.SocketStream) -> None:
        raise ValueError("bad request")

    player = orchestra.serve_tcp(broken, port, host=HOST)
    conductor = orchestra.Conductor({"web": player}, name="app")
    with trio.fail_after(10):
        async with background(conductor) as run:
            stream = await trio.open_tcp_stream(HOST, port)
            await stream.aclose()
            error = await run.wait_stopped()
    assert_failures(error, {"app/web": ValueError})


async def test_a_port_in_use_fails_the_start_naming_the_player() -> None:
    """The OSError names the player and the address; the players before it are rolled back."""
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        rolled_back = trio.Event()

        async def first(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                rolled_back.set()

        conductor = orchestra.Conductor(
            {"db": first, "web": orchestra.serve_tcp(echo, port, host=HOST)}, name="app"
        )
        with pytest.raises(orchestra.ConductorError) as caught:
            await conductor()
    error = caught.value.failures["app/web"]
    assert isinstance(error, OSError)
    assert f"player 'app/web' cannot listen on {HOST}:{port}" in str(error)
    assert rolled_back.is_set()


@pytest.mark.parametrize(
    ("handler", "port", "host", "error", "words"),
    [
        (echo, "80", None, TypeError, "the port must be an int, not str"),
        (echo, True, None, TypeError, "not bool"),
        (echo, -1, None, ValueError, "from 0 to 65535, not -1"),
        (echo, 70000, None, ValueError, "not 70000"),
        (echo, 80, 127, TypeError, "the host must be a str or None, not int"),
        (print, 80, None, TypeError, "the handler must be an async callable"),
    ],
)
def test_bad_arguments_are_refused_at_once(
    handler: object, port: object, host: object, error: type[Exception], words: str
) -> None:
    """Each bad argument is one clear sentence, raised by serve_tcp() itself."""
    with pytest.raises(error, match=words):
        orchestra.serve_tcp(handler, port, host=host)  # type: ignore[arg-type]


async def test_a_handler_error_keeps_its_own_cause() -> None:
    """Unwrapped from the nursery's group, the error keeps the cause its handler gave it."""
    port = free_port()

    async def broken(stream: trio.SocketStream) -> None:
        settings: dict[str, str] = {}
        try:
            settings["missing"]
        except KeyError as exc:
            raise ValueError("bad request") from exc

    conductor = orchestra.Conductor({"web": orchestra.serve_tcp(broken, port, host=HOST)})
    with trio.fail_after(10):
        async with background(conductor) as run:
            stream = await trio.open_tcp_stream(HOST, port)
            await stream.aclose()
            error = await run.wait_stopped()
    assert error is not None
    leaf = error.failures["conductor/web"]
    assert isinstance(leaf, ValueError)
    assert isinstance(leaf.__cause__, KeyError)


async def test_inside_a_plain_player_it_does_not_subscribe_that_player(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A player that never asked for its token is stopped at once, even running a server."""

    async def composite() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(orchestra.serve_tcp(echo, 0, host=HOST))
            nursery.start_soon(orchestra.every(1, trio.sleep, 0))

    conductor = orchestra.Conductor({"composite": composite}, grace=30)
    async with background(conductor) as run:
        await trio.sleep(1.5)
        began = trio.current_time()
        assert await run.stop() is None
        assert trio.current_time() == began  # no grace waited for
