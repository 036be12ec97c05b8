"""Shared helpers: a journal of what players did, and when, on Trio's clock."""

from __future__ import annotations

import inspect
import sys

import pytest
import trio

import trio_orchestra as orchestra

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


class Journal:
    """Records ``(trio time, event)`` pairs, in order."""

    def __init__(self) -> None:
        """Start empty."""
        self.entries: list[tuple[float, str]] = []

    def __call__(self, event: str) -> None:
        """Record *event* at the current Trio time."""
        self.entries.append((trio.current_time(), event))

    @property
    def events(self) -> list[str]:
        """The events, without their times."""
        return [event for _, event in self.entries]

    def time_of(self, event: str) -> float:
        """The time of the first *event*."""
        for when, what in self.entries:
            if what == event:
                return when
        msg = f"no {event!r} in {self.entries}"
        raise AssertionError(msg)


class StepCounter(trio.abc.Instrument):
    """Counts task steps while installed: an idle tree takes none."""

    def __init__(self) -> None:
        """Start at zero."""
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        """Count one step of any task."""
        del task
        self.steps += 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Check every async test of the project for player tasks left running."""
    for item in items:
        function = getattr(item, "function", None)
        if inspect.iscoroutinefunction(function) and isinstance(item, pytest.Function):
            item.fixturenames.append("no_leaked_players")


@pytest.fixture
def journal() -> Journal:
    """A fresh :class:`Journal` for each test."""
    return Journal()


async def run_then_stop(
    conductor: orchestra.Conductor, *, after: float = 0.0, reason: str | None = None
) -> None:
    """Run *conductor* until it is started, stop it *after* seconds, and wait for it.

    A ``ConductorError`` comes out as it is, not inside the helper nursery's group.
    """
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(after)
            conductor.stop(reason)
    except ExceptionGroup as group:
        [inner] = group.exceptions
        if isinstance(inner, orchestra.ConductorError):
            raise inner from None
        raise
