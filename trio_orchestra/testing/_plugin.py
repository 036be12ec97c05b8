"""The pytest plugin (entry point ``pytest11``): the testing kit as fixtures.

Why this module: with pytest-trio, a conductor in the background of a test is one fixture
away, and it is always stopped, and its unread failure raised, when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import pytest
import trio

from trio_orchestra._conductor import Conductor

from ._background import BackgroundRun, supervise
from ._scripted import ScriptedPlayer

__all__ = ["scripted_player", "start_conductor"]


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
