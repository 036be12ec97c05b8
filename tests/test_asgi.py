"""``serve_asgi``: hypercorn as a player, ready once bound, draining on a soft stop.

The grace is shared: the requests in flight get its first part, the lifespan shutdown the rest.
The hard phase cancels what is left, and bad input fails the start naming the player. Real
sockets on loopback, a raw ASGI app, real HTTP requests with httpx.
"""

from __future__ import annotations

import errno
import logging
import math
import re
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.utils import LifespanFailureError

import trio_orchestra as orchestra
from trio_orchestra._asgi import requests_time, serve_asgi
from trio_orchestra.testing import BackgroundRun, assert_failures, background

from .conftest import Journal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

URL = r"http://127\.0\.0\.1:[1-9][0-9]*"


class App:
    """A raw ASGI 3 app: ``/`` answers at once, ``/slow`` after *slow* seconds.

    Its lifespan shutdown takes *shutdown_takes* seconds; with ``lifespan=False`` it does not
    speak the lifespan protocol (it raises, as a bare HTTP-only app does).
    """

    def __init__(
        self,
        journal: Journal,
        slow: float = 1.0,
        *,
        shutdown_takes: float = 0.0,
        lifespan: bool = True,
    ) -> None:
        """Journal what happens in *journal*."""
        self.journal = journal
        self.slow = slow
        self.shutdown_takes = shutdown_takes
        self.lifespan = lifespan
        self.slow_entered = trio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the lifespan protocol and HTTP requests."""
        if scope["type"] == "lifespan":
            if not self.lifespan:
                msg = "this app serves HTTP only"
                raise TypeError(msg)
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.journal("startup")
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.journal("shutdown")
                    if self.shutdown_takes:
                        await trio.sleep(self.shutdown_takes)
                        self.journal("shutdown done")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path == "/slow":
            self.slow_entered.set()
            self.journal("slow request begins")
            await trio.sleep(self.slow)
            self.journal("slow request ends")
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": f"done {path}".encode()})


class Served:
    """A ``serve_asgi`` player that keeps the addresses it reports as started."""

    def __init__(self, player: Callable[..., Awaitable[None]]) -> None:
        """Wrap *player*, as made by :func:`serve_asgi`."""
        self.player = player
        self.addresses: list[str] = []

    @property
    def url(self) -> str:
        """The first address the server is bound to."""
        return self.addresses[0]

    @property
    def port(self) -> int:
        """The port it is bound to."""
        return int(self.url.rpartition(":")[2])

    async def __call__(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the player; pass its started value on, keeping a copy."""
        await self.player(task_status=_Keep(task_status, self.addresses))


class _Keep:
    """A ``task_status`` that copies the started value into a list, then passes it on."""

    def __init__(self, outer: trio.TaskStatus[list[str]], into: list[str]) -> None:
        self.outer = outer
        self.into = into

    def started(self, value: list[str] | None = None) -> None:
        assert value is not None
        self.into.extend(value)
        self.outer.started(value)


def web(served: Served, grace: float = 5.0) -> orchestra.Conductor:
    """A conductor ``app`` with the server as its player ``web``."""
    return orchestra.Conductor({"web": orchestra.PlayerSpec(served, grace=grace)}, name="app")


async def test_a_request_is_served(journal: Journal) -> None:
    """A GET is answered; the started value is the bound address, with the port picked.

    The client's idle keep-alive connection is closed at the stop: it does not hold it.
    """
    served = Served(serve_asgi(App(journal), bind="127.0.0.1:0"))
    with trio.fail_after(10):
        async with background(web(served, grace=5)) as run, httpx.AsyncClient() as client:
            response = await client.get(f"{served.url}/hello")
            assert (response.status_code, response.text) == (200, "done /hello")
            stopped = trio.current_time()
            run.conductor.stop("test over")
            assert await run.wait_stopped() is None
            assert trio.current_time() - stopped < 2  # far from the 5 s grace
    [url] = served.addresses
    assert re.fullmatch(URL, url)  # the port that was picked, not 0
    assert journal.events == ["startup", "shutdown"]


async def test_it_is_started_once_bound_and_after_the_lifespan_startup(journal: Journal) -> None:
    """``nursery.start`` returns only once a connection is accepted and the app started up."""
    served = Served(serve_asgi(App(journal), bind="127.0.0.1:0"))
    conductor = web(served)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            assert journal.events == ["startup"]
            stream = await trio.open_tcp_stream("127.0.0.1", served.port)  # no retry needed
            await stream.aclose()
            conductor.stop("test over")


async def test_under_a_plain_nursery_the_started_value_is_the_addresses(
    journal: Journal,
) -> None:
    """Outside a conductor ``nursery.start`` gives hypercorn's addresses; cancelling stops it."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(serve_asgi(App(journal), bind="127.0.0.1:0"))
            [url] = addresses
            assert re.fullmatch(URL, url)
            async with httpx.AsyncClient() as client:
                assert (await client.get(url)).text == "done /"
            nursery.cancel_scope.cancel()


async def test_a_soft_stop_lets_a_request_in_flight_finish_and_refuses_new_ones(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The slow request gets its 200 during the stop; a new connection is refused."""
    app = App(journal, slow=4.0)  # longer than hypercorn's default graceful_timeout, 3 s
    served = Served(serve_asgi(app, bind="127.0.0.1:0"))
    responses: list[httpx.Response] = []
    async with background(web(served, grace=10)) as run, httpx.AsyncClient(timeout=30) as client:

        async def slow_request() -> None:
            responses.append(await client.get(f"{served.url}/slow"))
            journal("response")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_request)
            await app.slow_entered.wait()
            journal("stop")
            run.conductor.stop("deploy")
            await trio.testing.wait_all_tasks_blocked()  # hypercorn has seen the stop
            with trio.socket.socket() as probe, pytest.raises(ConnectionRefusedError):
                await probe.connect(("127.0.0.1", served.port))
            assert await run.wait_stopped() is None
            journal("conductor returned")
    [response] = responses
    assert (response.status_code, response.text) == (200, "done /slow")
    assert journal.events == [
        "startup",
        "slow request begins",
        "stop",
        "slow request ends",
        "response",
        "shutdown",
        "conductor returned",
    ]
    stopped = journal.time_of("stop")
    assert journal.time_of("slow request ends") == stopped + 4  # not cut at hypercorn's 3 s
    assert journal.time_of("conductor returned") == stopped + 4  # nor waiting for the grace


async def slow_request_then_stop(
    run: BackgroundRun,
    app: App,
    served: Served,
    client: httpx.AsyncClient,
) -> list[httpx.Response]:
    """Send ``/slow``, stop the conductor once the app has it, wait for the conductor.

    The journal gets ``stop``, ``response`` (the client has its answer) or ``request cut``
    (the server closed the connection without one), and ``conductor returned``.
    """
    journal = app.journal
    responses: list[httpx.Response] = []

    async def slow_request() -> None:
        try:
            responses.append(await client.get(f"{served.url}/slow"))
        except httpx.RemoteProtocolError:  # "Server disconnected without sending a response"
            journal("request cut")
        else:
            journal("response")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_request)
        await app.slow_entered.wait()
        journal("stop")
        run.conductor.stop("deploy")
        assert await run.wait_stopped() is None  # a stop, not a failure
        journal("conductor returned")
    return responses


@pytest.mark.parametrize(
    ("grace", "lifespan_share", "cut"),
    [
        (10.0, None, 7.5),  # a quarter of the grace is kept
        (1.0, None, 0.75),
        (40.0, None, 35.0),  # at most 5 s
        (10.0, 2.0, 8.0),
        (10.0, 20.0, 0.0),  # more than the grace: all of it, the request is cut at once
    ],
)
async def test_a_request_that_outlasts_its_part_is_cut_and_the_lifespan_shutdown_runs(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
    grace: float,
    lifespan_share: float | None,
    cut: float,
) -> None:
    """The slow request is cut ``share`` before the deadline; the lifespan shutdown runs then."""
    app = App(journal, slow=100.0)
    served = Served(serve_asgi(app, bind="127.0.0.1:0", lifespan_share=lifespan_share))
    async with background(web(served, grace)) as run, httpx.AsyncClient(timeout=300) as client:
        assert await slow_request_then_stop(run, app, served, client) == []
    stopped = journal.time_of("stop")
    assert journal.time_of("request cut") == stopped + cut
    assert journal.time_of("shutdown") == stopped + cut
    assert journal.time_of("conductor returned") == stopped + cut
    assert "slow request ends" not in journal.events


async def test_the_lifespan_shutdown_has_the_rest_of_the_grace_then_the_hard_phase(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A lifespan shutdown of 1 s ends before the deadline; one that overruns is cut there."""
    app = App(journal, slow=100.0, shutdown_takes=1.0)
    served = Served(serve_asgi(app, bind="127.0.0.1:0"))
    async with background(web(served, grace=10)) as run, httpx.AsyncClient(timeout=300) as client:
        await slow_request_then_stop(run, app, served, client)
    stopped = journal.time_of("stop")
    assert journal.time_of("shutdown") == stopped + 7.5
    assert journal.time_of("shutdown done") == stopped + 8.5  # inside the 2.5 s kept
    assert journal.time_of("conductor returned") == stopped + 8.5

    journal = Journal()
    app = App(journal, slow=100.0, shutdown_takes=3.0)  # more than the 2.5 s kept
    served = Served(serve_asgi(app, bind="127.0.0.1:0"))
    async with background(web(served, grace=10)) as run, httpx.AsyncClient(timeout=300) as client:
        await slow_request_then_stop(run, app, served, client)
    stopped = journal.time_of("stop")
    assert journal.time_of("shutdown") == stopped + 7.5
    assert "shutdown done" not in journal.events  # the hard phase cut it
    assert journal.time_of("conductor returned") == stopped + 10


@pytest.mark.parametrize("slow", [0.5, 7.0])
async def test_a_request_that_ends_inside_its_part_is_answered_then_the_shutdown_runs(
    autojump_clock: trio.testing.MockClock, journal: Journal, slow: float
) -> None:
    """Ending before the cut (7.5 s of a 10 s grace), it gets its 200; nothing waits for the cut."""
    app = App(journal, slow=slow)
    served = Served(serve_asgi(app, bind="127.0.0.1:0"))
    async with background(web(served, grace=10)) as run, httpx.AsyncClient(timeout=300) as client:
        [response] = await slow_request_then_stop(run, app, served, client)
    assert (response.status_code, response.text) == (200, "done /slow")
    stopped = journal.time_of("stop")
    assert journal.time_of("slow request ends") == stopped + slow
    assert journal.time_of("shutdown") == stopped + slow
    assert journal.time_of("conductor returned") == stopped + slow


async def test_with_no_share_a_request_may_use_the_whole_grace_and_skip_the_shutdown(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """``lifespan_share=0``: the request is cut by the hard phase, and no shutdown runs."""
    app = App(journal, slow=100.0)
    served = Served(serve_asgi(app, bind="127.0.0.1:0", lifespan_share=0))
    async with background(web(served, grace=10)) as run, httpx.AsyncClient(timeout=300) as client:
        await slow_request_then_stop(run, app, served, client)
    stopped = journal.time_of("stop")
    assert journal.time_of("request cut") == stopped + 10
    assert journal.time_of("conductor returned") == stopped + 10
    assert "shutdown" not in journal.events


@pytest.mark.parametrize(("slow", "answered"), [(9.0, True), (100.0, False)])
async def test_an_app_without_lifespan_has_nothing_kept_for_it(
    autojump_clock: trio.testing.MockClock, journal: Journal, slow: float, answered: bool
) -> None:
    """An HTTP-only app's requests may use the whole grace: answered at 9 s, cut at 10 s."""
    app = App(journal, slow=slow, lifespan=False)
    served = Served(serve_asgi(app, bind="127.0.0.1:0"))
    async with background(web(served, grace=10)) as run, httpx.AsyncClient(timeout=300) as client:
        await slow_request_then_stop(run, app, served, client)
    stopped = journal.time_of("stop")
    ended = journal.time_of("response" if answered else "request cut")
    assert ended == stopped + min(slow, 10)
    assert journal.time_of("conductor returned") == stopped + min(slow, 10)
    assert "startup" not in journal.events


async def test_for_real_a_request_is_cut_and_the_shutdown_runs_before_the_deadline(
    journal: Journal,
) -> None:
    """On the real clock, a 1 s grace: cut after 0.75 s, the lifespan shutdown before 1 s."""
    app = App(journal, slow=30.0)
    served = Served(serve_asgi(app, bind="127.0.0.1:0"))
    with trio.fail_after(10):
        async with background(web(served, grace=1)) as run, httpx.AsyncClient() as client:
            await slow_request_then_stop(run, app, served, client)
    stopped = journal.time_of("stop")
    assert stopped + 0.75 <= journal.time_of("shutdown") < stopped + 1
    assert stopped + 0.75 <= journal.time_of("request cut") < stopped + 1
    assert journal.time_of("conductor returned") < stopped + 1  # not the hard phase


@pytest.mark.parametrize(
    ("left", "lifespan_share", "requests"),
    [
        (10.0, None, 7.5),
        (20.0, None, 15.0),
        (20.001, None, 15.001),  # from here on, 5 s are kept
        (3600.0, None, 3595.0),
        (0.0, None, 0.0),
        (-1.0, None, 0.0),  # a deadline already past: nothing for anyone
        (10.0, 0.0, 10.0),
        (10.0, 2.0, 8.0),
        (10.0, 10.0, 0.0),
        (10.0, 11.0, 0.0),
        (10.0, math.inf, 0.0),
        (math.inf, None, math.inf),  # no deadline: the requests have all the time
        (math.inf, 2.0, math.inf),
        (math.inf, math.inf, math.inf),
    ],
)
def test_the_rule_keeps_min_share_or_a_quarter_capped_at_5_s(
    left: float, lifespan_share: float | None, requests: float
) -> None:
    """Requests get ``left - min(share, left)``; the share is by default ``min(left / 4, 5)``."""
    assert requests_time(left, lifespan_share) == pytest.approx(requests, abs=1e-9)


async def test_a_config_is_copied_and_bind_says_where_to_listen(journal: Journal) -> None:
    """The caller's Config keeps its values; its own bind is ignored, ``bind=`` is used."""
    config = Config()
    config.bind = ["localhost"]  # not HOST:PORT: ignored, bind= says where to listen
    config.graceful_timeout = 1.0
    served = Served(serve_asgi(App(journal), bind="127.0.0.1:0", config=config))
    conductor = orchestra.Conductor({"web": served})
    with trio.fail_after(10):
        async with background(conductor) as run, httpx.AsyncClient() as client:
            assert (await client.get(served.url)).status_code == 200
            run.conductor.stop("test over")
            assert await run.wait_stopped() is None
    assert (config.bind, config.graceful_timeout) == (["localhost"], 1.0)


@pytest.mark.parametrize(
    "bind",
    [
        "localhost",  # hypercorn would silently bind 127.0.0.1:8000
        "",
        "127.0.0.1:notaport",
        ":99999",
        "127.0.0.1:99999",
        "127.0.0.1:-1",
        ":8000",
        "::1:8000",
        "[127.0.0.1]:8000",
        "unix:/tmp/app.sock",
    ],
)
async def test_a_bind_that_does_not_parse_fails_the_start(bind: str) -> None:
    """A bind that is not HOST:PORT is a ValueError naming the player, before started()."""
    conductor = web(Served(serve_asgi(App(Journal()), bind=bind)))
    with trio.fail_after(10), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/web": ValueError})
    message = str(caught.value.failures["app/web"])
    assert message.startswith(f"player 'app/web': bind {bind!r} must ")


async def test_a_port_in_use_fails_the_start_and_rolls_back(journal: Journal) -> None:
    """A busy port is an OSError with its errno, naming the player; the players before stop."""

    async def before() -> None:
        try:
            await trio.sleep_forever()
        finally:
            journal("before stopped")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bind = f"127.0.0.1:{port}"
        server = Served(serve_asgi(App(journal), bind=bind))
        conductor = orchestra.Conductor({"before": before, "web": server}, name="app")
        with trio.fail_after(10), pytest.raises(orchestra.ConductorError) as caught:
            await conductor()
    assert_failures(caught.value, {"app/web": OSError})
    error = caught.value.failures["app/web"]
    assert isinstance(error, OSError)
    assert error.errno == errno.EADDRINUSE
    assert str(error).startswith(f"[Errno {errno.EADDRINUSE}] player 'app/web' cannot listen on")
    assert bind in str(error)
    assert journal.events == ["before stopped"]  # not even the lifespan startup ran


async def test_a_failed_lifespan_startup_fails_the_start_with_hypercorn_s_error() -> None:
    """The app's startup failure is the failure itself, not hypercorn's nested groups."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    conductor = web(Served(serve_asgi(app, bind="127.0.0.1:0")))
    with trio.fail_after(10), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/web": LifespanFailureError})
    assert str(caught.value.failures["app/web"]) == "Lifespan failure in startup. 'no database'"


async def test_a_missing_hypercorn_fails_the_start_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without hypercorn, the start fails with ModuleNotFoundError and the pip command."""
    for name in [name for name in sys.modules if name.partition(".")[0] == "hypercorn"]:
        monkeypatch.setitem(sys.modules, name, None)
    conductor = web(Served(serve_asgi(App(Journal()), bind="127.0.0.1:0")))
    with trio.fail_after(10), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/web": ModuleNotFoundError})
    assert str(caught.value.failures["app/web"]) == (
        "player 'app/web' needs hypercorn, which is not installed;"
        " install it with pip install 'trio-orchestra[asgi]'"
    )


async def test_a_missing_certificate_fails_the_start_and_frees_the_port(tmp_path: Path) -> None:
    """TLS that cannot load fails the start with its own error; the bound socket is closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.certfile = str(tmp_path / "missing.pem")
    config.keyfile = str(tmp_path / "missing.key")
    conductor = web(Served(serve_asgi(App(Journal()), bind=f"127.0.0.1:{port}", config=config)))
    with trio.fail_after(10), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/web": FileNotFoundError})
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # EADDRINUSE if the player had left its socket open


async def test_a_client_that_resets_before_sending_leaves_the_server_serving(
    journal: Journal,
) -> None:
    """A connection reset before its first byte is that connection's end, not the player's."""
    served = Served(serve_asgi(App(journal), bind="127.0.0.1:0"))
    with trio.fail_after(10):
        async with background(web(served)) as run, httpx.AsyncClient() as client:
            for _ in range(3):
                rude = socket.create_connection(("127.0.0.1", served.port))
                rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                rude.close()  # an RST, nothing sent
                await trio.sleep(0.05)
            assert (await client.get(f"{served.url}/")).text == "done /"
            assert run.conductor.status().children["web"].state is orchestra.PlayerState.RUNNING
            await run.stop()


async def test_a_silent_connection_is_closed_after_the_keep_alive_timeout(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """As hypercorn closes a connection idle for ``keep_alive_timeout``: one that sends nothing."""
    config = Config()
    config.keep_alive_timeout = 2
    served = Served(serve_asgi(App(journal), bind="127.0.0.1:0", config=config))
    async with background(web(served)) as run:
        stream = await trio.open_tcp_stream("127.0.0.1", served.port)
        connected = trio.current_time()
        assert await stream.receive_some(100) == b""  # closed by the server
        assert trio.current_time() == connected + 2
        await stream.aclose()
        await run.stop()


async def test_max_requests_ends_the_server_after_its_graceful_timeout(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The request past ``max_requests`` ends the worker, as in hypercorn.

    The requests in flight get the config's ``graceful_timeout``, then the player returns.
    """
    config = Config()
    config.max_requests = 1
    config.max_requests_jitter = 0
    config.graceful_timeout = 3
    app = App(journal, slow=10)
    served = Served(serve_asgi(app, bind="127.0.0.1:0", config=config))
    async with trio.open_nursery() as nursery:
        await nursery.start(served)
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(f"{served.url}/")).status_code == 200
            began = trio.current_time()
            with pytest.raises(httpx.RemoteProtocolError):  # cut at the graceful timeout
                await client.get(f"{served.url}/slow")
    assert trio.current_time() == began + 3  # and the player returned then
    assert journal.events == ["startup", "slow request begins", "shutdown"]


async def test_a_config_of_the_wrong_type_fails_the_start() -> None:
    """A config that is not a hypercorn Config is a TypeError at start, naming the player."""
    player = serve_asgi(App(Journal()), config={"bind": "127.0.0.1:0"})  # type: ignore[arg-type]
    conductor = web(Served(player))
    with trio.fail_after(10), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/web": TypeError})
    assert str(caught.value.failures["app/web"]) == (
        "player 'app/web': config must be a hypercorn.config.Config or None, not dict"
    )


def test_bad_argument_types_are_refused_at_once() -> None:
    """A non-callable app or a bind that is not a str is a TypeError when the player is made."""
    with pytest.raises(
        TypeError,
        match=r"^serve_asgi: the app must be an ASGI application \(a callable\), not str$",
    ):
        serve_asgi("main:app")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^serve_asgi: bind must be a str, not int$"):
        serve_asgi(App(Journal()), bind=8000)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"^serve_asgi: lifespan_share must be a number of seconds, not str$"
    ):
        serve_asgi(App(Journal()), lifespan_share="5")  # type: ignore[arg-type]


@pytest.mark.parametrize("share", [-1.0, math.nan])
def test_a_negative_or_nan_lifespan_share_is_refused_at_once(share: float) -> None:
    """``lifespan_share`` is seconds, zero or more: a ValueError when the player is made."""
    with pytest.raises(
        ValueError,
        match=rf"^serve_asgi: lifespan_share must be zero or more seconds, not {share!r}$",
    ):
        serve_asgi(App(Journal()), lifespan_share=share)


def test_the_player_is_named_serve_asgi() -> None:
    """The player's ``__name__`` is ``serve_asgi``; its qualified name says what it serves."""
    player = serve_asgi(App(Journal()), bind="127.0.0.1:0")
    assert player.__name__ == "serve_asgi"
    assert player.__qualname__ == "serve_asgi(App, 127.0.0.1:0)"


async def test_without_a_config_hypercorn_logs_through_the_application_logging(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    """No handler of hypercorn's own is added; its records reach the root handlers once."""
    hypercorn_log = logging.getLogger("hypercorn.error")
    handlers = list(hypercorn_log.handlers)
    served = Served(serve_asgi(App(journal), bind="127.0.0.1:0"))
    with caplog.at_level(logging.INFO), trio.fail_after(10):
        async with background(web(served)) as run:
            await run.stop()
    assert hypercorn_log.handlers == handlers
    running = [r for r in caplog.records if r.getMessage().startswith("Running on http://")]
    assert len(running) == 1
    assert running[0].name == "hypercorn.error"
