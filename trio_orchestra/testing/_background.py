"""Run a conductor in the background of a test, and look at how it ended.

Why this module: in a test, a conductor's failure is the thing under test, so it must not
cancel the test body (as :func:`open_conductor` does) nor come out wrapped in a helper nursery's
group. :func:`background` starts the conductor, waits until it is ready, lets the body steer it,
and hands over its outcome as a value.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from typing import final

import trio

from trio_orchestra._block import StartTracker
from trio_orchestra._conductor import Conductor
from trio_orchestra._errors import ConductorError

__all__ = ["BackgroundRun", "assert_failures", "background"]


@final
class BackgroundRun:
    """A conductor running in the background of a test (see :func:`background`).

    Example::

        async with background(conductor) as run:
            run.conductor.stop("test over")
            error = await run.wait_stopped()
        assert error is None
    """

    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor
        self._done = trio.Event()
        self._error: BaseException | None = None
        self._collected = False

    @property
    def running(self) -> bool:
        """Whether the conductor is still running."""
        return not self._done.is_set()

    async def wait_stopped(self) -> ConductorError | None:
        """Wait for the conductor to return; give its ``ConductorError`` (or ``None``)."""
        await self._done.wait()
        self._collected = True
        error = self._error
        if error is None or isinstance(error, ConductorError):
            return error
        raise error  # not a failure of the tree: KeyboardInterrupt, a bug, ...

    async def stop(self, reason: str | None = "stopped by the test") -> ConductorError | None:
        """Request a graceful stop and wait for it; give the error, as :meth:`wait_stopped`."""
        self.conductor.stop(reason)
        return await self.wait_stopped()


async def supervise(run: BackgroundRun, *, task_status: trio.TaskStatus[Conductor]) -> None:
    """Run *run*'s conductor; after its start, its outcome is kept as a value, not raised."""
    status = StartTracker(task_status)
    try:
        await run.conductor(task_status=status)
    except BaseException as exc:
        if not status.called:
            raise  # a start failure: nursery.start raises it in the test
        run._error = exc
    finally:
        run._done.set()


@asynccontextmanager
async def background(conductor: Conductor) -> AsyncGenerator[BackgroundRun, None]:
    """Start *conductor* in the background; the block runs once it is ready.

    A failure of the tree does not cancel the block: read it with
    :meth:`BackgroundRun.wait_stopped`. When the block exits, the conductor is stopped (if it
    still runs) and awaited; an error nobody read is raised then, as the ``ConductorError``
    itself. A failure to start is raised when entering the block.

    Example::

        async with background(orchestra.Conductor({"db": db})) as run:
            assert run.conductor.status().children["db"].state is PlayerState.RUNNING
    """
    run = BackgroundRun(conductor)
    start_error: BaseException | None = None

    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(supervise, run)
        except BaseException as exc:  # noqa: BLE001 - raised below, outside the group
            start_error = exc
        else:
            try:
                yield run
            finally:
                conductor.stop("the test's background block exited")
    if start_error is not None:
        raise start_error
    if run._error is not None and not run._collected:
        raise run._error


def assert_failures(
    error: BaseException | None, expected: Mapping[str, type[BaseException]]
) -> None:
    """Assert that *error* is a ``ConductorError`` failing exactly at *expected*'s paths.

    Each path's leaf must be an instance of the type given for it.

    Example::

        assert_failures(await run.wait_stopped(), {"app/db/pool": ConnectionError})
    """
    if not isinstance(error, ConductorError):
        msg = f"expected a ConductorError failing at {sorted(expected)}, got {error!r}"
        raise AssertionError(msg)  # noqa: TRY004 - an assertion helper fails with AssertionError
    failures = error.failures
    if set(failures) != set(expected):
        msg = f"expected failures at {sorted(expected)}, got {sorted(failures)}"
        raise AssertionError(msg)
    for path, kind in expected.items():
        leaf = failures[path]
        if not isinstance(leaf, kind):
            msg = f"expected {kind.__name__} at {path!r}, got {leaf!r}"
            raise AssertionError(msg)  # noqa: TRY004 - an assertion helper fails with AssertionError
