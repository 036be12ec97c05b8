"""``every``: a fixed beat from tick start to tick start, skipped beats, and a graceful stop."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra.testing import assert_failures, background

from .conftest import Journal


def ticker(journal: Journal, durations: list[float]) -> orchestra.PlayerSpec:
    """A tick that records its start and end and lasts the next of *durations* (then 0)."""

    async def tick(name: str) -> None:
        journal(f"{name} start")
        await trio.sleep(durations.pop(0) if durations else 0)
        journal(f"{name} end")

    return orchestra.PlayerSpec(orchestra.every(1, tick, "tick"))


def starts(journal: Journal) -> list[float]:
    """The times at which ticks started."""
    return [when for when, what in journal.entries if what == "tick start"]


async def test_ticks_are_spaced_from_start_to_start(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The first tick runs at once; a tick's own duration does not make the beat drift."""
    conductor = orchestra.Conductor({"tick": ticker(journal, [0.25] * 10)})
    async with background(conductor) as run:
        await trio.sleep(3.5)
        assert await run.stop() is None
        assert trio.current_time() == 3.5  # between ticks: it returned at once
    assert starts(journal) == [0, 1, 2, 3]


async def test_an_overrun_skips_the_missed_beats(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A tick that ends at 2.5 is followed by the beat at 3, not a burst at 1, 2 and 3."""
    conductor = orchestra.Conductor({"tick": ticker(journal, [2.5, 0.1, 0.1])})
    async with background(conductor) as run:
        await trio.sleep(4.5)
        await run.stop()
    assert starts(journal) == [0, 3, 4]


async def test_a_tick_ending_on_a_beat_is_followed_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A tick that lasts exactly one interval is followed by the next one, none skipped."""
    conductor = orchestra.Conductor({"tick": ticker(journal, [1, 1, 1])})
    async with background(conductor) as run:
        await trio.sleep(2.5)
        await run.stop()
    assert starts(journal) == [0, 1, 2]


async def test_a_stop_waits_for_the_tick_in_progress_and_starts_no_other(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Stopped at 0.5 in a tick that lasts 2 s, it finishes that tick at 2 and returns."""
    conductor = orchestra.Conductor({"tick": ticker(journal, [2, 2])}, grace=5)
    async with background(conductor) as run:
        await trio.sleep(0.5)
        assert await run.stop() is None
        assert trio.current_time() == 2
    assert journal.events == ["tick start", "tick end"]


async def test_the_hard_phase_cancels_a_tick_mid_way(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A tick longer than the grace is cancelled at the deadline: the stop ends at 1.5."""
    conductor = orchestra.Conductor({"tick": ticker(journal, [10])}, grace=1)
    async with background(conductor) as run:
        await trio.sleep(0.5)
        assert await run.stop() is None
        assert trio.current_time() == 1.5
    assert journal.events == ["tick start"]


async def test_a_failing_tick_fails_the_player_and_a_restart_starts_a_new_beat(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The error is the player's; with ON_FAILURE the beat restarts after the backoff."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        journal(f"tick {ticks}")
        if ticks == 2:
            raise ValueError("bad tick")

    spec = orchestra.PlayerSpec(
        orchestra.every(1, tick),
        restart=orchestra.Restart.ON_FAILURE,
        backoff=orchestra.Backoff(initial=0.5, jitter=0),
    )
    conductor = orchestra.Conductor({"tick": spec}, name="app")
    async with background(conductor) as run:
        await trio.sleep(2.75)
        await run.stop()
    assert journal.entries == [(0, "tick 1"), (1, "tick 2"), (1.5, "tick 3"), (2.5, "tick 4")]

    failing = orchestra.Conductor({"tick": orchestra.every(1, tick)}, name="app")
    ticks = 1
    async with background(failing) as run:
        assert_failures(await run.wait_stopped(), {"app/tick": ValueError})


async def test_it_also_runs_under_a_plain_nursery(autojump_clock: trio.testing.MockClock) -> None:
    """Outside a conductor only cancellation stops it."""
    seen: list[float] = []

    async def tick() -> None:
        seen.append(trio.current_time())

    with trio.move_on_after(2.5):
        await orchestra.every(1, tick)()
    assert seen == [0, 1, 2]


async def noop() -> None:
    """Do nothing (a valid tick)."""


def sync_tick() -> None:
    """Not async: refused."""


@pytest.mark.parametrize(
    ("interval", "fn", "error", "words"),
    [
        (0, noop, ValueError, "more than zero"),
        (-1, noop, ValueError, "zero or more"),
        (math.nan, noop, ValueError, "zero or more"),
        (math.inf, noop, ValueError, "finite"),
        ("1", noop, TypeError, "must be a number of seconds, not str"),
        (True, noop, TypeError, "not bool"),
        (1, sync_tick, TypeError, "must be an async callable"),
        (1, 42, TypeError, "must be an async callable"),
    ],
)
def test_bad_arguments_are_refused_at_once(
    interval: object, fn: object, error: type[Exception], words: str
) -> None:
    """Each bad argument is one clear sentence, raised by every() itself."""
    with pytest.raises(error, match=words):
        orchestra.every(interval, fn)  # type: ignore[arg-type]
