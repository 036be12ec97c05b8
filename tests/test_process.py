"""``run_process``: real child processes, SIGTERM then SIGKILL, exit statuses, logged output."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

import trio_orchestra as orchestra
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
