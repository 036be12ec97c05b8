"""The pytest plugin (entry point ``pytest11``): the testing kit as fixtures.

Why this module: with pytest-trio, a conductor in the background of a test is one fixture
away, and it is always stopped, and its unread failure raised, when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import pytest
import trio

from trio_orchestra._conductor import Conductor
from trio_orchestra._stop import supervisors

from ._background import BackgroundRun, supervise
from ._scripted import ScriptedPlayer

__all__ = ["no_leaked_players", "scripted_player", "start_conductor"]


class _PlayerTasks(trio.abc.Instrument):
    """Keeps the tasks that conductors spawn (their players) while they are alive."""

    def __init__(self) -> None:
        self.alive: dict[trio.lowlevel.Task, str] = {}

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        nursery = task.parent_nursery
        if nursery is not None:
            conductor = supervisors.get(nursery.parent_task)
            if conductor is not None:
                self.alive[task] = f"{getattr(conductor, 'path', '?')}/{task.name}"

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.pop(task, None)


@pytest.fixture
async def no_leaked_players() -> AsyncGenerator[None, None]:
    """Fail the test if a player's task is still alive when it ends (use it with autouse).

    Structured concurrency makes a leak impossible once a conductor has returned; this
    catches a conductor left running past the end of a test, by a fixture or a task.
    """
    tracker = _PlayerTasks()
    trio.lowlevel.add_instrument(tracker)
    try:
        yield
    finally:
        trio.lowlevel.remove_instrument(tracker)
    leaked = sorted(tracker.alive.values())
    if leaked:
        pytest.fail(f"players still running when the test ended: {', '.join(leaked)}")


@pytest.fixture
def scripted_player() -> Callable[..., ScriptedPlayer]:
    """Make scripted players: ``scripted_player(ready_after=1)`` is a ``ScriptedPlayer``."""
    return ScriptedPlayer


@pytest.fixture
async def start_conductor(
    nursery: trio.Nursery,
) -> AsyncGenerator[Callable[[Conductor], Awaitable[BackgroundRun]], None]:
    """Start conductors in the background of the test; each call returns a ``BackgroundRun``.

    Use it as ``run = await start_conductor(conductor)``.
    Returns once the conductor is ready (a start failure raises there). At the end of the
    test each conductor still running is stopped, and a failure the test did not read with
    :meth:`~trio_orchestra.testing.BackgroundRun.wait_stopped` is raised.
    """
    runs: list[BackgroundRun] = []

    async def start(conductor: Conductor) -> BackgroundRun:
        run = BackgroundRun(conductor)
        await nursery.start(supervise, run)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.conductor.stop("the test ended")
        await run._done.wait()
        if run._error is not None and not run._collected:
            raise run._error
