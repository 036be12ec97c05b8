"""The health endpoint, over real HTTP on loopback.

Requests go through httpx, /metrics is read by Prometheus' own parser, and the page is loaded
in a real headless browser.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import struct
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import trio_orchestra as orchestra
from trio_orchestra._health import MAX_CONNECTIONS, HealthEndpoint
from trio_orchestra._report import status_json
from trio_orchestra.testing import ScriptedPlayer

HOST = "127.0.0.1"


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Poll *check* until it is true (it looks at another party: a server, the tree)."""
    with trio.fail_after(seconds):
        while not await check():  # noqa: ASYNC110 - polling is the point here
            await trio.sleep(0.01)


def state_is(
    conductor: orchestra.Conductor, state: orchestra.PlayerState, *names: str
) -> Callable[[], Awaitable[bool]]:
    """A check that the node at *names* below *conductor* is in *state*."""

    async def check() -> bool:
        node = conductor.status()
        for name in names:
            node = node.children[name]
        return node.state is state

    return check


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def ready() -> None:
    """A plain player that runs until stopped."""
    await trio.sleep_forever()


@asynccontextmanager
async def served(conductor: orchestra.Conductor) -> AsyncGenerator[httpx.AsyncClient, None]:
    """Run *conductor* under ``play_until_signal(health=...)``; yield a client for it.

    The block starts once the tree is started. When it exits, the tree is stopped.
    """
    port = free_port()
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await orchestra.play_until_signal(conductor, health=f"{HOST}:{port}")

        nursery.start_soon(run)
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
            await until(state_is(conductor, orchestra.PlayerState.RUNNING))
            yield client
        conductor.stop("test over")


async def test_livez_readyz_status_and_metrics_answer_about_the_tree() -> None:
    """Each endpoint answers from the same tree, with the right content types."""
    flaky = ScriptedPlayer()
    conductor = orchestra.Conductor(
        {
            "db": ready,
            "jobs": orchestra.Conductor({"pool": ready}),
            "once": orchestra.PlayerSpec(flaky),
        },
        name="app",
    )
    async with served(conductor) as client:
        flaky.finish()
        await until(state_is(conductor, orchestra.PlayerState.DONE, "once"))
        livez = await client.get("/livez")
        assert (livez.status_code, livez.text) == (200, "ok\n")
        readyz = await client.get("/readyz")
        assert (readyz.status_code, readyz.text) == (200, "ready\n")  # done counts as ready

        status = await client.get("/status")
        assert status.headers["content-type"] == "application/json"
        tree = status.json()
        assert (tree["path"], tree["state"]) == ("app", "running")
        nodes = {node["path"]: node for node in _walk(tree)}
        assert set(nodes) == {"app", "app/db", "app/jobs", "app/jobs/pool", "app/once"}
        assert nodes["app/jobs/pool"]["state"] == "running"
        assert nodes["app/jobs/pool"]["uptime"] >= 0
        assert (nodes["app/once"]["state"], nodes["app/once"]["uptime"]) == ("done", None)
        assert nodes["app/db"]["restarts"] == 0
        assert nodes["app/db"]["last_error"] is None

        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics.text)
            for sample in family.samples
        }
        assert samples[("trio_orchestra_ready", ())] == 1
        state = (("path", "app/jobs/pool"), ("state", "running"))
        assert samples[("trio_orchestra_player_state", state)] == 1
        state = (("path", "app/jobs/pool"), ("state", "backoff"))
        assert samples[("trio_orchestra_player_state", state)] == 0
        assert samples[("trio_orchestra_player_restarts_total", (("path", "app/db"),))] == 0
        assert samples[("trio_orchestra_player_uptime_seconds", (("path", "app/once"),))] == 0


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The node of /status's JSON and every node below it."""
    children: list[dict[str, Any]] = node["children"]
    return [node] + [each for child in children for each in _walk(child)]


async def test_readyz_is_503_while_a_player_is_in_backoff_and_says_which() -> None:
    """A restart waiting in backoff makes the tree not ready; the metrics say so too."""
    failing = ScriptedPlayer()
    spec = orchestra.PlayerSpec(
        failing,
        restart=orchestra.Restart.ON_FAILURE,
        backoff=orchestra.Backoff(initial=60, maximum=60, jitter=0),
    )
    conductor = orchestra.Conductor({"db": ready, "worker": spec}, name="app")
    async with served(conductor) as client:
        assert (await client.get("/readyz")).status_code == 200
        failing.fail(ValueError("lost the connection"))
        await until(state_is(conductor, orchestra.PlayerState.BACKOFF, "worker"))
        readyz = await client.get("/readyz")
        assert (readyz.status_code, readyz.text) == (503, "not ready: app/worker is backoff\n")
        tree = (await client.get("/status")).json()
        node = next(node for node in _walk(tree) if node["path"] == "app/worker")
        assert (node["state"], node["restarts"]) == ("backoff", 1)
        assert node["last_error"] == "ValueError: lost the connection"
        text = (await client.get("/metrics")).text
        assert "trio_orchestra_ready 0.0\n" in text
        assert 'trio_orchestra_player_restarts_total{path="app/worker"} 1.0\n' in text


async def test_the_endpoint_listens_before_the_first_player_and_until_the_root_returns() -> None:
    """The first player's start sees /livez 200 and /readyz 503; after return, refused."""
    port = free_port()
    seen: list[tuple[str, int]] = []
    stopping_seen: list[tuple[str, int]] = []

    async def probe() -> list[tuple[str, int]]:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
            return [(path, (await client.get(path)).status_code) for path in ("/livez", "/readyz")]

    async def first(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        stop = orchestra.current_stop()
        seen.extend(await probe())
        task_status.started()
        await stop.wait()
        stopping_seen.extend(await probe())

    conductor = orchestra.Conductor({"first": first})
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            health = f"{HOST}:{port}"
            nursery.start_soon(
                functools.partial(orchestra.play_until_signal, health=health), conductor
            )
            await until(state_is(conductor, orchestra.PlayerState.RUNNING))
            conductor.stop("test over")
    assert seen == [("/livez", 200), ("/readyz", 503)]
    assert stopping_seen == [("/livez", 200), ("/readyz", 503)]
    with pytest.raises(OSError, match="failed"):
        await trio.open_tcp_stream(HOST, port)


async def test_http_details_head_keep_alive_404_405_and_a_bad_request() -> None:
    """HEAD has no body; one connection serves several requests; errors are plain HTTP."""
    conductor = orchestra.Conductor({"db": ready}, name="app")
    async with served(conductor) as client:
        head = await client.head("/livez")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "3")
        for _ in range(3):  # httpx keeps the connection alive between them
            assert (await client.get("/livez?verbose=1")).status_code == 200
        missing = await client.get("/nope")
        assert missing.status_code == 404
        assert "/readyz" in missing.text
        post = await client.post("/livez", content=b"x")
        assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
        port = client.base_url.port
        assert port is not None
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
            answer = await stream.receive_some()
        assert answer.startswith(b"HTTP/1.1 400 ")


async def test_a_port_in_use_fails_before_any_player_starts() -> None:
    """The OSError names the endpoint and the address; no player has run."""
    ran: list[str] = []

    async def player() -> None:
        ran.append("player")

    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"the health endpoint cannot listen on {HOST}:{port}"):
            await orchestra.play_until_signal(player, health=f"{HOST}:{port}")
    assert ran == []


@pytest.mark.parametrize("address", ["8080", "localhost", "127.0.0.1:http", ":8080", "::1:80"])
def test_a_bad_address_is_refused_before_anything_runs(address: str) -> None:
    """A health address that is not HOST:PORT is a ValueError naming it."""
    conductor = orchestra.Conductor({"db": ready})
    with pytest.raises(ValueError, match="the health address"):
        HealthEndpoint(conductor, address)


# -- the page, in a real browser --------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (CI installs it; there this test must run)",
)


async def _chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium with *args*; return what it printed on stdout."""
    assert CHROMIUM is not None, "CI must install chromium (see .ci/run)"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    return done.stdout.decode()


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB or RGBA PNG: width, height, and its rows of pixel bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks += body
        offset += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8
    channels = {2: 3, 6: 4}[color]
    raw = zlib.decompress(chunks)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            line[x] = (line[x] + _predict(kind, left, up, corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [_rgb(row, channels) for row in rows]


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    """The PNG filter predictor of *kind*."""
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    estimate = left + up - corner
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - corner))
    return (left, up, corner)[distances.index(min(distances))]


def _rgb(row: bytes, channels: int) -> bytes:
    """Drop the alpha channel, if any."""
    if channels == 3:
        return row
    return b"".join(row[i : i + 3] for i in range(0, len(row), 4))


def _has_color(rows: list[bytes], color: str) -> bool:
    """Whether a pixel of *color* (``#rrggbb``) is in *rows*."""
    wanted = bytes.fromhex(color[1:])
    return any(row[i : i + 3] == wanted for row in rows for i in range(0, len(row), 3))


@needs_chromium
async def test_the_page_draws_the_tree_in_a_real_browser(tmp_path: Path) -> None:
    """Chromium renders every node with its state; the screenshot shows the state colors."""
    failing = ScriptedPlayer()
    spec = orchestra.PlayerSpec(
        failing,
        restart=orchestra.Restart.ON_FAILURE,
        backoff=orchestra.Backoff(initial=600, maximum=600, jitter=0),
    )
    conductor = orchestra.Conductor(
        {"db": ready, "jobs": orchestra.Conductor({"pool": ready, "flaky": spec})}, name="app"
    )
    async with served(conductor) as client:
        failing.fail(RuntimeError("queue <closed>"))

        async def not_ready() -> bool:
            return (await client.get("/readyz")).status_code == 503

        await until(not_ready)
        url = str(client.base_url) + "/"
        dom = await _chromium(tmp_path / "profile", "--dump-dom", url)
        screenshot = tmp_path / "page.png"
        await _chromium(
            tmp_path / "profile",
            f"--screenshot={screenshot}",
            "--window-size=900,600",
            "--hide-scrollbars",
            url,
        )
    states = _rendered_states(dom)
    assert states == {
        "app": "running",
        "app/db": "running",
        "app/jobs": "running",
        "app/jobs/pool": "running",
        "app/jobs/flaky": "backoff",
    }
    assert "RuntimeError: queue &lt;closed&gt;" in dom  # escaped, shown as text
    assert "not ready: app/jobs/flaky is backoff" in dom
    width, height, rows = _png_pixels(screenshot.read_bytes())
    assert (width, height) == (900, 600)
    assert _has_color(rows, "#2e7d32")  # a RUNNING badge was painted
    assert _has_color(rows, "#c62828")  # and the BACKOFF one


def _rendered_states(dom: str) -> dict[str, str]:
    """``data-path`` -> ``data-state`` of each node the browser rendered."""
    found: dict[str, str] = {}

    class Nodes(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = dict(attrs)
            path, state = values.get("data-path"), values.get("data-state")
            if tag == "li" and path is not None and state is not None:
                found[path] = state

    Nodes().feed(dom)
    return found


def test_status_json_of_a_tree_is_json() -> None:
    """The JSON module's own parser reads what /status renders, also with odd names."""
    conductor = orchestra.Conductor({'we"ird\nname': ready}, name="app")
    parsed = json.loads(status_json(conductor.status(), 0.0))
    assert parsed["children"][0]["path"] == 'app/we"ird\nname'


async def test_a_client_that_resets_after_garbage_harms_nothing() -> None:
    """A reset while the 400 is being sent ends that connection only; the tree runs on."""
    conductor = orchestra.Conductor({"db": ready}, name="app")
    async with served(conductor) as client:
        port = client.base_url.port
        assert port is not None
        for _ in range(5):
            sock = trio.socket.socket()
            await sock.connect((HOST, port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await sock.send(b"\x16\x03\x01 not http at all\r\n\r\n" * 100)
            sock.close()  # with SO_LINGER 0: a reset, not a close
        await trio.sleep(0.1)
        assert (await client.get("/livez")).status_code == 200
        assert conductor.status().children["db"].state is orchestra.PlayerState.RUNNING


async def test_odd_names_odd_targets_and_expect_100_continue_are_answered() -> None:
    """A name with a lone surrogate, an absolute-form target, a client waiting for 100."""
    conductor = orchestra.Conductor({"import-caf\udce9": ready}, name="app")
    async with served(conductor) as client:
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert 'path="app/import-caf?"' in metrics.text
        assert (await client.get("/")).status_code == 200
        port = client.base_url.port
        assert port is not None
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            await stream.send_all(
                b"GET http://health.example/readyz HTTP/1.1\r\nHost: health.example\r\n\r\n"
                b"POST /livez HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                b"Content-Length: 5\r\n\r\n"
            )
            answer = b""
            with trio.fail_after(5):
                while answer.count(b"HTTP/1.1") < 2:
                    answer += await stream.receive_some()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"HTTP/1.1 405 " in answer


async def test_too_many_connections_are_closed_and_the_rest_served() -> None:
    """Past the limit a new connection is closed at once; probes still get through after."""
    conductor = orchestra.Conductor({"db": ready}, name="app")
    async with served(conductor) as client:
        port = client.base_url.port
        assert port is not None
        idle = [await trio.open_tcp_stream(HOST, port) for _ in range(MAX_CONNECTIONS)]
        await trio.sleep(0.1)
        extra = await trio.open_tcp_stream(HOST, port)
        with trio.fail_after(5):
            assert await extra.receive_some() == b""  # closed at once
        for stream in [extra, *idle]:
            await stream.aclose()
        await trio.sleep(0.1)
        assert (await client.get("/livez")).status_code == 200


async def beats_every_second() -> None:
    """A player with a liveness that beats."""
    while True:
        orchestra.heartbeat()
        await trio.sleep(1)


async def test_tasks_shows_where_each_player_waits_and_the_heartbeat_age_is_served() -> None:
    """/tasks: the tree, each player with the file:line it waits at; /metrics: heartbeat age."""
    conductor = orchestra.Conductor(
        {
            "db": ready,
            "consumer": orchestra.PlayerSpec(beats_every_second, liveness=30),
            "jobs": orchestra.Conductor({"pool": ready}),
        },
        name="app",
    )
    async with served(conductor) as client:
        tasks = await client.get("/tasks")
        assert tasks.headers["content-type"] == "text/plain; charset=utf-8"
        lines = tasks.text.splitlines()
        assert lines[0] == "app running, ready, stop budget 15 s"
        assert lines[1].startswith("  db        running")
        assert re.fullmatch(r"    \S+test_health\.py:\d+ in ready", lines[2])
        assert lines[3].startswith("  consumer  running")
        assert "heartbeat 0 s ago" in lines[3]
        assert lines[4].endswith("in beats_every_second")
        assert lines[5].startswith("  jobs      running")
        assert lines[6].startswith("    pool    running")
        assert re.fullmatch(r"      \S+test_health\.py:\d+ in ready", lines[7])

        metrics = await client.get("/metrics")
        ages = {
            sample.labels["path"]: sample.value
            for family in text_string_to_metric_families(metrics.text)
            for sample in family.samples
            if sample.name == "trio_orchestra_player_heartbeat_age_seconds"
        }
        assert set(ages) == {"app/consumer"}  # only a running player with a liveness
        assert 0 <= ages["app/consumer"] < 2
        tree = (await client.get("/status")).json()
        node = next(n for n in _walk(tree) if n["name"] == "consumer")
        assert node["liveness"] == 30
        assert 0 <= node["last_heartbeat_age"] < 2
