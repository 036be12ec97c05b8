"""A blocked event loop named, and the tree dumped on SIGUSR1: in real processes (s. 11)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

import trio_orchestra as orchestra
from trio_orchestra._runner import Watching

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX signals", allow_module_level=True)

CHILD = textwrap.dedent(
    """
    import logging
    import sys
    import time

    import trio

    import trio_orchestra as orchestra

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    block = trio.Event()


    async def db():
        await trio.sleep_forever()


    async def blocker():
        print("READY", flush=True)
        await block.wait()
        time.sleep(1.5)  # the blocking call
        print("UNBLOCKED", flush=True)
        await trio.sleep_forever()


    async def trigger():
        await trio.sleep(0.5)
        block.set()
        await trio.sleep_forever()


    if __name__ == "__main__":
        players = {"db": db, "blocker": blocker}
        if sys.argv[1] == "blocked":
            players["trigger"] = trigger
        conductor = orchestra.Conductor(players, name="svc")
        blocked_after = 0.5 if sys.argv[1] == "blocked" else None
        orchestra.run(conductor, blocked_after=blocked_after)
    """
)


class Child:
    """The child process; its stderr is read line by line."""

    def __init__(self, script: Path, mode: str) -> None:
        """Start the script in *mode*."""
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, str(script), mode],
            cwd=script.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.err: list[str] = []

    def wait_out(self, text: str) -> None:
        """Read stdout until a line holds *text*."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if text in line:
                return
        msg = f"the child ended without printing {text!r}"
        raise AssertionError(msg)

    def wait_err(self, text: str) -> str:
        """Read stderr until a line holds *text*; return that line."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            if text in line:
                return line
        msg = f"the child ended without logging {text!r}: {self.err}"
        raise AssertionError(msg)

    def finish(self) -> tuple[int, str]:
        """SIGTERM, then wait; return the exit status and the rest of stderr."""
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, "".join(self.err) + err


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[[str], Child]]:
    """Start children of the script; kill any left running."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    started: list[Child] = []

    def start(mode: str) -> Child:
        started.append(Child(script, mode))
        return started[-1]

    yield start
    for each in started:
        if each.process.poll() is None:
            each.process.kill()
        each.process.communicate()


def test_blocked_after_names_the_player_and_the_blocking_line(
    child: Callable[[str], Child],
) -> None:
    """time.sleep(1.5) in a player, blocked_after=0.5: who, where, and then for how long."""
    run = child("blocked")
    run.wait_out("READY")
    first = run.wait_err("the event loop has been blocked")
    assert re.fullmatch(
        r"WARNING the event loop has been blocked for 0\.5 s by player svc/blocker, at"
        r" \S+child\.py:\d+ in blocker: time\.sleep\(1\.5\)  # the blocking call\n",
        first,
    )
    second = run.wait_err("the event loop runs again")
    match = re.fullmatch(
        r"WARNING the event loop runs again after about ([\d.]+) s blocked by player"
        r" svc/blocker\n",
        second,
    )
    assert match is not None
    assert 1.0 <= float(match.group(1)) < 3
    status, err = run.finish()
    assert status == 0
    assert err.count("the event loop has been blocked") == 1


def test_sigusr1_logs_the_tree_with_where_each_player_waits(
    child: Callable[[str], Child],
) -> None:
    """SIGUSR1: one WARNING with every player, its state and its frame; the run goes on."""
    run = child("dump")
    run.wait_out("READY")
    time.sleep(0.3)  # every player parked: a signal in a player's step shows it running
    run.process.send_signal(signal.SIGUSR1)
    run.wait_err("WARNING the tree, on SIGUSR1:")
    lines = [run.wait_err("") for _ in range(5)]
    assert lines[0] == "svc running, ready, stop budget 10 s\n"
    assert lines[1].startswith("  db       running")
    assert re.fullmatch(r"    \S+child\.py:\d+ in db\n", lines[2])
    assert lines[3].startswith("  blocker  running")
    assert re.fullmatch(r"    \S+child\.py:\d+ in blocker\n", lines[4])
    status, _ = run.finish()
    assert status == 0


def test_watching_options_are_checked_before_anything_runs() -> None:
    """A zero blocked_after, a dump signal that is a stop signal: one sentence each."""
    with pytest.raises(ValueError, match=r"^the runner: blocked_after must be more than 0"):
        Watching.checked(0, None, (signal.SIGTERM,))
    with pytest.raises(ValueError, match=r"^the runner: blocked_after must be zero or more"):
        Watching.checked(-1, None, (signal.SIGTERM,))
    with pytest.raises(
        ValueError,
        match=r"^the runner: dump_signal SIGTERM is also a stop signal; pick another one,"
        r" or dump_signal=None$",
    ):
        Watching.checked(None, signal.SIGTERM, (signal.SIGTERM,))
    with pytest.raises(ValueError, match=r"^the runner: dump_signal 12345 is not a signal$"):
        Watching.checked(None, 12345, (signal.SIGTERM,))


async def test_play_until_signal_refuses_a_bad_option_before_the_tree_starts() -> None:
    """Nothing runs."""
    started = False

    async def player() -> None:
        nonlocal started
        started = True

    with pytest.raises(ValueError, match=r"blocked_after must be more than 0"):
        await orchestra.play_until_signal(player, blocked_after=0)
    assert not started


def test_the_dump_handler_is_restored_after_the_run() -> None:
    """Once the root has returned, SIGUSR1 has its previous handler again."""

    async def done() -> None:
        await trio.lowlevel.checkpoint()

    before = signal.getsignal(signal.SIGUSR1)
    trio.run(orchestra.play_until_signal, done)
    assert signal.getsignal(signal.SIGUSR1) is before
