"""``python -m trio_orchestra top``: its rendering, and the real thing in a tmux terminal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

import trio_orchestra as orchestra
from trio_orchestra import _top
from trio_orchestra._report import status_json

from .test_health import HOST, free_port, ready


def screen_of(seen: _top.Seen, now: float) -> str:
    """What top draws for *seen* at *now*, as plain text 110 columns wide."""
    console = Console(width=110, record=True, color_system=None, file=open(os.devnull, "w"))  # noqa: PTH123, SIM115 - closed with the console
    console.print(_top.render(seen, now))
    console.file.close()
    return console.export_text()


def tree() -> _top.Node:
    """A /status answer: a graph, a nested conductor, a backoff with its error, a heartbeat."""
    conductor = orchestra.Conductor(
        {
            "db": orchestra.PlayerSpec(ready, after=()),
            "jobs": orchestra.PlayerSpec(orchestra.Conductor({"pool": ready}), after=("db",)),
            "web": orchestra.PlayerSpec(ready, after=("db", "jobs")),
        },
        name="shop",
    )
    node: _top.Node = json.loads(status_json(conductor.status(), 0.0))
    node["state"] = "running"
    node["not_ready"] = ["shop/web is backoff"]
    node["uptime"] = 3725.0
    db, jobs, web = node["children"]
    db.update(state="running", uptime=75.5, liveness=10, last_heartbeat_age=2.2)
    jobs.update(state="running", uptime=42.0)
    pool: _top.Node = {**db, "path": "shop/jobs/pool", "name": "pool", "after": []}
    jobs["children"] = [{**pool, "uptime": 41.9, "liveness": None, "last_heartbeat_age": None}]
    web.update(state="backoff", restarts=3, last_error="OSError: port 8000 in use")
    return node


def test_status_url_takes_an_address_or_a_url() -> None:
    """A bare HOST:PORT is http://; /status is appended once; other schemes are refused."""
    assert _top.status_url("127.0.0.1:8080") == "http://127.0.0.1:8080/status"
    assert _top.status_url("http://h:1/") == "http://h:1/status"
    assert _top.status_url("https://h/app/status") == "https://h/app/status"
    with pytest.raises(ValueError, match=r"^'ftp://h' is not an http:// URL of a health endpoint$"):
        _top.status_url("ftp://h")


def test_durations_read_as_a_person_says_them() -> None:
    """Seconds, then minutes and seconds, then hours and minutes."""
    assert [_top.duration(s) for s in (None, 0.4, 59.9, 60, 3599, 3600, 7620)] == [
        "",
        "0 s",
        "59 s",
        "1 min 00 s",
        "59 min 59 s",
        "1 h 00 min",
        "2 h 07 min",
    ]


def test_the_screen_shows_each_player_with_its_facts() -> None:
    """State, restarts, uptime, heartbeat age, what it is after and its last error, in rows."""
    seen = _top.Seen(url="http://127.0.0.1:8080")
    seen.answered(tree(), 1000.0)
    lines = screen_of(seen, 1000.0).splitlines()
    assert lines[0].startswith("trio-orchestra top http://127.0.0.1:8080  shop running, not ready")
    assert lines[1].split() == [
        "player",
        "state",
        "restarts",
        "uptime",
        "heartbeat",
        "after",
        "last",
        "error",
    ]
    rows = {line.split()[0]: line for line in lines[2:7]}
    assert rows["shop"].split() == ["shop", "running", "1", "h", "02", "min"]
    assert rows["db"].split() == ["db", "running", "0", "1", "min", "15", "s", "2", "s", "ago"]
    assert rows["jobs"].split() == ["jobs", "running", "0", "42", "s", "db"]
    assert rows["pool"].startswith("    pool")  # indented under its conductor
    assert rows["web"].split() == [
        "web",
        "backoff",
        "3",
        "db,",
        "jobs",
        "OSError:",
        "port",
        "8000",
        "in",
        "use",
    ]
    assert lines[7] == "not ready: shop/web is backoff"
    assert lines[8] == "q or Ctrl-C to quit"


def test_the_screen_says_when_the_program_cannot_be_reached() -> None:
    """The reason, since when, and the last tree seen, dimmed; first, before any answer."""
    seen = _top.Seen(url="http://127.0.0.1:8080")
    seen.failed("connection refused (is the program running?)", 100.0)
    first = screen_of(seen, 101.0)
    assert "cannot reach the program: connection refused (is the program running?)" in first
    assert "(1 s); retrying every 1 s" in first
    assert "waiting for the first answer ..." in first
    seen.answered(tree(), 200.0)
    seen.failed("timed out", 205.0)
    seen.failed("connection refused (is the program running?)", 206.0)
    later = screen_of(seen, 230.0)
    assert "down since" in later
    assert "(25 s); retrying every 1 s" in later  # since the first failure in a row
    assert "the tree as last seen at" in later
    assert "backoff" in later


def test_failures_are_told_in_a_few_words() -> None:
    """Refused, timed out, an HTTP error, anything else."""
    import urllib.error  # noqa: PLC0415 - only this test builds them

    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert _top.describe_failure(refused) == "connection refused (is the program running?)"
    assert _top.describe_failure(urllib.error.URLError(TimeoutError())) == "timed out"
    assert _top.describe_failure(TimeoutError()) == "timed out"
    http = urllib.error.HTTPError("u", 404, "Not Found", None, None)  # type: ignore[arg-type]
    assert _top.describe_failure(http) == "HTTP 404 Not Found"
    assert _top.describe_failure(ValueError("the answer is not a status tree")) == (
        "the answer is not a status tree"
    )


# -- the real thing, in tmux ---------------------------------------------------------------------

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(
    TMUX is None and not os.environ.get("CI"),
    reason="tmux is not installed (CI installs it; there this test must run)",
)

PROGRAM = """
import sys
import trio
import trio_orchestra as orchestra


async def player():
    await trio.sleep_forever()


conductor = orchestra.Conductor(
    {"db": player, "web": orchestra.PlayerSpec(player, after=("db",))}, name="shop"
)
orchestra.run(conductor, health=sys.argv[1])
"""


@contextmanager
def tmux_server() -> Generator[Callable[..., str], None, None]:
    """A tmux server of our own (its own socket, no config); yields ``tmux(*args)``."""
    assert TMUX is not None, "CI must install tmux (see .ci/run)"
    base = [TMUX, "-L", f"trio-orchestra-test-{os.getpid()}", "-f", os.devnull]
    # The terminal's size is the pane's: LINES and COLUMNS (set under pytest) would override it.
    env = {key: value for key, value in os.environ.items() if key not in {"LINES", "COLUMNS"}}

    def tmux(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own tmux, our own arguments
            [*base, *args], capture_output=True, text=True, timeout=10, check=True, env=env
        )
        return done.stdout

    try:
        yield tmux
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=10, check=False)  # noqa: S603


def wait_for(
    tmux: Callable[..., str], session: str, check: Callable[[str], bool], seconds: float = 20
) -> str:
    """The screen of *session* once *check* accepts it (polled: tmux is another program)."""
    deadline = time.monotonic() + seconds
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if check(screen):
            return screen
        time.sleep(0.1)
    pytest.fail(f"{session} never showed what was expected; its screen:\n{screen}")


@needs_tmux
def test_top_follows_a_program_that_stops_and_comes_back_and_quits(tmp_path: Path) -> None:
    """In a real terminal: the tree; "cannot reach" once it is gone; the tree again; q, Ctrl-C."""
    address = f"{HOST}:{free_port()}"
    script = tmp_path / "shop.py"
    script.write_text(PROGRAM)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(script), address])  # noqa: S603 - ours

    program = start()
    try:
        with tmux_server() as tmux:
            command = [sys.executable, "-m", "trio_orchestra", "top", address, "--interval", "0.2"]
            for session in ("by-q", "by-ctrl-c"):
                # bash writes top's exit status (tmux's own #{pane_dead_status} is not always
                # set); on Ctrl-C it waits for top and goes on if top exits by itself.
                status = f'"$@"; echo $? > {tmp_path / session}'
                wrapped = ["bash", "-c", status, "top", *command]
                tmux("new-session", "-d", "-s", session, "-x", "110", "-y", "20", *wrapped)

            def up(screen: str) -> bool:
                return "shop running, ready" in screen and "cannot reach" not in screen

            screen = wait_for(tmux, "by-q", up)
            rows = {line.split()[0]: line.split() for line in screen.splitlines()[2:5]}
            assert rows["db"][:3] == ["db", "running", "0"]
            assert rows["web"][:3] == ["web", "running", "0"]
            assert rows["web"][-2:] == ["s", "db"]  # its uptime, then what it is after

            program.send_signal(signal.SIGTERM)
            assert program.wait(timeout=10) == 0
            down = wait_for(tmux, "by-q", lambda s: "cannot reach the program" in s)
            assert "connection refused (is the program running?)" in down
            assert "the tree as last seen at" in down
            wait_for(tmux, "by-ctrl-c", lambda s: "cannot reach the program" in s)

            program = start()
            wait_for(tmux, "by-q", up)
            wait_for(tmux, "by-ctrl-c", up)

            tmux("send-keys", "-t", "by-q", "q")
            tmux("send-keys", "-t", "by-ctrl-c", "C-c")
            for session in ("by-q", "by-ctrl-c"):
                exit_status = tmp_path / session
                deadline = time.monotonic() + 10
                written = ""
                while time.monotonic() < deadline and not written.endswith("\n"):
                    time.sleep(0.1)
                    written = exit_status.read_text() if exit_status.is_file() else ""
                assert written == "0\n", f"{session}: top did not exit 0 ({written!r})"
    finally:
        program.terminate()
        program.wait(timeout=10)
