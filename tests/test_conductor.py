"""The conductor: ordered start, two-phase stop, stragglers, nesting, failures (contract s. 3)."""

from __future__ import annotations

import contextvars
import logging
import math
import sys
from functools import partial

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra.testing import ScriptedPlayer, assert_failures, background

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

from .conftest import Journal, run_then_stop


async def ready_after(
    journal: Journal,
    name: str,
    delay: float,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Become ready after *delay* seconds, then run until cancelled."""
    journal(f"{name} begins")
    try:
        await trio.sleep(delay)
        journal(f"{name} ready")
        task_status.started(name)
        await trio.sleep_forever()
    finally:
        journal(f"{name} cancelled")


async def plain(journal: Journal, name: str) -> None:
    """Run until cancelled, without subscribing to the soft phase."""
    journal(f"{name} begins")
    try:
        await trio.sleep_forever()
    finally:
        journal(f"{name} cancelled")


async def listener(journal: Journal, name: str, linger: float = 0.0) -> None:
    """Subscribes, waits for the stop, then takes *linger* seconds to finish."""
    stop = orchestra.current_stop()
    journal(f"{name} begins")
    await stop.wait()
    journal(f"{name} asked to stop: {stop.reason}")
    await trio.sleep(linger)
    journal(f"{name} finished")


# -- start ----------------------------------------------------------------------------------


async def test_players_start_in_order_each_after_the_previous_is_ready(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Each player starts only once the one before it is started; start returns when all are."""
    conductor = orchestra.Conductor(
        {
            "a": partial(ready_after, journal, "a", 1),
            "b": partial(ready_after, journal, "b", 2),
            "c": partial(plain, journal, "c"),
        },
        name="app",
    )
    async with trio.open_nursery() as nursery:
        value = await nursery.start(conductor)
        assert value is conductor
        assert trio.current_time() == 3
        conductor.stop()
    assert journal.entries[:5] == [
        (0, "a begins"),
        (1, "a ready"),
        (1, "b begins"),
        (3, "b ready"),
        (3, "c begins"),
    ]


async def test_a_plain_player_asking_for_its_token_at_the_top_gets_the_soft_phase(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """A stop that comes before a plain player's first step still finds it subscribed."""
    conductor: orchestra.Conductor

    async def first(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        conductor.stop("right away")  # the next player is spawned but has not run yet
        await trio.sleep_forever()

    conductor = orchestra.Conductor(
        {"first": first, "second": partial(listener, journal, "second", 1)}, grace=2
    )
    await conductor()
    assert journal.entries == [
        (0, "second begins"),
        (0, "second asked to stop: right away"),
        (1, "second finished"),
    ]


async def test_a_task_status_player_that_raises_before_started_rolls_back(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """A start failure stops the started players in reverse order and raises ConductorError."""

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(1)
        raise ValueError("no database")

    conductor = orchestra.Conductor(
        {
            "a": partial(plain, journal, "a"),
            "b": partial(listener, journal, "b", 0.5),
            "broken": broken,
            "never": partial(plain, journal, "never"),
        },
        name="app",
    )
    async with trio.open_nursery() as nursery:
        with pytest.raises(orchestra.ConductorError) as info:
            await nursery.start(conductor)
    assert list(info.value.failures) == ["app/broken"]
    assert isinstance(info.value.failures["app/broken"], ValueError)
    assert journal.events == [
        "a begins",
        "b begins",
        "b asked to stop: player 'app/broken' failed to start",
        "b finished",
        "a cancelled",
    ]
    assert journal.time_of("a cancelled") == 1.5


async def test_start_timeout_fails_the_start_at_the_exact_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task_status player that exceeds start_timeout fails with StartTimeout."""

    async def slow(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(100)
        task_status.started()

    conductor = orchestra.Conductor(
        {"slow": orchestra.PlayerSpec(slow, start_timeout=7)}, name="app"
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await conductor()
    assert trio.current_time() == 7
    error = info.value.failures["app/slow"]
    assert isinstance(error, orchestra.StartTimeout)
    assert (error.path, error.timeout) == ("app/slow", 7)
    assert str(error) == "player 'app/slow' did not report started within 7 s"


async def test_start_timeout_stops_counting_once_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After started(), the start_timeout no longer applies."""

    async def fine(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(1)
        task_status.started()
        await trio.sleep(100)

    conductor = orchestra.Conductor({"fine": orchestra.PlayerSpec(fine, start_timeout=2)})
    await conductor()
    assert trio.current_time() == 101


async def test_returning_without_started_is_a_start_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task_status player that returns before started() fails to start."""

    async def forgetful(*, task_status: trio.TaskStatus[None]) -> None:
        del task_status

    with pytest.raises(orchestra.ConductorError) as info:
        await orchestra.Conductor({"f": forgetful}, name="app")()
    error = info.value.failures["app/f"]
    assert isinstance(error, RuntimeError)
    assert str(error) == "player 'app/f' returned without calling task_status.started()"


async def test_started_twice_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    """Calling task_status.started() twice raises RuntimeError in the player."""

    async def twice(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        with pytest.raises(RuntimeError, match=r"^player 'conductor/t' called .* twice$"):
            task_status.started()

    await orchestra.Conductor({"t": twice})()


async def test_a_plain_player_raising_at_its_first_line_has_started_then_failed(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """The players before it are stopped in reverse order, and the failure is reported."""

    async def crash() -> None:
        raise OSError("boom")

    conductor = orchestra.Conductor(
        {"a": partial(plain, journal, "a"), "crash": crash, "b": partial(plain, journal, "b")},
        name="app",
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await conductor()
    assert isinstance(info.value.failures["app/crash"], OSError)
    # "crash" had started: the next player was spawned, then stopped, before "a".
    assert journal.events == ["a begins", "b begins", "b cancelled", "a cancelled"]


async def test_a_stop_while_starting_starts_no_more_and_returns_normally(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """nursery.start returns, started players are stopped in reverse, the rest never start."""
    conductor = orchestra.Conductor(
        {
            "a": partial(plain, journal, "a"),
            "b": partial(ready_after, journal, "b", 10),
            "c": partial(plain, journal, "c"),
        }
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_later, conductor, 4)
        await nursery.start(conductor)
        assert trio.current_time() == 4
    assert journal.events == ["a begins", "b begins", "b cancelled", "a cancelled"]


async def _stop_later(conductor: orchestra.Conductor, delay: float) -> None:
    await trio.sleep(delay)
    conductor.stop("later")


async def test_a_stop_before_the_run_makes_it_start_nothing(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """stop() before the first run: the run starts no player and returns at once."""
    conductor = orchestra.Conductor({"a": partial(plain, journal, "a")})
    conductor.stop("never mind")
    async with trio.open_nursery() as nursery:
        assert await nursery.start(conductor) is conductor
    assert journal.events == []
    assert trio.current_time() == 0


async def test_a_stop_after_return_does_nothing_and_a_new_run_starts_fresh(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """After a run returned, stop() is a no-op and the next run starts every player again."""
    conductor = orchestra.Conductor({"a": partial(listener, journal, "a")})
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            conductor.stop("done")
        conductor.stop("too late")
    assert journal.events == ["a begins", "a asked to stop: done", "a finished"] * 2


async def test_running_a_conductor_that_runs_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A conductor has at most one live run."""
    conductor = orchestra.Conductor({"a": trio.sleep_forever}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        with pytest.raises(
            RuntimeError,
            match=r"^conductor 'app' is already running; a Conductor has one live run$",
        ):
            await conductor()
        conductor.stop()


async def test_players_do_not_see_each_others_context_variables(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A player spawned from another player's task gets the conductor's context, not its own."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    async def setter(*, task_status: trio.TaskStatus[None]) -> None:
        var.set("leaked")
        task_status.started()  # the next player is spawned from this task
        await trio.sleep_forever()

    async def reader() -> None:
        seen.append(var.get())

    var.set("conductor's")
    reader_spec = orchestra.PlayerSpec(reader, significant=True)
    await orchestra.Conductor({"setter": setter, "reader": reader_spec})()
    assert seen == ["conductor's"]


# -- stop -----------------------------------------------------------------------------------


async def test_stop_goes_in_reverse_order_one_after_another(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Subscribed players get their soft phase in turn; unsubscribed ones are cancelled at once."""
    conductor = orchestra.Conductor(
        {
            "a": partial(listener, journal, "a", 1),
            "b": partial(plain, journal, "b"),
            "c": partial(listener, journal, "c", 2),
        },
        grace=5,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(10)
        conductor.stop("deploy")
    assert journal.entries[3:] == [
        (10, "c asked to stop: deploy"),
        (12, "c finished"),
        (12, "b cancelled"),
        (12, "a asked to stop: deploy"),
        (13, "a finished"),
    ]
    assert trio.current_time() == 13


async def test_parallel_stop_asks_everyone_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """stop_order='parallel' starts every player's stop at the same moment."""
    conductor = orchestra.Conductor(
        {
            "a": partial(listener, journal, "a", 1),
            "b": partial(listener, journal, "b", 3),
            "c": partial(plain, journal, "c"),
        },
        stop_order="parallel",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        conductor.stop("now")
    assert sorted(journal.entries[3:]) == [
        (0, "a asked to stop: now"),
        (0, "b asked to stop: now"),
        (0, "c cancelled"),
        (1, "a finished"),
        (3, "b finished"),
    ]


async def test_the_first_reason_wins(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Later stop() calls do nothing."""
    conductor = orchestra.Conductor({"a": partial(listener, journal, "a")})
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        conductor.stop("first")
        conductor.stop("second")
    assert "a asked to stop: first" in journal.events


async def test_the_hard_phase_comes_at_the_deadline_with_a_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subscribed player that ignores the stop is cancelled at exactly now + grace."""
    seen: list[tuple[float, float, str | None]] = []

    async def stubborn() -> None:
        stop = orchestra.current_stop()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as cancelled:
            seen.append((trio.current_time(), stop.deadline, cancelled.reason))
            raise

    conductor = orchestra.Conductor(
        {"stubborn": orchestra.PlayerSpec(stubborn, grace=3)}, name="app", grace=100
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(1)
        conductor.stop("deploy")
    assert seen == [(4, 4, "conductor 'app' stopped player 'app/stubborn': deploy")]


async def test_force_skips_the_rest_of_the_soft_phase(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """stop(force=True) hard-cancels players still in their soft phase."""
    conductor = orchestra.Conductor({"a": partial(listener, journal, "a", 50)}, grace=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        conductor.stop("graceful")
        await trio.sleep(2)
        conductor.stop("forced", force=True)
    assert trio.current_time() == 2
    assert "a finished" not in journal.events


async def test_a_straggler_is_reported_with_where_it_is_stuck(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A player still running grace s after its hard cancel is logged, waited for, reported."""

    async def stuck() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(30)  # stuck in cleanup

    conductor = orchestra.Conductor({"stuck": stuck}, name="app", grace=4)
    with (
        caplog.at_level(logging.WARNING, logger="trio_orchestra"),
        pytest.raises(orchestra.ConductorError) as info,
    ):
        await run_then_stop(conductor, reason="bye")
    assert trio.current_time() == 30
    error = info.value.failures["app/stuck"]
    assert isinstance(error, orchestra.StopTimeout)
    assert (error.path, error.grace) == ("app/stuck", 4)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.path == "app/stuck"  # type: ignore[attr-defined]
    assert "app/stuck is still running 4 s after it was cancelled" in record.getMessage()
    assert "test_conductor.py:" in record.getMessage()
    assert "in stuck" in record.getMessage()


async def test_an_outer_cancellation_hard_stops_everyone_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Subscribed players get no soft phase, and the cancellation propagates as Trio expects."""
    conductor = orchestra.Conductor(
        {"a": partial(listener, journal, "a", 10), "b": partial(plain, journal, "b")}, grace=30
    )
    with trio.move_on_after(5) as scope:
        await conductor()
    assert scope.cancelled_caught
    assert trio.current_time() == 5
    assert sorted(journal.events) == ["a begins", "b begins", "b cancelled"]


async def test_a_failure_wins_over_an_outer_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A player that raises while being cancelled from outside: its error is raised."""

    async def bad_cleanup() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise KeyError("cleanup")

    conductor = orchestra.Conductor({"bad": bad_cleanup}, name="app")
    with pytest.raises(orchestra.ConductorError) as info, trio.move_on_after(1):
        await conductor()
    assert isinstance(info.value.failures["app/bad"], KeyError)


# -- failures -------------------------------------------------------------------------------


async def test_a_failure_stops_the_others_and_is_reported_by_path(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The others are stopped in reverse order with a reason naming the failed player."""

    async def fails_later() -> None:
        await trio.sleep(3)
        raise ValueError("bad row")

    conductor = orchestra.Conductor(
        {
            "a": partial(listener, journal, "a", 1),
            "fails": fails_later,
            "c": partial(listener, journal, "c", 1),
        },
        name="app",
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await conductor()
    assert journal.entries[2:] == [
        (3, "c asked to stop: player 'app/fails' failed"),
        (4, "c finished"),
        (4, "a asked to stop: player 'app/fails' failed"),
        (5, "a finished"),
    ]
    error = info.value
    assert str(error) == "conductor 'app' failed: app/fails (1 sub-exception)"
    [leaf] = error.exceptions
    assert isinstance(leaf, ValueError)
    assert getattr(leaf, "__notes__", None) == ["raised in player 'app/fails'"]


async def test_errors_raised_while_stopping_are_all_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every player that raises during the stop is reported, each exactly once."""

    async def raises_on_cancel(exc: Exception) -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise exc

    async def fails() -> None:
        await trio.sleep(1)
        raise ValueError("first")

    conductor = orchestra.Conductor(
        {
            "x": partial(raises_on_cancel, KeyError("x")),
            "fails": fails,
            "y": partial(raises_on_cancel, OSError("y")),
        },
        name="app",
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await conductor()
    assert list(info.value.failures) == ["app/fails", "app/y", "app/x"]
    assert [type(e) for e in info.value.exceptions] == [ValueError, OSError, KeyError]


async def test_except_star_reaches_the_original_exception_through_nesting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ConductorError holds the original exceptions, nested like the tree (``except*`` splits)."""

    async def pool() -> None:
        raise ConnectionError("db down")

    db = orchestra.Conductor({"pool": pool})
    app = orchestra.Conductor({"db": db, "web": trio.sleep_forever}, name="app")
    with pytest.RaisesGroup(
        pytest.RaisesGroup(ConnectionError, match=r"^conductor 'app/db' failed: app/db/pool$"),
        match=r"^conductor 'app' failed: app/db$",
    ) as info:
        await app()
    # except* ConnectionError does exactly this split:
    matched, rest = info.value.split(ConnectionError)
    assert rest is None
    assert isinstance(matched, orchestra.ConductorError)
    assert set(matched.failures) == {"app/db/pool"}
    [inner] = matched.exceptions
    assert isinstance(inner, orchestra.ConductorError)
    assert isinstance(inner.failures["app/db/pool"], ConnectionError)


async def test_a_players_own_exception_group_is_one_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """failures[path] is the group the player raised."""

    async def grouped() -> None:
        raise ExceptionGroup("two", [ValueError(1), KeyError(2)])

    with pytest.raises(orchestra.ConductorError) as info:
        await orchestra.Conductor({"g": grouped}, name="app")()
    group = info.value.failures["app/g"]
    assert isinstance(group, ExceptionGroup)
    assert group.message == "two"


async def test_keyboard_interrupt_propagates_bare_after_hard_stopping_siblings(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """KeyboardInterrupt is never wrapped; the siblings are cancelled first, without grace."""

    async def interrupt() -> None:
        await trio.sleep(1)
        raise KeyboardInterrupt

    conductor = orchestra.Conductor(
        {"a": partial(listener, journal, "a", 10), "b": interrupt}, grace=30
    )
    with pytest.raises(KeyboardInterrupt):
        await conductor()
    assert trio.current_time() == 1
    assert journal.events == ["a begins"]


async def test_a_player_returning_does_not_stop_the_others(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A done player leaves the others running; the conductor returns when all are done."""

    async def short() -> None:
        await trio.sleep(1)

    async def longer() -> None:
        await trio.sleep(5)

    await orchestra.Conductor({"short": short, "longer": longer})()
    assert trio.current_time() == 5


async def test_a_significant_player_returning_stops_the_rest_normally(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """significant=True: its normal return stops the others and the conductor returns."""

    async def main_job() -> None:
        await trio.sleep(2)

    conductor = orchestra.Conductor(
        {
            "helper": partial(listener, journal, "helper", 1),
            "main": orchestra.PlayerSpec(main_job, significant=True),
        },
        name="app",
    )
    await conductor()
    assert journal.entries == [
        (0, "helper begins"),
        (2, "helper asked to stop: significant player 'app/main' finished"),
        (3, "helper finished"),
    ]


async def test_an_empty_conductor_is_a_pool_that_runs_until_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With no players, the conductor runs until it is stopped."""
    conductor = orchestra.Conductor()
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(1000)
        assert conductor._running
        conductor.stop()
    assert trio.current_time() == 1000


# -- nesting --------------------------------------------------------------------------------


async def test_nested_conductors_build_paths_and_forward_the_soft_phase(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """A nested conductor's players are stopped softly, in order, under their full paths."""
    db = orchestra.Conductor(
        {
            "pool": partial(listener, journal, "pool", 1),
            "cache": partial(listener, journal, "cache", 2),
        },
        name="ignored-when-nested",
    )
    app = orchestra.Conductor({"db": db, "web": partial(listener, journal, "web", 1)}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(app)
        assert db.path == "app/db"
        app.stop("bye")
    assert journal.entries[3:] == [
        (0, "web asked to stop: bye"),
        (1, "web finished"),
        (1, "cache asked to stop: bye"),
        (3, "cache finished"),
        (3, "pool asked to stop: bye"),
        (4, "pool finished"),
    ]


async def test_a_nested_conductor_gets_its_stop_budget_as_its_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without a grace of its own, a nested conductor has the sum of its players' graces."""
    deadlines: list[float] = []

    async def ignores_stop() -> None:
        stop = orchestra.current_stop()
        await stop.wait()
        deadlines.append(stop.deadline)
        await trio.sleep_forever()

    inner = orchestra.Conductor({"x": ignores_stop, "y": ignores_stop}, grace=2)
    outer = orchestra.Conductor({"inner": inner})
    async with trio.open_nursery() as nursery:
        await nursery.start(outer)
        outer.stop()
    # y's soft phase ends at 2, then x's at 4: the budget (4 s) is enough for both.
    assert deadlines == [2, 4]
    assert trio.current_time() == 4


async def test_a_nested_conductor_is_never_a_straggler_its_players_are(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hard-cancelled nested conductor cancels its players at once and reports its own."""

    async def stuck() -> None:
        stop = orchestra.current_stop()
        await stop.wait()
        with trio.CancelScope(shield=True):
            await trio.sleep(20)

    inner = orchestra.Conductor({"stuck": stuck}, grace=5)
    outer = orchestra.Conductor(
        {"inner": orchestra.PlayerSpec(inner, grace=1)}, name="app", grace=3
    )
    with (
        caplog.at_level(logging.WARNING, logger="trio_orchestra"),
        pytest.raises(orchestra.ConductorError) as info,
    ):
        await run_then_stop(outer)
    assert trio.current_time() == 20
    assert list(info.value.failures) == ["app/inner/stuck"]
    stragglers = [r.path for r in caplog.records if r.levelno == logging.WARNING]  # type: ignore[attr-defined]
    assert stragglers == ["app/inner/stuck"]
    assert info.value.failures["app/inner/stuck"].grace == 5  # type: ignore[attr-defined]


async def test_open_conductor_starts_before_the_body_and_stops_after_it(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The block form: players are ready inside the block and stopped gracefully after it."""
    async with orchestra.open_conductor(
        {"a": partial(ready_after, journal, "a", 2), "b": partial(listener, journal, "b", 1)}
    ) as conductor:
        assert isinstance(conductor, orchestra.Conductor)
        assert trio.current_time() == 2
        journal("body")
    assert journal.events[-4:] == [
        "body",
        "b asked to stop: the open_conductor block exited",
        "b finished",
        "a cancelled",
    ]
    assert trio.current_time() == 3


async def test_open_conductor_cancels_the_body_when_a_player_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failure while the body runs cancels it and raises the ConductorError."""

    async def fails() -> None:
        await trio.sleep(5)
        raise ValueError("late")

    with pytest.raises(orchestra.ConductorError) as info:
        async with orchestra.open_conductor({"f": fails}, name="svc"):
            await trio.sleep(100)
    assert trio.current_time() == 5
    assert isinstance(info.value.failures["svc/f"], ValueError)


async def test_open_conductor_lets_the_body_exception_through(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """An exception from the body stops the players gracefully and propagates as it is."""
    with pytest.raises(KeyError):
        async with orchestra.open_conductor({"b": partial(listener, journal, "b", 1)}):
            raise KeyError("body")
    assert journal.events[-1] == "b finished"


async def test_open_conductor_raises_a_start_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A player failing to start makes the block never run."""

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        raise OSError("port in use")

    with pytest.raises(orchestra.ConductorError) as info:
        async with orchestra.open_conductor({"b": broken}, name="svc"):
            pytest.fail("the body must not run")
    assert isinstance(info.value.failures["svc/b"], OSError)


def test_infinite_grace_is_allowed() -> None:
    """grace=inf means wait as long as it takes."""
    assert orchestra.Conductor(grace=math.inf).grace == math.inf


async def test_a_busy_scheduler_does_not_make_stragglers(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Players cancelled in the same round as a late timer are not taken for stragglers."""
    players = {f"p{i}": partial(plain, journal, f"p{i}") for i in range(50)}
    conductor = orchestra.Conductor(players, grace=1, stop_order="parallel")
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        conductor.stop()
        autojump_clock.jump(10)  # the stop took longer than the grace: a busy scheduler
    assert journal.events.count("p7 cancelled") == 1  # and no StopTimeout was raised


async def test_a_players_cancellation_does_not_chain_onto_the_previous_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each Cancelled of a sequential stop stands alone (a chain would make stops quadratic)."""
    contexts: list[BaseException | None] = []

    async def records() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled as cancelled:
            contexts.append(cancelled.__context__)
            raise

    conductor = orchestra.Conductor({f"p{i}": records for i in range(3)})
    await run_then_stop(conductor)
    assert contexts == [None, None, None]


def test_the_stop_budget_adds_the_grace_periods_up() -> None:
    """Sequential: the sum (a nested conductor counts its own budget); parallel: the largest."""

    async def player() -> None:
        await trio.sleep_forever()

    jobs = orchestra.Conductor({"a": player, "b": player}, grace=3)
    app = orchestra.Conductor(
        {"db": player, "jobs": jobs, "web": orchestra.PlayerSpec(player, grace=30)}, grace=5
    )
    assert app.stop_budget() == 5 + 6 + 30
    parallel = orchestra.Conductor({"db": player, "jobs": jobs}, grace=5, stop_order="parallel")
    assert parallel.stop_budget() == 6
    pinned = orchestra.Conductor({"jobs": orchestra.PlayerSpec(jobs, grace=1)})
    assert pinned.stop_budget() == 1
    assert orchestra.Conductor({}).stop_budget() == 0


async def test_a_parallel_stop_keeps_every_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stopped all at once, each player still gets its own soft, hard and straggler times."""
    quick = ScriptedPlayer()  # returns as soon as asked
    deaf = ScriptedPlayer(ignore_soft_stop=True)  # waits for its hard cancel
    stuck = ScriptedPlayer(ignore_soft_stop=True, hang_on_stop=7)  # a straggler
    own = ScriptedPlayer(ignore_soft_stop=True)
    seen: list[tuple[float, str, str]] = []

    def record(event: orchestra.events.Event) -> None:
        if not isinstance(event, (orchestra.events.Started, orchestra.events.Ready)):
            seen.append((event.time, type(event).__name__, event.path.removeprefix("app/")))

    async def plain() -> None:
        await trio.sleep_forever()

    conductor = orchestra.Conductor(
        {
            "quick": quick,
            "deaf": deaf,
            "stuck": stuck,
            "own": orchestra.PlayerSpec(own, grace=2),
            "plain": plain,
        },
        name="app",
        grace=5,
        stop_order="parallel",
        on_event=record,
    )
    async with background(conductor) as run:
        error = await run.stop("now")
    assert_failures(error, {"app/stuck": orchestra.StopTimeout})
    assert sorted((time, kind, path) for time, kind, path in seen if kind != "Stopping") == [
        (0, "Stopped", "plain"),  # not subscribed: cancelled at once
        (0, "Stopped", "quick"),  # returned when asked
        (2, "Stopped", "own"),  # its own grace of 2 s
        (5, "Stopped", "deaf"),  # the conductor's grace of 5 s
        (10, "Straggling", "stuck"),  # still running 5 s after its hard cancel at 5
        (12, "Failed", "stuck"),  # out of its 7 s shield
    ]
    assert quick.stop_reasons == deaf.stop_reasons == own.stop_reasons == ["now"]
    states = {name: node.state for name, node in conductor.status().children.items()}
    assert set(states.values()) == {orchestra.PlayerState.DONE, orchestra.PlayerState.FAILED}
    assert states["stuck"] is orchestra.PlayerState.FAILED


async def test_a_parallel_stop_with_no_grace_makes_no_stragglers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """grace=0: soft phases end at once and hard cancels follow; none is a straggler."""
    players = {f"p{i}": ScriptedPlayer(ignore_soft_stop=True) for i in range(20)}
    conductor = orchestra.Conductor(players, grace=0, stop_order="parallel")
    async with background(conductor) as run:
        assert await run.stop() is None
    assert trio.current_time() == 0
