"""Liveness: heartbeats, a hung player found at its exact time, and what follows (s. 11)."""

from __future__ import annotations

import logging
import math
from functools import partial

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra import events
from trio_orchestra.testing import assert_failures, background

from .conftest import Journal


async def beating(  # noqa: PLR0913 - a test player's knobs
    journal: Journal,
    name: str,
    beats: int,
    every: float = 1.0,
    *,
    ready: float = 0.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Ready after *ready* s; beat *beats* times, *every* s apart; then hang, beating no more."""
    journal(f"{name} begins")
    await trio.sleep(ready)
    task_status.started()
    for _ in range(beats):
        orchestra.heartbeat()
        await trio.sleep(every)
    journal(f"{name} hangs")
    try:
        await trio.sleep_forever()  # a network call with no timeout
    finally:
        journal(f"{name} gone")


def hung_times(found: list[events.Event]) -> list[tuple[str, float, float]]:
    """(path, time, silence) of each Hung event."""
    return [(e.path, e.time, e.silent) for e in found if isinstance(e, events.Hung)]


# -- finding a hung player ------------------------------------------------------------------


async def test_a_player_that_never_beats_is_hung_exactly_its_liveness_after_its_start(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Started at 2, liveness 10, no heartbeat: hung at 12, stopped, and the tree fails."""
    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {"consumer": orchestra.PlayerSpec(partial(beating, journal, "c", 0, ready=2), liveness=10)},
        name="app",
        on_event=seen.append,
    )
    async with background(conductor) as run:
        error = await run.wait_stopped()
    assert_failures(error, {"app/consumer": orchestra.PlayerHung})
    assert error is not None
    leaf = error.failures["app/consumer"]
    assert str(leaf) == "player 'app/consumer' sent no heartbeat within its liveness of 10 s"
    assert (leaf.path, leaf.liveness) == ("app/consumer", 10)  # type: ignore[attr-defined]
    assert hung_times(seen) == [("app/consumer", 12, 10)]
    assert journal.time_of("c gone") == 12  # not subscribed: cancelled at once


async def test_a_player_beating_in_time_is_never_hung(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Beating every 9.9 s against a liveness of 10 for 1000 s: nothing is found."""
    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(partial(beating, journal, "c", 101, 9.9), liveness=10)},
        on_event=seen.append,
    )
    async with background(conductor) as run:
        await trio.sleep(999)
        assert hung_times(seen) == []
        assert run.conductor.status().children["c"].state is orchestra.PlayerState.RUNNING
        assert await run.stop() is None


async def test_a_player_that_stops_beating_is_found_within_one_check_period(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Beats at 0..5, silent from 5: the check at 10 finds 5 s of silence, the one at 20 it hung.

    One timer for the conductor, at most once per liveness: found between S and 2S of silence.
    """
    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(partial(beating, journal, "c", 6), liveness=10)},
        name="app",
        on_event=seen.append,
    )
    async with background(conductor) as run:
        error = await run.wait_stopped()
    assert_failures(error, {"app/c": orchestra.PlayerHung})
    assert journal.time_of("c hangs") == 6
    assert hung_times(seen) == [("app/c", 20, 15)]


async def test_the_last_heartbeat_is_in_the_status(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """``last_heartbeat`` is the Trio time of the last beat; ``None`` before the first one."""
    conductor = orchestra.Conductor(
        {
            "c": orchestra.PlayerSpec(partial(beating, journal, "c", 4, 2.0), liveness=10),
            "plain": partial(beating, journal, "plain", 0),
        },
    )
    assert conductor.status().children["c"].last_heartbeat is None
    async with background(conductor) as run:
        await trio.sleep(5)
        node = run.conductor.status().children["c"]
        assert (node.liveness, node.last_heartbeat) == (10, 4)
        assert run.conductor.status().children["plain"].last_heartbeat is None
        assert run.conductor.status().children["plain"].liveness is None
        assert await run.stop() is None


async def test_a_heartbeat_from_a_task_the_player_spawned_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The player's worker task beats for it."""

    async def player() -> None:
        async def worker() -> None:
            while True:
                orchestra.heartbeat()
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)

    conductor = orchestra.Conductor({"p": orchestra.PlayerSpec(player, liveness=3)})
    async with background(conductor) as run:
        await trio.sleep(100.5)
        assert run.conductor.status().children["p"].last_heartbeat == 100
        assert await run.stop() is None


# -- what follows: restart, report, a stop ---------------------------------------------------


async def test_a_hung_player_under_on_failure_is_restarted_after_its_backoff(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Hung at 10 (soft phase: it returns at once), restarted at 11 (backoff 1), hung at 21."""
    seen: list[events.Event] = []

    async def subscribed() -> None:
        stop = orchestra.current_stop()
        journal("run")
        await stop.wait()
        journal(f"asked: {stop.reason}")

    conductor = orchestra.Conductor(
        {
            "c": orchestra.PlayerSpec(
                subscribed,
                liveness=10,
                restart="on_failure",
                backoff=orchestra.Backoff(initial=1, factor=2, maximum=10, jitter=0),
            )
        },
        name="app",
        on_event=seen.append,
    )
    async with background(conductor) as run:
        await trio.sleep(25)
        node = run.conductor.status().children["c"]
        assert node.restarts == 2
        assert isinstance(node.last_error, orchestra.PlayerHung)
        assert await run.stop() is None
    assert journal.entries[:4] == [
        (0, "run"),
        (10, "asked: it is hung: no heartbeat for 10 s"),
        (11, "run"),
        (21, "asked: it is hung: no heartbeat for 10 s"),
    ]
    failed = [(e.time, e.handled) for e in seen if isinstance(e, events.Failed)]
    assert failed == [(10, True), (21, True)]
    assert [e.time for e in seen if isinstance(e, events.Hung)] == [10, 21]


async def test_a_hung_player_that_ignores_its_soft_stop_is_cancelled_at_its_grace(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Subscribed but stuck: hung at 10, soft phase of its grace (3 s), hard-cancelled at 13."""

    async def stuck() -> None:
        orchestra.current_stop()
        try:
            await trio.sleep_forever()
        finally:
            journal("gone")

    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(stuck, liveness=10, grace=3)}, name="app"
    )
    async with background(conductor) as run:
        error = await run.wait_stopped()
    assert_failures(error, {"app/c": orchestra.PlayerHung})
    assert journal.entries == [(13, "gone")]


async def test_a_hung_player_counts_toward_the_restart_intensity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """max_restarts=2: hung at 5, 10 and 15 (no backoff); the third exceeds the limit."""

    async def silent() -> None:
        await trio.sleep_forever()

    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(silent, liveness=5, restart="always", backoff=None)},
        name="app",
        max_restarts=2,
    )
    async with background(conductor) as run:
        error = await run.wait_stopped()
        assert trio.current_time() == 15
    assert_failures(error, {"app/c": orchestra.PlayerHung})
    assert error is not None
    notes = getattr(error.failures["app/c"], "__notes__", [])
    assert "the restart limit was exceeded" in "".join(notes)


async def test_what_a_hung_player_raises_while_stopped_is_kept_in_its_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The leaf is PlayerHung; the exception raised in its cleanup is its context and a note."""

    async def breaks_on_stop() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise OSError("socket already closed")

    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(breaks_on_stop, liveness=5)}, name="app"
    )
    async with background(conductor) as run:
        error = await run.wait_stopped()
    assert error is not None
    leaf = error.failures["app/c"]
    assert isinstance(leaf, orchestra.PlayerHung)
    assert isinstance(leaf.__context__, OSError)
    notes = getattr(leaf, "__notes__", [])
    assert notes[0] == "while it was being stopped it raised OSError: socket already closed"


async def test_a_player_hung_during_the_stop_is_stopped_in_its_turn_and_reported(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A player found hung while the tree stops is stopped in its turn, and reported.

    db beats until 3; the stop at 2 waits for web (30 s to go); db is found hung at 14 and
    stopped when web is gone at 32.
    """
    seen: list[events.Event] = []

    async def web() -> None:
        stop = orchestra.current_stop()
        await stop.wait()
        journal("web drains")
        await trio.sleep(30)
        journal("web gone")

    conductor = orchestra.Conductor(
        {
            "db": orchestra.PlayerSpec(partial(beating, journal, "db", 4), liveness=7),
            "web": orchestra.PlayerSpec(web, grace=60),
        },
        name="app",
        on_event=seen.append,
    )
    async with background(conductor) as run:
        await trio.sleep(2)
        error = await run.stop("deploy")
    assert_failures(error, {"app/db": orchestra.PlayerHung})
    assert hung_times(seen) == [("app/db", 14, 11)]
    assert journal.time_of("db gone") == 32


async def test_a_player_stopping_is_not_hung(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A player in its soft phase may stop beating: its grace bounds it, not its liveness."""

    async def slow_to_stop() -> None:
        stop = orchestra.current_stop()
        while not stop.requested:
            orchestra.heartbeat()
            await trio.sleep(1)
        await trio.sleep(20)
        journal("gone")

    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(slow_to_stop, liveness=5, grace=30)}, on_event=seen.append
    )
    async with background(conductor) as run:
        await trio.sleep(3.5)
        assert await run.stop() is None
    assert hung_times(seen) == []
    assert journal.entries == [(24, "gone")]  # its sleep(1) from 3 saw the stop at 4


async def test_the_hung_warning_names_the_player_and_the_line_it_is_stuck_at(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The warning says path, silence, liveness and file:line in the player's function."""
    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(partial(beating, journal, "c", 0), liveness=4)}, name="app"
    )
    with caplog.at_level(logging.WARNING, logger="trio_orchestra"):
        async with background(conductor) as run:
            await run.wait_stopped()
    record = next(r for r in caplog.records if "is hung" in r.getMessage())
    message = record.getMessage()
    assert message.startswith(
        "player app/c is hung: no heartbeat for 4 s (its liveness is 4 s); stuck at:\n"
    )
    assert "test_liveness.py:" in message
    assert "in beating" in message
    assert record.path == "app/c"  # type: ignore[attr-defined]


# -- the timer ------------------------------------------------------------------------------


async def test_one_timer_for_many_players_wakes_at_most_once_per_liveness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """100 players beating every second, liveness 10: about one wake-up every 10 s."""
    wakes: list[float] = []

    async def steady() -> None:
        while True:
            orchestra.heartbeat()
            await trio.sleep(1)

    conductor = orchestra.Conductor(
        {f"p{i}": orchestra.PlayerSpec(steady, after=(), liveness=10) for i in range(100)}
    )

    class Wakes(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            if task is conductor._task:
                wakes.append(trio.current_time())

    async with background(conductor) as run:
        trio.lowlevel.add_instrument(Wakes())
        await trio.sleep(100.5)
        # (each wake-up is two steps: one to wake, one after letting the woken tasks run)
        assert sorted(set(wakes)) == [float(t) for t in range(10, 101, 10)]
        assert await run.stop() is None


# -- heartbeat() and validation -------------------------------------------------------------


async def test_heartbeat_outside_a_player_raises() -> None:
    """One sentence, at the call."""
    with pytest.raises(
        RuntimeError,
        match=r"^heartbeat\(\) was called outside a player: call it in a player of a conductor"
        r" \(or in a task the player spawned\)$",
    ):
        orchestra.heartbeat()


def test_heartbeat_outside_trio_raises() -> None:
    """Not even in Trio: the same error."""
    with pytest.raises(RuntimeError, match=r"^heartbeat\(\) was called outside a player"):
        orchestra.heartbeat()


async def test_heartbeat_in_a_player_without_liveness_does_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No error, no state."""
    beats = 0

    async def player() -> None:
        nonlocal beats
        orchestra.heartbeat()
        beats += 1

    conductor = orchestra.Conductor({"p": player})
    await conductor()
    assert beats == 1
    assert conductor.status().children["p"].last_heartbeat is None


async def test_a_nested_conductors_players_do_not_beat_for_the_player_running_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A player with liveness runs a conductor inside: the inner player's beats are its own."""

    async def inner_player() -> None:
        while True:
            orchestra.heartbeat()  # no liveness here: a no-op, not the outer player's pulse
            await trio.sleep(1)

    async def outer() -> None:
        async with orchestra.open_conductor({"inner": inner_player}):
            await trio.sleep_forever()

    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {"outer": orchestra.PlayerSpec(outer, liveness=5)}, name="app", on_event=seen.append
    )
    async with background(conductor) as run:
        error = await run.wait_stopped()
    assert_failures(error, {"app/outer": orchestra.PlayerHung})
    assert hung_times(seen) == [("app/outer", 5, 5)]


@pytest.mark.parametrize("value", [0, -1, math.nan])
def test_a_liveness_must_be_a_positive_number_of_seconds(value: float) -> None:
    """Zero, negative and NaN are ValueErrors naming the player."""

    async def player() -> None:
        await trio.sleep_forever()

    with pytest.raises(ValueError, match=r"^PlayerSpec\(.*player\): liveness must be "):
        orchestra.PlayerSpec(player, liveness=value)


def test_a_liveness_of_the_wrong_type_is_a_type_error() -> None:
    """A string is a TypeError."""

    async def player() -> None:
        await trio.sleep_forever()

    with pytest.raises(TypeError, match=r"liveness must be a number of seconds, not str$"):
        orchestra.PlayerSpec(player, liveness="10")  # type: ignore[arg-type]


def test_a_nested_conductor_cannot_have_a_liveness() -> None:
    """Its players beat, not it."""
    with pytest.raises(
        ValueError,
        match=r"^PlayerSpec\(Conductor\): a nested conductor cannot have a liveness, since its"
        r" players beat, not it; give them one$",
    ):
        orchestra.PlayerSpec(orchestra.Conductor(), liveness=5)


async def test_an_added_player_with_a_liveness_is_watched(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """add() at 3 of a silent player with liveness 4: hung at 7, raised into the tree."""

    async def idle() -> None:
        await trio.sleep_forever()

    conductor = orchestra.Conductor({"a": idle}, name="app")
    async with background(conductor) as run:
        await trio.sleep(3)
        spec = orchestra.PlayerSpec(partial(beating, journal, "c", 0), liveness=4)
        await run.conductor.add("c", spec)
        error = await run.wait_stopped()
    assert_failures(error, {"app/c": orchestra.PlayerHung})
    assert journal.time_of("c gone") == 7


# -- found by the fuzzer (tests/test_fuzz.py) -----------------------------------------------


async def test_a_hang_that_ends_in_a_group_restart_is_still_its_own_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """p0 (never) is hung at 2, ignores its soft stop until 5; p1 fails at 3 (one_for_all).

    p0 failed first (a hung player is a failed player): its restart policy applies, so its
    PlayerHung is reported and the tree fails. (Found by the fuzzer: its end at 5 was taken
    for a stop for the group restart, handled, and the tree ran on without it.)
    """
    seen: list[events.Event] = []

    async def stuck() -> None:
        orchestra.current_stop()  # subscribed, and deaf to its soft stop
        await trio.sleep_forever()

    async def flaky() -> None:
        await trio.sleep(3)
        raise OSError("flaky")

    conductor = orchestra.Conductor(
        {
            "p0": orchestra.PlayerSpec(stuck, liveness=2, grace=3, restart="never"),
            "p1": orchestra.PlayerSpec(flaky, restart="on_failure", backoff=None, after=()),
        },
        name="app",
        strategy="one_for_all",
        on_event=seen.append,
    )
    error: orchestra.ConductorError | None = None
    with trio.move_on_after(10):
        try:
            await conductor()
        except orchestra.ConductorError as failed:
            error = failed
    assert hung_times(seen) == [("app/p0", 2, 2)]
    ends = [
        (e.time, e.handled) for e in seen if isinstance(e, events.Failed) and e.path == "app/p0"
    ]
    assert ends == [(5, False)]
    assert error is not None
    assert isinstance(error.failures.get("app/p0"), orchestra.PlayerHung)


async def test_the_check_period_is_the_shortest_liveness_of_the_players_watched(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Player p (liveness 10) beats at 0, 3, ..., 21, then hangs; q (liveness 1) starts at 100.

    q is not watched before it starts, so the timer's period is p's own 10 s: checks at 10,
    20, 30 and 40, where p is found, silent for 19 s (S to 2 S, as documented). Found by the
    fuzzer, which first read the bound as the conductor's shortest liveness.
    """
    seen: list[events.Event] = []

    async def p(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        for _ in range(8):
            orchestra.heartbeat()
            await trio.sleep(3)
        await trio.sleep_forever()

    async def q(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(100)
        task_status.started()
        while True:
            orchestra.heartbeat()
            await trio.sleep(0.5)

    conductor = orchestra.Conductor(
        {
            "p": orchestra.PlayerSpec(p, liveness=10),
            "q": orchestra.PlayerSpec(q, liveness=1, after=()),
        },
        name="app",
        on_event=seen.append,
    )
    with trio.move_on_after(50), pytest.raises(orchestra.ConductorError):
        await conductor()
    assert hung_times(seen) == [("app/p", 40, 19)]
