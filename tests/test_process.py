"""``run_process``: real child processes, SIGTERM then SIGKILL, exit statuses, logged output."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NoReturn

import pytest
import trio

import trio_orchestra as orchestra
from trio_orchestra._process import _notify_socket
from trio_orchestra.testing import assert_failures, background


def python(code: str) -> list[str]:
    """A command that runs *code* in a fresh interpreter, unbuffered."""
    return [sys.executable, "-u", "-c", textwrap.dedent(code)]


class Lines(logging.Handler):
    """Collects the ``trio_orchestra`` records of the child's lines; wakes up a waiter."""

    def __init__(self) -> None:
        """Start empty."""
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._wanted: tuple[str, trio.Event] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record; set the event of whoever waits for its text."""
        if getattr(record, "stream", None) is None:
            return
        self.records.append(record)
        if self._wanted is not None and self._wanted[0] in record.getMessage():
            self._wanted[1].set()

    async def wait_for(self, text: str) -> None:
        """Wait until a line containing *text* was logged."""
        if any(text in record.getMessage() for record in self.records):
            return
        event = trio.Event()
        self._wanted = (text, event)
        await event.wait()

    def seen(self) -> list[tuple[int, str, str]]:
        """(level, stream, message) of each line."""
        return [(r.levelno, r.stream, r.getMessage()) for r in self.records]  # type: ignore[attr-defined]


@pytest.fixture
def lines() -> object:
    """Capture the child's lines as they are logged."""
    handler = Lines()
    logger = logging.getLogger("trio_orchestra")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.setLevel(previous)
    logger.removeHandler(handler)


ON_TERM = """
    import signal, sys, time
    def on_term(signum, frame):
        print("got SIGTERM")
        sys.exit({code})
    signal.signal(signal.SIGTERM, on_term)
    print("ready")
    while True:
        time.sleep(0.05)
"""


async def test_its_lines_are_logged_under_its_path(lines: Lines) -> None:
    """Stdout lines at INFO, stderr lines at WARNING, each with the path; exit 0 is done."""
    command = python("""
        import sys
        print("out one"); print("out two")
        print("err one", file=sys.stderr)
        sys.stdout.write("no newline at the end")
    """)
    conductor = orchestra.Conductor({"job": orchestra.run_process(command)}, name="app")
    with trio.fail_after(20):
        await conductor()
    seen = sorted(lines.seen())
    assert seen == [
        (logging.INFO, "stdout", "app/job stdout: no newline at the end"),
        (logging.INFO, "stdout", "app/job stdout: out one"),
        (logging.INFO, "stdout", "app/job stdout: out two"),
        (logging.WARNING, "stderr", "app/job stderr: err one"),
    ]
    assert all(record.path == "app/job" for record in lines.records)  # type: ignore[attr-defined]
    assert conductor.status().children["job"].state is orchestra.PlayerState.DONE


async def test_a_non_zero_exit_nobody_asked_for_is_a_failure() -> None:
    """CalledProcessError with the exit status, the command and the last stderr lines."""
    command = python("""
        import sys
        print("bad config", file=sys.stderr)
        sys.exit(3)
    """)
    conductor = orchestra.Conductor({"job": orchestra.run_process(command)}, name="app")
    with trio.fail_after(20), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/job": subprocess.CalledProcessError})
    error = caught.value.failures["app/job"]
    assert isinstance(error, subprocess.CalledProcessError)
    assert error.returncode == 3
    assert error.cmd == command
    assert error.stderr == "bad config"
    assert "returned non-zero exit status 3" in str(error)


@pytest.mark.parametrize("code", [0, 143])
async def test_a_stop_sends_sigterm_and_its_orderly_exit_is_a_clean_stop(
    lines: Lines, code: int
) -> None:
    """The child gets SIGTERM and exits 0 or 143: the stop is orderly, the conductor clean."""
    command = python(ON_TERM.format(code=code))
    conductor = orchestra.Conductor({"worker": orchestra.run_process(command)}, grace=20)
    with trio.fail_after(20):
        async with background(conductor) as run:
            await lines.wait_for("ready")
            assert await run.stop("deploy") is None
    assert "got SIGTERM" in lines.seen()[-1][2]


async def test_death_by_the_sigterm_it_was_sent_is_a_clean_stop(lines: Lines) -> None:
    """A child with the default SIGTERM action dies of it: an orderly stop."""
    command = python('import time\nprint("ready")\ntime.sleep(60)')
    conductor = orchestra.Conductor({"worker": orchestra.run_process(command)}, grace=20)
    with trio.fail_after(20):
        async with background(conductor) as run:
            await lines.wait_for("ready")
            assert await run.stop() is None


async def test_a_bad_exit_after_sigterm_is_a_failure(lines: Lines) -> None:
    """Exit status 5 in answer to SIGTERM is not an orderly stop."""
    command = python(ON_TERM.format(code=5))
    conductor = orchestra.Conductor({"worker": orchestra.run_process(command)}, name="app")
    with trio.fail_after(20):
        async with background(conductor) as run:
            await lines.wait_for("ready")
            error = await run.stop()
    assert_failures(error, {"app/worker": subprocess.CalledProcessError})


async def test_a_child_ignoring_sigterm_is_killed_with_its_group_at_the_deadline(
    lines: Lines, tmp_path: Path
) -> None:
    """After the grace, SIGKILL reaches the child and its own children; the stop is clean."""
    pid_file = tmp_path / "grandchild.pid"
    command = python(f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("ready")
        time.sleep(60)
    """)
    conductor = orchestra.Conductor({"stubborn": orchestra.run_process(command)}, grace=0.5)
    with trio.fail_after(20):
        async with background(conductor) as run:
            await lines.wait_for("ready")
            began = trio.current_time()
            assert await run.stop() is None
            assert trio.current_time() - began >= 0.5
    grandchild = int(pid_file.read_text())
    with trio.fail_after(10):
        while _alive(grandchild):  # noqa: ASYNC110 - another process: nothing to wait on
            await trio.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether *pid* still runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_the_child_runs_in_a_session_of_its_own() -> None:
    """So a terminal's Ctrl-C reaches only the runner; the started value is the Process."""
    async with trio.open_nursery() as nursery:
        process = await nursery.start(orchestra.run_process(python("import time; time.sleep(60)")))
        assert isinstance(process, trio.Process)
        assert os.getsid(process.pid) == process.pid != os.getsid(0)
        nursery.cancel_scope.cancel()
    assert process.returncode == -signal.SIGKILL


async def test_a_command_that_does_not_exist_fails_the_start_naming_the_player() -> None:
    """FileNotFoundError naming the player and the command; the players before it roll back."""
    conductor = orchestra.Conductor(
        {
            "sleeper": orchestra.run_process(python("import time; time.sleep(60)")),
            "tool": orchestra.run_process(["/nonexistent/tool", "--flag"]),
        },
        name="app",
    )
    with trio.fail_after(20), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    error = caught.value.failures["app/tool"]
    assert isinstance(error, FileNotFoundError)
    assert "player 'app/tool' cannot run '/nonexistent/tool --flag'" in str(error)
    assert conductor.status().children["sleeper"].state is orchestra.PlayerState.DONE


async def test_on_failure_restarts_a_crashing_worker(tmp_path: Path) -> None:
    """A worker that crashes on its first run is restarted and then runs until stopped."""
    marker = tmp_path / "crashed"
    command = python(f"""
        import os, sys, time
        if not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            sys.exit(1)
        time.sleep(60)
    """)
    spec = orchestra.PlayerSpec(
        orchestra.run_process(command), restart=orchestra.Restart.ON_FAILURE, backoff=None
    )
    restarted = trio.Event()
    restarting: list[orchestra.events.Restarting] = []

    def on_event(event: orchestra.events.Event) -> None:
        if isinstance(event, orchestra.events.Restarting):
            restarting.append(event)
        elif isinstance(event, orchestra.events.Ready) and restarting:
            restarted.set()

    conductor = orchestra.Conductor({"worker": spec}, on_event=on_event)
    with trio.fail_after(20):
        async with background(conductor) as run:
            await restarted.wait()
            node = run.conductor.status().children["worker"]
            assert isinstance(node.last_error, subprocess.CalledProcessError)
            assert await run.stop() is None


def test_a_command_string_without_shell_is_refused() -> None:
    """A string is one program name only with shell=True: refused at once, with the fix."""
    with pytest.raises(TypeError, match="needs shell=True"):
        orchestra.run_process("sleep 1")
    with pytest.raises(TypeError, match=r"belong to trio\.run_process"):
        orchestra.run_process(["true"], check=False)


@pytest.mark.parametrize("stop", [False, True])
async def test_no_grandchild_outlives_the_child(tmp_path: Path, lines: Lines, stop: bool) -> None:
    """Whether the child exits by itself or on our SIGTERM, what it left in its group dies."""
    pid_file = tmp_path / "grandchild.pid"
    command = python(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("ready")
        time.sleep(60 if {stop} else 0)
    """)
    conductor = orchestra.Conductor({"leaky": orchestra.run_process(command)}, grace=10)
    with trio.fail_after(20):
        async with background(conductor) as run:
            await lines.wait_for("ready")
            assert await (run.stop() if stop else run.wait_stopped()) is None
        grandchild = int(pid_file.read_text())
        while _alive(grandchild):  # noqa: ASYNC110 - another process: nothing to wait on
            await trio.sleep(0.02)


async def test_the_child_does_not_read_the_terminal() -> None:
    """Its stdin is /dev/null unless told otherwise: it reads an empty input at once."""
    command = python("import sys; sys.exit(0 if sys.stdin.read() == '' else 1)")
    with trio.fail_after(20):
        await orchestra.Conductor({"reader": orchestra.run_process(command)})()


SHOW_SYSTEMD_VARIABLES = """
    import os
    names = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "KEPT")
    print("env:", " ".join(f"{name}={os.environ.get(name, '-')}" for name in names))
"""


async def test_the_child_does_not_speak_for_the_service_to_systemd(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTIFY_SOCKET and WATCHDOG_* are not inherited (env=None inherits); env= is as given."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@service-notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("KEPT", "yes")
    given = {"NOTIFY_SOCKET": "@mine", "PATH": os.environ.get("PATH", "")}
    conductor = orchestra.Conductor(
        {
            "inherits": orchestra.run_process(python(SHOW_SYSTEMD_VARIABLES)),
            "given": orchestra.run_process(python(SHOW_SYSTEMD_VARIABLES), env=given),
            "none": orchestra.run_process(python(SHOW_SYSTEMD_VARIABLES), env=None),
        },
        name="app",
    )
    with trio.fail_after(20):
        await conductor()
    assert sorted(message for _, _, message in lines.seen()) == [
        "app/given stdout: env: NOTIFY_SOCKET=@mine WATCHDOG_USEC=- WATCHDOG_PID=- KEPT=-",
        "app/inherits stdout: env: NOTIFY_SOCKET=- WATCHDOG_USEC=- WATCHDOG_PID=- KEPT=yes",
        "app/none stdout: env: NOTIFY_SOCKET=- WATCHDOG_USEC=- WATCHDOG_PID=- KEPT=yes",
    ]
    assert os.environ["NOTIFY_SOCKET"] == "@service-notify"  # the runner's own is untouched


# Readiness: ready_port, ready_line, ready_notify.


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (as far as a test can tell)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


LISTEN_LATER = """
    import socket, time
    print("booting")
    time.sleep({delay})
    server = socket.create_server(("127.0.0.1", {port}))
    print("listening")
    time.sleep(60)
"""


@pytest.mark.parametrize("as_tuple", [False, True])
async def test_ready_port_is_started_once_the_port_accepts_a_connection(as_tuple: bool) -> None:
    """Not when spawned: once the child listens, after its delay; then it serves."""
    port = free_port()
    ready_port = ("127.0.0.1", port) if as_tuple else port
    player = orchestra.run_process(
        python(LISTEN_LATER.format(delay=0.5, port=port)), ready_port=ready_port
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            began = trio.current_time()
            process = await nursery.start(player)
            waited = trio.current_time() - began
            assert isinstance(process, trio.Process)
            assert process.returncode is None
            stream = await trio.open_tcp_stream("127.0.0.1", port)  # it serves
            await stream.aclose()
            nursery.cancel_scope.cancel()
    assert 0.5 <= waited < 3


PRINT_LATER = """
    import sys, time
    print("booting", file=sys.{stream})
    time.sleep(0.3)
    print("Listening on port 8000", file=sys.{stream})
    time.sleep(60)
"""


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
@pytest.mark.parametrize("compiled", [False, True])
async def test_ready_line_is_started_at_the_line_that_matches(
    lines: Lines, stream: str, compiled: bool
) -> None:
    """On stdout or stderr; the lines before do not make it ready; the line is still logged."""
    pattern = r"^Listening on port \d+$"
    player = orchestra.run_process(
        python(PRINT_LATER.format(stream=stream)),
        ready_line=re.compile(pattern) if compiled else pattern,
    )
    level = logging.INFO if stream == "stdout" else logging.WARNING
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            began = trio.current_time()
            await nursery.start(player)
            waited = trio.current_time() - began
            assert lines.seen() == [
                (level, stream, f"run_process {stream}: booting"),
                (level, stream, f"run_process {stream}: Listening on port 8000"),
            ]
            nursery.cancel_scope.cancel()
    assert 0.3 <= waited < 3


LINE_THEN_EXIT = {
    "by itself": 'print("migrated 3 tables")',
    # The line comes after the exit, from a grandchild that holds the pipe: it was written
    # before the pipe's end, which is what counts.
    "after its exit": """
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3); print('migrated')"])
    """,
}


@pytest.mark.parametrize("when", LINE_THEN_EXIT)
async def test_the_output_is_read_to_its_end_before_an_early_exit_is_judged(when: str) -> None:
    """A ready line just before the exit still counts: started, then done, not failed."""
    command = python(LINE_THEN_EXIT[when])
    conductor = orchestra.Conductor(
        {"migrate": orchestra.run_process(command, ready_line="migrated")}, name="app"
    )
    with trio.fail_after(20):
        await conductor()
    assert conductor.status().children["migrate"].state is orchestra.PlayerState.DONE


async def test_a_ready_notification_queued_when_the_child_exits_still_counts() -> None:
    """The notify socket is read to its end once the child has exited, before judging."""
    async with _notify_socket("app/daemon") as notifier:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as child:
            child.sendto(b"READY=1", notifier.address)
        assert not notifier.event.is_set()  # nobody read it: the child exited at once
        assert await notifier.after_exit()


NOTIFY_LATER = """
    import os, socket, time
    address = os.environ["NOTIFY_SOCKET"]
    print("socket", address, os.environ.get("WATCHDOG_USEC", "-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(b"STATUS=warming up", address)
    time.sleep(0.3)
    sock.sendto(b"STATUS=serving\\nREADY=1", address)
    for _ in range(2000):  # more than a socket queues: it must go on being read
        sock.sendto(b"WATCHDOG=1", address)
    print("sent all")
    time.sleep(60)
"""


async def test_ready_notify_is_started_when_the_child_sends_ready(
    lines: Lines, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NOTIFY_SOCKET of its own (not the service's), read all along, removed afterwards."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@service-notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    caplog.set_level(logging.DEBUG, logger="trio_orchestra")
    conductor = orchestra.Conductor(
        {"daemon": orchestra.run_process(python(NOTIFY_LATER), ready_notify=True)}, name="app"
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            began = trio.current_time()
            await nursery.start(conductor)
            waited = trio.current_time() - began
            await lines.wait_for("sent all")
            conductor.stop()
    assert 0.3 <= waited < 3
    statuses = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("app/daemon status")
    ]
    assert statuses == ["app/daemon status: warming up", "app/daemon status: serving"]
    _, address, watchdog = lines.seen()[0][2].split(": ", 1)[1].split()
    assert Path(address).parent.name.startswith("trio-orchestra-")
    assert watchdog == "-"
    assert not Path(address).parent.exists()


EXIT_AT_ONCE = """
    import sys
    print("bad config", file=sys.stderr)
    sys.exit({code})
"""


@pytest.mark.parametrize(
    ("option", "missing"),
    [
        ({"ready_port": 1}, "127.0.0.1:1 accepted no connection"),
        ({"ready_line": "ready"}, "no line matched 'ready'"),
        ({"ready_notify": True}, "it sent no READY=1"),
    ],
)
@pytest.mark.parametrize("code", [3, 0])
async def test_an_exit_before_it_is_ready_fails_the_start(
    lines: Lines, option: dict[str, object], missing: str, code: int
) -> None:
    """Whatever the status, even 0: CalledProcessError, noted with the player and the status."""
    sleeper = orchestra.run_process(python("import time; time.sleep(60)"))
    command = python(EXIT_AT_ONCE.format(code=code))
    conductor = orchestra.Conductor(
        {"sleeper": sleeper, "sidecar": orchestra.run_process(command, **option)},  # type: ignore[arg-type]
        name="app",
    )
    with trio.fail_after(20), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/sidecar": subprocess.CalledProcessError})
    error = caught.value.failures["app/sidecar"]
    assert isinstance(error, subprocess.CalledProcessError)
    assert (error.returncode, error.cmd, error.stderr) == (code, command, "bad config")
    said = "exited with status 0 before it was ready" if code == 0 else "non-zero exit status 3"
    assert said in str(error)
    assert getattr(error, "__notes__", []) == [
        f"player 'app/sidecar' exited with status {code} before it was ready ({missing})",
        "raised in player 'app/sidecar'",
    ]
    assert conductor.status().children["sleeper"].state is orchestra.PlayerState.DONE


async def test_start_timeout_bounds_the_wait_and_kills_the_child(tmp_path: Path) -> None:
    """StartTimeout after start_timeout seconds; the child that never got ready is gone."""
    pid_file = tmp_path / "child.pid"
    command = python(f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """)
    spec = orchestra.PlayerSpec(
        orchestra.run_process(command, ready_line="never"), start_timeout=0.5
    )
    conductor = orchestra.Conductor({"slow": spec}, name="app")
    began = trio.current_time()
    with trio.fail_after(20), pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert 0.5 <= trio.current_time() - began < 3
    assert_failures(caught.value, {"app/slow": orchestra.StartTimeout})
    assert not _alive(int(pid_file.read_text()))


BOOT_FOREVER = """
    import signal, sys, time
    def on_term(signum, frame):
        print("got SIGTERM")
        sys.exit(0)
    signal.signal(signal.SIGTERM, {handler})
    print("booting")
    time.sleep(60)
"""


@pytest.mark.parametrize("obeys", [True, False])
async def test_a_stop_while_it_is_not_ready_stops_it_and_is_no_failure(
    lines: Lines, obeys: bool
) -> None:
    """SIGTERM; SIGKILL at the end of the grace if it ignores it; the conductor returns clean."""
    command = python(BOOT_FOREVER.format(handler="on_term" if obeys else "signal.SIG_IGN"))
    spec = orchestra.PlayerSpec(orchestra.run_process(command, ready_line="never"), grace=0.5)
    conductor = orchestra.Conductor({"sidecar": spec}, name="app")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conductor)
            await lines.wait_for("booting")
            began = trio.current_time()
            conductor.stop("deploy")
    stopped_in = trio.current_time() - began
    assert conductor.status().children["sidecar"].state is orchestra.PlayerState.DONE
    if obeys:
        assert lines.seen()[-1][2] == "app/sidecar stdout: got SIGTERM"
        assert stopped_in < 0.5
    else:
        assert stopped_in >= 0.5


async def test_a_stop_while_not_ready_inside_a_player_returns_its_nursery_start(
    lines: Lines,
) -> None:
    """Run by a subscribed player: its nursery.start returns the process being stopped."""
    command = python(BOOT_FOREVER.format(handler="on_term"))
    got: list[object] = []

    async def parent() -> None:
        orchestra.current_stop()  # subscribed: the sidecar hears our stop
        async with trio.open_nursery() as nursery:
            got.append(await nursery.start(orchestra.run_process(command, ready_line="never")))

    conductor = orchestra.Conductor({"parent": parent}, name="app", grace=10)
    with trio.fail_after(20):
        async with background(conductor) as run:
            await lines.wait_for("booting")
            assert await run.stop() is None
    (process,) = got
    assert isinstance(process, trio.Process)
    assert process.returncode == 0
    assert lines.seen()[-1][2] == "app/parent stdout: got SIGTERM"


async def test_a_ready_port_host_that_does_not_resolve_fails_the_start(tmp_path: Path) -> None:
    """Before the child is spawned, naming the player and the host."""

    class NoSuchHost(trio.abc.HostnameResolver):
        async def getaddrinfo(self, *_args: object, **_kwargs: object) -> NoReturn:  # pyright: ignore[reportIncompatibleMethodOverride]
            await trio.lowlevel.checkpoint()
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        async def getnameinfo(self, *_args: object, **_kwargs: object) -> NoReturn:  # pyright: ignore[reportIncompatibleMethodOverride]
            raise NotImplementedError

    marker = tmp_path / "spawned"
    command = python(f"open({str(marker)!r}, 'w').close()")
    player = orchestra.run_process(command, ready_port=("sidecar.internal", 8000))
    conductor = orchestra.Conductor({"sidecar": player}, name="app")
    previous = trio.socket.set_custom_hostname_resolver(NoSuchHost())
    try:
        with trio.fail_after(20), pytest.raises(orchestra.ConductorError) as caught:
            await conductor()
    finally:
        trio.socket.set_custom_hostname_resolver(previous)
    error = caught.value.failures["app/sidecar"]
    assert isinstance(error, socket.gaierror)
    assert str(error) == (
        "[Errno -2] player 'app/sidecar' cannot resolve the ready_port host 'sidecar.internal':"
        " Name or service not known"
    )
    assert not marker.exists()


async def test_the_levels_of_its_lines_are_chosen(lines: Lines) -> None:
    """stdout_level and stderr_level: an access log on stderr need not be a warning."""
    logging.getLogger("trio_orchestra").setLevel(logging.DEBUG)  # the fixture restores it
    command = python("""
        import sys
        print("out"); print("GET / 200", file=sys.stderr)
    """)
    player = orchestra.run_process(command, stdout_level=logging.DEBUG, stderr_level=logging.INFO)
    with trio.fail_after(20):
        await orchestra.Conductor({"job": player}, name="app")()
    assert sorted(lines.seen()) == [
        (logging.DEBUG, "stdout", "app/job stdout: out"),
        (logging.INFO, "stderr", "app/job stderr: GET / 200"),
    ]


WHERE = r"^run_process\('true'\): "


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"ready_port": 8000, "ready_line": "x"},
            ValueError,
            (
                "give at most one of ready_port, ready_line and ready_notify,"
                " not ready_port and ready_line"
            ),
        ),
        (
            {"ready_port": 8000, "ready_line": "x", "ready_notify": True},
            ValueError,
            (
                "give at most one of ready_port, ready_line and ready_notify,"
                " not ready_port and ready_line and ready_notify"
            ),
        ),
        (
            {"ready_port": "8000"},
            TypeError,
            r"ready_port must be a port number or a \(host, port\) tuple, not str",
        ),
        (
            {"ready_port": True},
            TypeError,
            r"ready_port must be a port number or a \(host, port\) tuple, not bool",
        ),
        (
            {"ready_port": ("127.0.0.1", "8000")},
            TypeError,
            r"ready_port must be a port number or a \(host, port\) tuple, not \(str, str\)",
        ),
        (
            {"ready_port": (8000,)},
            TypeError,
            r"ready_port must be a port number or a \(host, port\) tuple, not \(int\)",
        ),
        ({"ready_port": 0}, ValueError, "ready_port must be a port from 1 to 65535, not 0"),
        (
            {"ready_port": ("::1", 65536)},
            ValueError,
            "ready_port must be a port from 1 to 65535, not 65536",
        ),
        ({"ready_port": ("", 8000)}, ValueError, "the ready_port host must not be empty"),
        (
            {"ready_line": 5},
            TypeError,
            r"ready_line must be a str or a compiled re\.Pattern, not int",
        ),
        (
            {"ready_line": re.compile(b"ready")},
            TypeError,
            r"ready_line must be a str pattern \(lines are decoded\), not a bytes one",
        ),
        (
            {"ready_line": "(ready"},
            ValueError,
            (
                r"ready_line '\(ready' is not a valid regular expression:"
                r" missing \), unterminated subpattern at position 0"
            ),
        ),
        (
            {"ready_line": "ready", "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL},
            ValueError,
            (
                "ready_line reads the lines the child writes,"
                " so stdout= and stderr= cannot both redirect them"
            ),
        ),
        ({"ready_notify": 1}, TypeError, "ready_notify must be a bool, not int"),
        (
            {"stdout_level": "INFO"},
            TypeError,
            r"stdout_level must be a logging level \(an int\), not str",
        ),
        (
            {"stderr_level": True},
            TypeError,
            r"stderr_level must be a logging level \(an int\), not bool",
        ),
        (
            {"stderr_level": -1},
            ValueError,
            "stderr_level must be a logging level of zero or more, not -1",
        ),
    ],
)
def test_bad_readiness_and_level_options_are_refused_at_once(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    """One sentence naming the command and the rule; TypeError for a type, else ValueError."""
    with pytest.raises(error, match=WHERE + message + "$"):
        orchestra.run_process(["true"], **options)  # type: ignore[arg-type]
