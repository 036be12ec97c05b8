"""``open_conductor``: players around a block, Trio's long-requested "service nursery".

Why this module: the block form must tell three outcomes apart (a player failed, the block
raised, the outer scope was cancelled) and raise each the way a Trio user expects: a failure
cancels the block and comes out as the :class:`ConductorError` itself, not wrapped in the
helper nursery's group; the block's own exception comes out as it is.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from random import Random
from typing import Literal, final

import trio

from ._conductor import Conductor
from ._events import Event
from ._spec import PlayerSpec

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

__all__ = ["StartTracker", "open_conductor"]


@asynccontextmanager
async def open_conductor(  # noqa: PLR0913 - the Conductor's options
    players: Mapping[str, Callable[..., Awaitable[object]] | PlayerSpec] | None = None,
    *,
    name: str = "conductor",
    grace: float = 5.0,
    stop_order: Literal["sequential", "parallel"] = "sequential",
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = "one_for_one",
    max_restarts: int = 5,
    period: float = 60.0,
    random: Random | None = None,
    on_event: Callable[[Event], object] | None = None,
) -> AsyncGenerator[Conductor, None]:
    """Run players around a block: started (ready) before it, stopped gracefully after it.

    If a player fails while the block runs, the block is cancelled and the failure is raised
    as a :class:`ConductorError`. An exception from the block stops the players gracefully
    and propagates as it is; if the players failed too, both are raised together in a
    :class:`BaseExceptionGroup`. It takes the same arguments as :class:`Conductor`.

    Example::

        async with orchestra.open_conductor({"db": db_pool, "cache": cache}) as conductor:
            await serve_requests()
    """
    conductor = Conductor(
        players,
        name=name,
        grace=grace,
        stop_order=stop_order,
        strategy=strategy,
        max_restarts=max_restarts,
        period=period,
        random=random,
        on_event=on_event,
    )
    block = _Block(conductor)
    start_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(block.supervise)
        except BaseException as exc:  # noqa: BLE001 - raised below, outside the nursery's group
            start_error = exc
        else:
            try:
                with block.body:
                    yield conductor
            except BaseException as exc:  # noqa: BLE001 - raised by raise_outcome(), after the stop
                block.body_error = exc
                reason = f"the open_conductor block raised {type(exc).__name__}"
                conductor.stop(reason, force=not isinstance(exc, Exception))
            else:
                conductor.stop("the open_conductor block exited")
    if start_error is not None:
        raise start_error
    block.raise_outcome()


@final
class _Block:
    """The state of one ``open_conductor`` block: the body's scope and both outcomes."""

    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor
        self.body = trio.CancelScope()
        self.body_error: BaseException | None = None
        self.failure: BaseException | None = None

    async def supervise(self, *, task_status: trio.TaskStatus[Conductor]) -> None:
        """Run the conductor; a failure after the start cancels the body instead of the nursery."""
        status = StartTracker(task_status)
        try:
            await self.conductor(task_status=status)
        except BaseException as exc:
            if not status.called or isinstance(exc, trio.Cancelled):
                raise  # a start failure (nursery.start raises it) or the outer cancellation
            self.failure = exc
            self.body.cancel("a player of the conductor failed")

    def raise_outcome(self) -> None:
        """Raise what the block should: the failure, the body's error, or both together."""
        failure, body_error = self.failure, self.body_error
        if body_error is not None and not isinstance(body_error, Exception):
            raise body_error  # KeyboardInterrupt, SystemExit, the outer cancellation
        if failure is not None and body_error is not None:
            msg = "the open_conductor block and its players failed"
            raise BaseExceptionGroup(msg, [body_error, failure])
        if failure is not None:
            raise failure
        if body_error is not None:
            raise body_error


@final
class StartTracker:
    """A conductor's ``task_status`` that forwards ``started()`` and remembers it was called.

    Lets a wrapper tell a failure to start (raised through ``nursery.start``) from a failure
    after the start (handled as its own outcome).
    """

    def __init__(self, inner: trio.TaskStatus[Conductor]) -> None:
        self.inner = inner
        self.called = False

    def started(self, value: Conductor | None = None) -> None:
        self.called = True
        if value is not None:
            self.inner.started(value)
