"""The tutorial's programs (docs/examples/tutorial_*.py) run, and do what the tutorial says.

Each step is imported as a module and its main coroutine is driven on Trio's mock clock, so the
printed lines, and when they come, are exact: they are compared with the transcripts that the
tutorial shows (docs/examples/tutorial_*_output.txt). The programs that handle signals are
also run as real processes and stopped with a real SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra

from .test_examples import EXAMPLES, load

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX signals", allow_module_level=True)

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
ANSWER = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"


def transcript(name: str) -> list[str]:
    """The lines of docs/examples/<name>, a transcript shown in the tutorial."""
    return (EXAMPLES / name).read_text(encoding="utf-8").splitlines()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on, so that tests never collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Output:
    """What the program printed so far, read from pytest's capsys as it comes."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Start with nothing read."""
        self._capsys = capsys
        self.lines: list[str] = []

    def read(self) -> list[str]:
        """Every line printed so far."""
        self.lines += self._capsys.readouterr().out.splitlines()
        return self.lines

    async def wait_for(self, text: str) -> None:
        """Let the other tasks run until a line holds *text*, without moving the mock clock.

        While a task waits in ``wait_all_tasks_blocked``, the autojump clock does not jump,
        so a request in flight over the loopback gets through at this very instant.
        """
        while not any(text in line for line in self.read()):
            await trio.testing.wait_all_tasks_blocked()


async def fetch(port: int, answers: list[bytes]) -> None:
    """Send one HTTP request and append the whole answer (empty if it was cut) to *answers*."""
    answer = b""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(REQUEST)
        try:
            while data := await stream.receive_some():
                answer += data
        except trio.BrokenResourceError:  # reset by the server: the answer was cut
            pass
    answers.append(answer)


async def request_in_flight_then_sigterm(
    main: Callable[[], Awaitable[object]], port: int, output: Output
) -> list[bytes]:
    """Run *main* with the tutorial's scenario: a request at 1.2 s, in flight at 1.5 s: SIGTERM."""
    answers: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(main)
        await trio.sleep(1.2)
        nursery.start_soon(fetch, port, answers)
        await output.wait_for("web: answering")
        await trio.sleep(0.3)
        signal.raise_signal(signal.SIGTERM)
    return answers


async def test_step_1_the_worker_works_one_job_after_another(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """tutorial_1: the worker starts a job every second, until it is cancelled."""
    example = load("tutorial_1_worker")
    with trio.move_on_after(2.5):
        await example.main()
    assert capsys.readouterr().out.splitlines() == [
        "jobs: working on job 1",
        "jobs: finished job 1",
        "jobs: working on job 2",
        "jobs: finished job 2",
        "jobs: working on job 3",
    ]


async def test_step_2_the_server_answers_http(autojump_clock: trio.testing.MockClock) -> None:
    """tutorial_2: the server answers an HTTP request with ``hello`` after 0.5 s of work."""
    example = load("tutorial_2_server")
    port = free_port()
    answers: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(example.main, port)
        await trio.testing.wait_all_tasks_blocked()  # listening
        await fetch(port, answers)
        assert trio.current_time() == 0.5
        nursery.cancel_scope.cancel()
    assert answers == [ANSWER]


async def test_step_3_a_signal_cancels_everything_at_once(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """tutorial_3: SIGTERM cuts the job in hand and the request in flight, then exits cleanly."""
    example = load("tutorial_3_signals")
    port = free_port()
    output = Output(capsys)
    answers = await request_in_flight_then_sigterm(lambda: example.main(port), port, output)
    assert answers == [b""]
    assert trio.current_time() == 1.5
    assert output.read() == transcript("tutorial_3_output.txt")


async def test_step_4_one_failure_ends_everything(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """tutorial_4: one worker's error cancels every other task mid-job and ends the program."""
    example = load("tutorial_4_naive")
    with pytest.RaisesGroup(
        pytest.RaisesExc(ConnectionError, match=r"^reports: the database went away$")
    ):
        await example.main(free_port())
    assert trio.current_time() == 2.5
    # Tasks woken at the same instant print in an order that Trio leaves unspecified.
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(
        transcript("tutorial_4_output.txt")
    )


async def test_step_5_by_hand_stops_in_reverse_order_with_a_soft_phase(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """tutorial_5: on SIGTERM the server answers its request in flight, then the job is finished."""
    example = load("tutorial_5_by_hand")
    port = free_port()
    output = Output(capsys)
    answers = await request_in_flight_then_sigterm(lambda: example.main(port), port, output)
    assert answers == [ANSWER]
    assert trio.current_time() == 2.0  # the end of the job in hand
    assert output.read() == [
        "jobs: working on job 1",
        "jobs: finished job 1",
        "jobs: working on job 2",
        "web: answering GET / HTTP/1.1",
        "received SIGTERM",
        "web: stopped accepting, finishing the requests in flight",
        "web: stopped",
        "jobs: finished job 2",
        "jobs: stopped",
    ]


async def test_step_6_the_conductor_does_the_same_in_a_few_lines(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """tutorial_6: under play_until_signal, SIGTERM stops web (request answered), then jobs."""
    example = load("tutorial_6_conductor")
    port = free_port()
    output = Output(capsys)
    conductor: orchestra.Conductor = example.build(port)
    answers = await request_in_flight_then_sigterm(
        lambda: orchestra.play_until_signal(conductor), port, output
    )
    assert answers == [ANSWER]
    assert trio.current_time() == 2.0
    assert output.read() == transcript("tutorial_6_output.txt")
    status = conductor.status()
    assert [child.state for child in status.children.values()] == [
        orchestra.PlayerState.DONE,
        orchestra.PlayerState.DONE,
    ]


async def test_step_6_starts_the_worker_before_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """tutorial_6: "jobs" is running before "web" starts, and a stop stops "web" first."""
    example = load("tutorial_6_conductor")
    conductor: orchestra.Conductor = example.build(free_port())
    seen: list[tuple[str, str]] = []

    def record(event: orchestra.events.Event) -> None:
        if isinstance(
            event, (orchestra.events.Started, orchestra.events.Ready, orchestra.events.Stopped)
        ):
            seen.append((type(event).__name__, event.path))

    conductor = orchestra.Conductor(conductor.players, name="tutorial", on_event=record)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        conductor.stop("the test is over")
    assert seen == [
        ("Started", "tutorial/jobs"),
        ("Ready", "tutorial/jobs"),
        ("Started", "tutorial/web"),
        ("Ready", "tutorial/web"),
        ("Stopped", "tutorial/web"),
        ("Stopped", "tutorial/jobs"),
    ]


def run_until_sigterm(name: str) -> tuple[int, list[str], bytes]:
    """Run docs/examples/<name>.py; SIGTERM it while a request is in flight.

    Returns its exit status, every line it printed (stdout and stderr) and the HTTP answer.
    """
    port = free_port()
    with subprocess.Popen(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / f"{name}.py"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while True:  # wait until it listens
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the example never listened"
                time.sleep(0.05)
        lines: list[str] = []
        with client:
            client.sendall(REQUEST)
            for line in process.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("web: answering"):
                    break
            process.send_signal(signal.SIGTERM)
            answer = b""
            try:
                while data := client.recv(4096):
                    answer += data
            except ConnectionResetError:  # the answer was cut
                pass
        lines += process.stdout.read().splitlines()
        status = process.wait(timeout=30)
    return status, lines, answer


def test_step_3_in_a_real_process() -> None:
    """tutorial_3 as a process: SIGTERM cuts the request and the job, and exits with 0."""
    status, lines, answer = run_until_sigterm("tutorial_3_signals")
    assert status == 0, lines
    assert answer == b""
    job = lines[-2].removeprefix("jobs: cancelled in the middle of job ")
    assert lines[-3:] == [
        "received SIGTERM: cancelling everything",
        f"jobs: cancelled in the middle of job {job}",
        "bye",
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [("tutorial_5_by_hand", ""), ("tutorial_6_conductor", " (received SIGTERM)")],
)
def test_steps_5_and_6_in_a_real_process(name: str, reason: str) -> None:
    """tutorial_5 and _6 as processes: SIGTERM answers the request, stops in order, exits 0."""
    status, lines, answer = run_until_sigterm(name)
    assert status == 0, lines
    assert answer == ANSWER
    job = lines[-2].removeprefix("jobs: finished job ")
    assert f"jobs: working on job {job}" in lines
    assert lines[-4:] == [
        f"web: stopped accepting{reason}, finishing the requests in flight",
        "web: stopped",
        f"jobs: finished job {job}",
        f"jobs: stopped{reason}",
    ]
