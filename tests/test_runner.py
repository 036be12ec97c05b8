"""The runner and the command line, in real child processes with real signals (contract s. 5)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX signals", allow_module_level=True)

CHILD = textwrap.dedent(
    """
    import signal
    import sys

    import trio

    import trio_orchestra as orchestra


    async def polite():
        stop = orchestra.current_stop()
        print("READY", flush=True)
        await stop.wait()
        print(f"SOFT {stop.reason}", flush=True)
        await trio.sleep(0.2)
        print("POLITE DONE", flush=True)


    async def deaf():
        stop = orchestra.current_stop()
        print("READY", flush=True)
        try:
            await stop.wait()
            print("IGNORING THE STOP", flush=True)
            await trio.sleep_forever()
        finally:
            print("DEAF CANCELLED", flush=True)


    async def stuck():
        print("READY", flush=True)
        try:
            await trio.sleep_forever()
        finally:
            print("STUCK", flush=True)
            with trio.CancelScope(shield=True):
                await trio.sleep_forever()  # stuck in cleanup, forever


    async def blocking():
        import time

        print("READY", flush=True)
        try:
            await trio.sleep_forever()
        finally:
            print("BLOCKING", flush=True)
            time.sleep(30)  # sync code in its cleanup: the whole event loop is blocked


    async def failing():
        print("READY", flush=True)
        await trio.sleep(0.1)
        raise ValueError("boom")


    async def slow_start(*, task_status):
        print("STARTING", flush=True)
        await trio.sleep(1)
        task_status.started()
        print("STARTED", flush=True)


    async def flaky():
        print("FAILING", flush=True)
        raise ValueError("flaky")


    async def slow_polite():
        stop = orchestra.current_stop()
        print("READY", flush=True)
        await stop.wait()
        print("STOPPING SLOWLY", flush=True)
        await trio.sleep(30)
        print("SLOW DONE", flush=True)


    def not_async():
        pass


    async def then_check_handlers(player):
        await orchestra.play_until_signal(player)
        restored = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        print("RESTORED" if restored else "NOT RESTORED", flush=True)


    PLAYERS = {
        "polite": polite,
        "deaf": deaf,
        "stuck": stuck,
        "blocking": blocking,
        "failing": failing,
        "slow_start": slow_start,
        "flaky": orchestra.PlayerSpec(
            flaky,
            restart=orchestra.Restart.ON_FAILURE,
            backoff=orchestra.Backoff(initial=60, maximum=60),
        ),
        "slow_polite": slow_polite,
        # A child process that ignores SIGTERM, with a grace of its own: SIGKILL after 0.5 s.
        "deaf_child": orchestra.PlayerSpec(
            orchestra.run_process([
                sys.executable,
                "-u",
                "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                " import sys; print('CHILD READY', file=sys.stderr); time.sleep(60)",
            ]),
            grace=0.5,
        ),
    }

    if __name__ == "__main__":
        mode, name = sys.argv[1], sys.argv[2]
        conductor = orchestra.Conductor({name: PLAYERS[name]}, name="svc", grace=60)
        if mode == "run":
            orchestra.run(conductor)
        elif mode == "drain":  # a 1.5 s drain, a 3 s deadline, the health endpoint on argv[3]
            orchestra.run(conductor, drain=1.5, stop_within=3, health=sys.argv[3])
        elif mode == "within":
            orchestra.run(conductor, stop_within=1)
        elif mode == "force":
            orchestra.run(conductor, force_exit_after=0.5)
        elif mode == "play":
            trio.run(then_check_handlers, conductor)
    """
)


class Child:
    """A child Python process whose output we read line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        """Start ``python *args`` in *cwd*."""
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []

    def wait_for(self, text: str) -> None:
        """Read stdout until a line contains *text*."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if text in line:
                return
        msg = f"the child ended without printing {text!r}: {self.lines}"
        raise AssertionError(msg)

    def signal(self, signum: int) -> None:
        """Send *signum* to the child."""
        self.process.send_signal(signum)

    def finish(self) -> tuple[int, str, str]:
        """Wait for the child; return its exit status, the rest of stdout, and stderr."""
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, "".join(self.lines) + out, err


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """The child script, written in a fresh directory."""
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


@pytest.fixture
def spawn(script: Path) -> Iterator[Callable[..., Child]]:
    """Start children of the script; kill any left running."""
    children: list[Child] = []

    def start(*args: str) -> Child:
        child = Child([str(script), *args], script.parent)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
        child.process.communicate()  # reap it and close its pipes


def test_sigterm_stops_gracefully_and_exits_0(spawn: Callable[..., Child]) -> None:
    """The first signal is a graceful stop whose reason names the signal."""
    child = spawn("run", "polite")
    child.wait_for("READY")
    child.signal(signal.SIGTERM)
    status, out, _ = child.finish()
    assert status == 0
    assert "SOFT received SIGTERM" in out
    assert "POLITE DONE" in out


def test_a_failure_exits_1_naming_the_player(spawn: Callable[..., Child]) -> None:
    """A failing player makes the program exit 1 with the failure printed by path."""
    child = spawn("run", "failing")
    status, _, err = child.finish()
    assert status == 1
    assert "svc/failing: ValueError: boom" in err
    assert "raised in player 'svc/failing'" in err


def test_a_second_sigint_skips_the_grace_period(spawn: Callable[..., Child]) -> None:
    """Two SIGINTs: the player with 60 s of grace is hard-cancelled at once; exit 0."""
    child = spawn("run", "deaf")
    child.wait_for("READY")
    child.signal(signal.SIGINT)
    child.wait_for("IGNORING THE STOP")
    child.signal(signal.SIGINT)
    status, out, _ = child.finish()
    assert status == 0
    assert "DEAF CANCELLED" in out


def test_a_third_sigint_exits_70_naming_the_straggler(spawn: Callable[..., Child]) -> None:
    """Three SIGINTs exit 70 at once, printing the stuck player and where it is stuck."""
    child = spawn("run", "stuck")
    child.wait_for("READY")
    child.signal(signal.SIGINT)
    child.wait_for("STUCK")
    # The kernel merges a signal sent while the same one is pending: space them out.
    while child.process.poll() is None:
        child.signal(signal.SIGINT)
        time.sleep(0.2)
    status, _, err = child.finish()
    assert status == 70
    assert "exiting after a third signal (SIGINT); players still running:" in err
    assert "  svc/stuck\n" in err
    assert "child.py:" in err
    assert "in stuck" in err


def test_a_third_signal_names_the_line_that_blocks_the_loop(spawn: Callable[..., Child]) -> None:
    """A player blocking the loop in time.sleep: its own frame is named, not the wrapper's."""
    child = spawn("run", "blocking")
    child.wait_for("READY")
    child.signal(signal.SIGINT)
    child.wait_for("BLOCKING")
    while child.process.poll() is None:
        child.signal(signal.SIGINT)
        time.sleep(0.2)
    status, _, err = child.finish()
    assert status == 70
    assert "  svc/blocking\n" in err
    assert "in blocking  <- running now: it holds the event loop" in err
    assert "_conductor.py" not in err


def test_force_exit_after_holds_while_the_loop_is_blocked(spawn: Callable[..., Child]) -> None:
    """force_exit_after is kept by a thread: a blocked loop still exits 70, naming the line."""
    child = spawn("force", "blocking")
    child.wait_for("READY")
    started = time.monotonic()
    child.signal(signal.SIGTERM)
    status, _, err = child.finish()
    assert status == 70
    assert time.monotonic() - started < 10  # not the 30 s of its time.sleep
    assert "exiting after force_exit_after (0.5 s)" in err
    assert "in blocking  <- running now: it holds the event loop" in err


def test_force_exit_after_exits_70(spawn: Callable[..., Child]) -> None:
    """force_exit_after: the stop began, the deadline passed, the stuck player is named."""
    child = spawn("force", "stuck")
    child.wait_for("READY")
    child.signal(signal.SIGTERM)
    status, _, err = child.finish()
    assert status == 70
    assert "exiting after force_exit_after (0.5 s)" in err
    assert "svc/stuck" in err


def test_a_signal_during_the_start_is_already_a_graceful_stop(spawn: Callable[..., Child]) -> None:
    """Handlers are installed before the first player starts: no default action."""
    child = spawn("run", "slow_start")
    child.wait_for("STARTING")
    child.signal(signal.SIGTERM)
    status, out, _ = child.finish()
    assert status == 0
    assert "STARTED" not in out


def test_a_signal_during_a_restart_backoff_stops_at_once(spawn: Callable[..., Child]) -> None:
    """A player waiting 60 s to be restarted: SIGTERM ends the wait and the program, exit 0."""
    child = spawn("run", "flaky")
    child.wait_for("FAILING")
    child.signal(signal.SIGTERM)
    status, _, _ = child.finish()  # within finish()'s 30 s: not the 60 s of backoff
    assert status == 0


def test_a_second_signal_during_the_soft_phase_forces(spawn: Callable[..., Child]) -> None:
    """SIGTERM starts a slow graceful stop; SIGTERM again cancels it at once, exit 0."""
    child = spawn("run", "slow_polite")
    child.wait_for("READY")
    child.signal(signal.SIGTERM)
    child.wait_for("STOPPING SLOWLY")
    child.signal(signal.SIGTERM)
    status, out, _ = child.finish()
    assert status == 0
    assert "SLOW DONE" not in out


def test_a_child_process_ignoring_sigterm_is_killed_after_its_grace(
    spawn: Callable[..., Child],
) -> None:
    """The runner's SIGTERM becomes the child's SIGTERM; ignored, SIGKILL follows; exit 0."""
    child = spawn("run", "deaf_child")
    assert child.process.stderr is not None
    for line in child.process.stderr:  # its stderr is logged (WARNING) on the runner's stderr
        if "svc/deaf_child stderr: CHILD READY" in line:
            break
    began = time.monotonic()
    child.signal(signal.SIGTERM)
    status, _, err = child.finish()  # the runner returns only once the process is gone
    assert status == 0, err
    assert time.monotonic() - began >= 0.5


def test_play_until_signal_restores_the_handlers(spawn: Callable[..., Child]) -> None:
    """Once the root has returned, the previous handlers are back."""
    child = spawn("play", "polite")
    child.wait_for("READY")
    child.signal(signal.SIGTERM)
    status, out, _ = child.finish()
    assert status == 0
    assert "RESTORED" in out


def test_the_command_line_runs_a_conductor_with_a_grace(script: Path) -> None:
    """``python -m trio_orchestra run module:attr --grace S`` runs it until a signal."""
    (script.parent / "app.py").write_text(
        "from child import polite\nimport trio_orchestra as o\n"
        "conductor = o.Conductor({'polite': polite}, name='app')\n"
    )
    child = Child(["-m", "trio_orchestra", "run", "app:conductor", "--grace", "2"], script.parent)
    child.wait_for("READY")
    child.signal(signal.SIGTERM)
    status, out, err = child.finish()
    assert status == 0
    assert "SOFT received SIGTERM" in out
    assert "player app/polite stopping, with 2 s to finish" in err


def test_the_command_line_wraps_a_plain_callable(script: Path) -> None:
    """A target that is an async callable runs in a conductor named after it."""
    child = Child(["-m", "trio_orchestra", "run", "child:polite"], script.parent)
    child.wait_for("READY")
    child.signal(signal.SIGINT)
    status, _, err = child.finish()
    assert status == 0
    assert "player polite/polite started" in err


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope:thing", "cannot import module 'nope'"),
        ("child:missing", "module 'child' has no attribute 'missing'"),
        ("child", "target 'child' must look like package.module:attribute"),
        ("child:PLAYERS", "'child:PLAYERS' is a dict, not a Conductor or async callable"),
        ("child:not_async", "'child:not_async' cannot be run: the player to run: a player must be"),
    ],
)
def test_the_command_line_rejects_a_bad_target(script: Path, target: str, message: str) -> None:
    """A target that cannot be imported or run is a one-line usage error, exit 2."""
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "trio_orchestra", "run", target],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def _start_the_demo(tmp_path: Path) -> tuple[Child, list[str], str, str]:
    """Run the demo until its graph is up; check its start order, /status and page.

    Returns the child, the lines of stderr so far, the health endpoint's and the web app's URLs.
    """
    child = Child(
        ["-m", "trio_orchestra", "demo", "--health", "127.0.0.1:0", "--web", "127.0.0.1:0"],
        tmp_path,
    )
    assert child.process.stderr is not None
    lines: list[str] = []
    health = web = ""
    for line in child.process.stderr:
        lines.append(line)
        if "health endpoint on " in line:
            health = line.split("health endpoint on ")[1].strip()
        if "Running on http://" in line:  # hypercorn says where the web app listens
            web = line.split("Running on ")[1].split()[0]
        if "player demo/web started" in line:  # the last of the graph: after db and cache
            break
    assert health.startswith("http://127.0.0.1:"), lines
    started = [line.split("player ")[1].split()[0] for line in lines if " started" in line]
    assert started.index("demo/web") > max(started.index("demo/db"), started.index("demo/cache"))
    assert started.index("demo/jobs") > started.index("demo/db")
    with urllib.request.urlopen(health + "status", timeout=10) as answer:  # noqa: S310 - ours
        tree = json.loads(answer.read())
    assert [(node["path"], node["after"]) for node in tree["children"]] == [
        ("demo/db", []),
        ("demo/cache", []),
        ("demo/jobs", ["db"]),
        ("demo/web", ["db", "cache"]),
        ("demo/flaky", []),
    ]
    assert tree["stop_budget"] == 8
    with urllib.request.urlopen(health, timeout=10) as answer:  # noqa: S310 - ours
        page = answer.read().decode()
    assert 'data-path="demo/jobs/worker-1"' in page
    assert "after db, cache" in page
    assert "stop budget 8 s" in page
    with urllib.request.urlopen(web + "/hello", timeout=10) as answer:  # noqa: S310 - ours
        assert answer.read() == b"hello from trio-orchestra: you asked for /hello\n"
    return child, lines, health, web


def test_the_demo_runs_serves_its_health_page_and_stops_gracefully_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """``python -m trio_orchestra demo`` works as the README says.

    It prints its banner, its graph starts, the health endpoint and the web app answer, and
    SIGINT drains for 2 s (``/readyz`` 503, the web app still answering), then stops it in
    graph order: flaky, jobs and web first, db once jobs is gone, cache (a process, on
    SIGTERM) once web is, the workers finishing the job in hand: no failure, no player cut
    off, no traceback, exit 0, well within the demo's deadline.
    """
    child, lines, health, web = _start_the_demo(tmp_path)
    child.wait_for("python -m trio_orchestra top")  # the banner names the live view
    port = int(health.rstrip("/").rsplit(":", 1)[1])
    signalled = time.monotonic()
    child.signal(signal.SIGINT)
    status, body = _readyz(port)
    while status == 200 and time.monotonic() < signalled + 1:
        status, body = _readyz(port)
    assert (status, body) == (503, "not ready: demo is draining before its stop: received SIGINT\n")
    with urllib.request.urlopen(web + "/draining", timeout=10) as answer:  # noqa: S310 - ours
        assert answer.status == 200  # the drain keeps serving
    status, out, err = child.finish()
    took = time.monotonic() - signalled
    assert status == 0, [*lines, err]
    assert 2 <= took < 10  # the 2 s drain, then a stop of about 1.5 s; the deadline is 10 s
    assert len(out.splitlines()) <= 10  # the banner, and no tree printed every few seconds
    assert "/readyz" in out
    assert "conductor demo draining for 2 s before it stops: received SIGINT" in err

    def players(what: str) -> list[str]:
        return [line.split("player ")[1].split()[0] for line in err.splitlines() if what in line]

    stopping, stopped = players(" stopping, with"), players(" stopped")
    first_wave = stopping[: min(stopping.index("demo/db"), stopping.index("demo/cache"))]
    assert {"demo/jobs", "demo/web", "demo/flaky"} <= set(first_wave), stopping
    assert stopped.index("demo/cache") > stopped.index("demo/web")
    assert stopped.index("demo/db") > stopped.index("demo/jobs")
    assert stopped.index("demo/jobs") > stopped.index("demo/jobs/worker-1")
    assert "cache: got SIGTERM, cleaning up" in err
    for sign in ("Traceback", "cut off", " failed:", "ERROR"):
        assert sign not in err, err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("option", ["--web", "--health"])
def test_the_demo_on_a_busy_port_says_which_option_moves_it(tmp_path: Path, option: str) -> None:
    """A port in use is one line naming the option that moves it, exit 1, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--health" if option == "--web" else "--web"
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [
                sys.executable,
                "-m",
                "trio_orchestra",
                "demo",
                option,
                f"127.0.0.1:{port}",
                other,
                f"127.0.0.1:{_free_port()}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    what = "web app" if option == "--web" else "health endpoint"
    line = (
        f"trio_orchestra demo: the {what} cannot listen on 127.0.0.1:{port}"
        f" (Address already in use); move it with {option} HOST:PORT,"
        f" e.g. {option} 127.0.0.1:{port + 1}"
    )
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""  # no banner for a demo that does not run


def test_the_demo_refuses_one_address_for_both_web_and_health(tmp_path: Path) -> None:
    """``--web`` and ``--health`` on the same port is a usage error, exit 2."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_orchestra",
            "demo",
            "--web",
            "127.0.0.1:8123",
            "--health",
            "127.0.0.1:8123",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--web and --health are both 127.0.0.1:8123; give them different ports" in result.stderr


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_drain_keeps_serving_not_ready_then_stops(spawn: Callable[..., Child]) -> None:
    """SIGTERM with drain=1.5: /readyz turns 503 (draining) at once; the stop comes 1.5 s later."""
    port = _free_port()
    child = spawn("drain", "polite", f"127.0.0.1:{port}")
    child.wait_for("READY")
    assert _readyz(port)[0] == 200
    signalled = time.monotonic()
    child.signal(signal.SIGTERM)
    deadline = signalled + 1
    status, body = _readyz(port)
    while time.monotonic() < deadline:
        status, body = _readyz(port)
        if status == 503:
            break
    assert (status, body) == (503, "not ready: svc is draining before its stop: received SIGTERM\n")
    child.wait_for("SOFT received SIGTERM")
    assert time.monotonic() - signalled >= 1.5
    status, out, _ = child.finish()
    assert status == 0
    assert "POLITE DONE" in out


def test_a_second_signal_ends_the_drain_then_a_fourth_exits_70(spawn: Callable[..., Child]) -> None:
    """During a drain, SIGTERM again begins the stop at once; the exit waits for a fourth."""
    port = _free_port()
    child = spawn("drain", "stuck", f"127.0.0.1:{port}")
    child.wait_for("READY")
    signalled = time.monotonic()
    child.signal(signal.SIGTERM)
    time.sleep(0.3)  # the kernel merges a signal sent while the same one is pending
    child.signal(signal.SIGTERM)
    child.wait_for("STUCK")
    assert time.monotonic() - signalled < 1.5  # before the drain's end
    while child.process.poll() is None:
        child.signal(signal.SIGTERM)
        time.sleep(0.2)
    status, _, err = child.finish()
    assert status == 70
    assert "exiting after a fourth signal (SIGTERM)" in err


def test_stop_within_cuts_a_slow_player_at_the_deadline(spawn: Callable[..., Child]) -> None:
    """stop_within=1: a player with 60 s of grace that takes 30 s is cut off after 1 s; exit 0."""
    child = spawn("within", "slow_polite")
    child.wait_for("READY")
    signalled = time.monotonic()
    child.signal(signal.SIGTERM)
    status, out, err = child.finish()
    took = time.monotonic() - signalled
    assert status == 0
    assert "STOPPING SLOWLY" in out
    assert "SLOW DONE" not in out
    assert "player svc/slow_polite was cut off" in err
    assert 1 <= took < 10


def test_the_command_line_refuses_a_drain_longer_than_the_deadline(script: Path) -> None:
    """--drain 30 --stop-within 20: one line naming both, exit 2, nothing runs."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_orchestra",
            "run",
            "child:polite",
            "--drain",
            "30",
            "--stop-within",
            "20",
        ],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "drain (30 s) must not exceed stop_within (20 s)" in result.stderr
