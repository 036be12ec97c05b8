"""systemd's notify protocol, on a real AF_UNIX datagram socket, in-process and in a child."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra._systemd import SystemdNotifier

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("AF_UNIX datagrams and POSIX signals", allow_module_level=True)


class Manager:
    """Plays systemd's part: a datagram socket that collects what the service sends."""

    def __init__(self, address: str) -> None:
        """Bind *address*: a path, or NUL and a name for an abstract socket."""
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(address)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.received: list[str] = []

    async def collect(self) -> None:
        """Read datagrams as they come (the kernel queues only a few for a slow reader)."""
        sock = trio.socket.from_stdlib_socket(self.socket)
        while True:
            self.received.append((await sock.recv(65536)).decode())

    def drain(self) -> list[str]:
        """Every datagram received so far, in order, as text."""
        self.socket.setblocking(False)  # noqa: FBT003 - the socket API's own flag
        try:
            while True:
                self.received.append(self.socket.recv(65536).decode())
        except BlockingIOError:
            return self.received

    def wait_for(self, wanted: str, seconds: float = 20) -> None:
        """Block until a datagram holding the line *wanted* arrives."""
        self.socket.setblocking(True)  # noqa: FBT003 - the socket API's own flag
        self.socket.settimeout(seconds)
        while not any(wanted in message.splitlines() for message in self.received):
            self.received.append(self.socket.recv(65536).decode())


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    """A notify socket on a path, named by NOTIFY_SOCKET; no watchdog unless a test sets it."""
    path = tmp_path / "notify"
    manager = Manager(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield manager
    manager.socket.close()


def lines(messages: list[str]) -> list[str]:
    """Every line of every datagram."""
    return [line for message in messages for line in message.splitlines()]


async def serve() -> None:
    """A player that runs until stopped."""
    await trio.sleep_forever()


async def play_for(conductor: orchestra.Conductor, seconds: float, manager: Manager) -> None:
    """Run *conductor* under the runner for *seconds*, then stop it and wait."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(manager.collect)
        async with trio.open_nursery() as runner:
            runner.start_soon(orchestra.play_until_signal, conductor)
            await trio.sleep(seconds)
            conductor.stop("deploy")
        nursery.cancel_scope.cancel()


async def test_ready_watchdog_status_and_stopping(
    autojump_clock: trio.testing.MockClock, manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1 once started, WATCHDOG=1 every half of WATCHDOG_USEC, STOPPING=1 at the stop."""
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # 2 s: a ping every second
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    conductor = orchestra.Conductor({"db": serve, "web": serve}, name="app")
    await play_for(conductor, 10.5, manager)
    sent = lines(manager.drain())
    assert sent.count("READY=1") == 1
    assert sent.count("WATCHDOG=1") == 11  # at 0, 1, ..., 10
    ready = sent.index("READY=1")
    assert sent[ready + 1] == "STATUS=app running: 2 running"
    stopping = sent.index("STOPPING=1")
    assert sent[stopping + 1] == "STATUS=stopping: deploy"
    assert ready < stopping
    assert sent[-1] == "STATUS=app/db stopped"  # the last state change, as it happened


async def test_no_ready_when_a_stop_cut_the_start_short(
    autojump_clock: trio.testing.MockClock, manager: Manager
) -> None:
    """A stop during the start sends STOPPING=1, never READY=1; no WATCHDOG_USEC, no pings."""

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(5)
        task_status.started()

    conductor = orchestra.Conductor({"slow": slow})
    await play_for(conductor, 1, manager)
    sent = lines(manager.drain())
    assert "READY=1" not in sent
    assert "WATCHDOG=1" not in sent
    assert "STOPPING=1" in sent


async def test_a_failure_is_a_status_line_and_a_stop(
    autojump_clock: trio.testing.MockClock, manager: Manager
) -> None:
    """The stop that a failure causes is STOPPING=1, with the failure as its status."""

    async def broken() -> None:
        await trio.sleep(1)
        raise ValueError("bad config")

    conductor = orchestra.Conductor({"db": serve, "broken": broken}, name="app")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(manager.collect)
        with pytest.raises(orchestra.ConductorError):
            await orchestra.play_until_signal(conductor)
        nursery.cancel_scope.cancel()
    sent = lines(manager.drain())
    stopping = sent.index("STOPPING=1")
    assert sent[stopping + 1] == "STATUS=stopping: player 'app/broken' failed"


async def test_an_abstract_socket_is_supported(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``@name`` in NOTIFY_SOCKET is the abstract socket of that name."""
    name = f"trio-orchestra-test-{uuid.uuid4().hex}"
    manager = Manager("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        await play_for(orchestra.Conductor({"db": serve}), 1, manager)
        assert "READY=1" in lines(manager.drain())
    finally:
        manager.socket.close()


@pytest.mark.parametrize(
    ("environ", "address", "interval"),
    [
        ({}, None, None),
        ({"NOTIFY_SOCKET": ""}, None, None),
        ({"NOTIFY_SOCKET": "relative/path"}, None, None),
        ({"NOTIFY_SOCKET": "/run/notify"}, "/run/notify", None),
        ({"NOTIFY_SOCKET": "@name"}, "\0name", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "3000000"}, "/n", 1.5),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, "/n", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, "/n", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "soon"}, "/n", None),
    ],
)
def test_the_environment_is_read_as_sd_notify_does(
    environ: dict[str, str], address: str | None, interval: float | None
) -> None:
    """Unset or bad NOTIFY_SOCKET: nothing; WATCHDOG_PID of another process: no watchdog."""
    notifier = SystemdNotifier.from_environ(environ)
    if address is None:
        assert notifier is None
        return
    assert notifier is not None
    assert (notifier.address, notifier.watchdog_interval) == (address, interval)


async def test_a_failed_send_is_logged_once_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A manager that went away does not take the service with it."""
    notifier = SystemdNotifier("/nonexistent/notify", None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        notifier.send("READY=1")
        notifier.status("still here")
        await notifier.close()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1


SERVICE = textwrap.dedent(
    """
    import trio
    import trio_orchestra as orchestra


    async def serve():
        await trio.sleep_forever()


    conductor = orchestra.Conductor({"web": serve}, name="svc")
    """
)


def test_a_real_service_process_speaks_the_protocol(tmp_path: Path) -> None:
    """``python -m trio_orchestra run``: READY, watchdog pings, and STOPPING on SIGTERM."""
    (tmp_path / "service.py").write_text(SERVICE)
    manager = Manager(str(tmp_path / "notify"))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "100000",  # a ping every 50 ms
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "trio_orchestra", "run", "service:conductor"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        manager.wait_for("READY=1")
        manager.received.clear()
        for _ in range(3):
            manager.wait_for("WATCHDOG=1")
            manager.received.clear()
        child.send_signal(signal.SIGTERM)
        manager.wait_for("STOPPING=1")
        _, err = child.communicate(timeout=30)
        assert child.returncode == 0, err
        assert "STATUS=stopping: received SIGTERM" in lines(manager.received)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        manager.socket.close()


async def test_a_full_queue_is_waited_on_without_spinning_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """A manager that does not read: the sender sleeps (no CPU), then delivers all, in order."""
    manager = Manager(str(tmp_path / "notify"))
    notifier = SystemdNotifier(str(tmp_path / "notify"), None)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.run)
            for number in range(40):
                notifier.send(f"X_MESSAGE={number}")
            cpu = time.process_time()
            await trio.sleep(0.5)
            assert time.process_time() - cpu < 0.2  # blocked on the full queue, not spinning
            nursery.start_soon(manager.collect)
            with trio.fail_after(10):
                await notifier.close()
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        assert lines(manager.drain()) == [f"X_MESSAGE={number}" for number in range(40)]
    finally:
        manager.socket.close()


async def test_a_status_that_cannot_be_encoded_is_sent_replaced(
    autojump_clock: trio.testing.MockClock, manager: Manager
) -> None:
    """A player path with a lone surrogate does not take the notifier, or the tree, down."""
    conductor = orchestra.Conductor({"import-caf\udce9": serve}, name="app")
    await play_for(conductor, 1, manager)
    sent = lines(manager.drain())
    assert "READY=1" in sent
    assert "STATUS=app/import-caf? stopped" in sent


STUCK_MANAGER = textwrap.dedent(
    """
    import trio
    import trio_orchestra as orchestra


    async def polite():
        stop = orchestra.current_stop()
        print("READY", flush=True)
        await stop.wait()


    players = {f"p{n}": polite for n in range(30)}
    orchestra.run(orchestra.Conductor(players), force_exit_after=0.2)
    """
)


def test_force_exit_after_ends_with_the_tree_even_when_systemd_is_slow(tmp_path: Path) -> None:
    """A clean stop exits 0, though the last notifications wait for a manager that never reads.

    The force_exit_after timer ends when the tree returns, not when systemd has been told.
    """
    (tmp_path / "service.py").write_text(STUCK_MANAGER)
    manager = Manager(str(tmp_path / "notify"))
    # Pings every 10 ms fill the manager's queue (a few datagrams) long before the stop.
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "20000"}
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(tmp_path / "service.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if "READY" in line:
                break
        time.sleep(0.3)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        manager.socket.close()
