"""Readiness of a running tree, and what a stop tells: cut off, stopped or finished.

Each rule of ``PlayerStatus.ready`` (what ``/readyz`` answers) is checked on a real conductor
on the autojump clock: which players count, ``min_ready`` pools, and reasons that name the
player itself. Then the log lines and events that tell a cut-off stop, an orderly stop and a
player that finished by itself apart, and the slow-start warning.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra import events

from .conftest import StepCounter

S = orchestra.PlayerState
ON_FAILURE = orchestra.Restart.ON_FAILURE
EXACT = orchestra.Backoff(initial=10, factor=1, maximum=10, jitter=0)


async def fails_after(seconds: float) -> None:
    """Run for *seconds*, then fail."""
    await trio.sleep(seconds)
    raise ValueError("crash")


def worker(restart_after: float) -> orchestra.PlayerSpec:
    """A worker that fails after *restart_after* s and waits 10 s in backoff each time."""
    return orchestra.PlayerSpec(fails_after, restart_after, restart=ON_FAILURE, backoff=EXACT)


async def test_a_player_in_backoff_makes_the_tree_unready_and_names_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The default: every player counts; the reason names the player, not its conductor."""
    pool = orchestra.Conductor({"w1": worker(5), "w2": trio.sleep_forever})
    app = orchestra.Conductor({"pool": pool, "web": trio.sleep_forever}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(app)
        assert app.status().ready
        await trio.sleep(6)  # w1 failed at 5 and waits until 15
        tree = app.status()
        assert not tree.ready
        assert tree.not_ready == ("app/pool/w1 is backoff",)
        assert tree.children["pool"].not_ready == ("app/pool/w1 is backoff",)
        assert tree.children["web"].ready
        app.stop()


async def test_min_ready_keeps_a_pool_ready_while_one_worker_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A pool with min_ready=1 is ready while one worker is; with none, it names the count."""
    pool = orchestra.Conductor({"w1": worker(5), "w2": worker(7)}, min_ready=1)
    app = orchestra.Conductor({"pool": pool}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(app)
        await trio.sleep(6)  # w1 in backoff until 15, w2 running
        assert app.status().ready
        await trio.sleep(2)  # w2 failed at 7 too: none is ready
        assert app.status().not_ready == (
            "app/pool has 0 of 2 players ready, fewer than 1",
            "app/pool/w1 is backoff",
            "app/pool/w2 is backoff",
        )
        await trio.sleep(8)  # w1 is back at 15
        assert app.status().ready
        app.stop()


async def test_a_player_not_required_for_readiness_never_makes_the_tree_unready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ready_required=False: its backoff leaves the tree ready."""
    reporter = orchestra.PlayerSpec(
        fails_after, 1, restart="on_failure", backoff=EXACT, ready_required=False
    )
    app = orchestra.Conductor({"web": trio.sleep_forever, "report": reporter}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(app)
        await trio.sleep(2)
        tree = app.status()
        assert tree.children["report"].state is S.BACKOFF
        assert tree.ready
        assert not tree.children["report"].ready  # itself, it is not
        app.stop()


async def test_a_tree_that_is_starting_names_the_player_it_waits_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While starting, the reason is the player being started, not the root."""
    gate = trio.Event()

    async def slow(*, task_status: trio.TaskStatus[None]) -> None:
        await gate.wait()
        task_status.started()
        await trio.sleep_forever()

    inner = orchestra.Conductor({"pool": slow})
    app = orchestra.Conductor({"db": trio.sleep_forever, "jobs": inner, "web": slow}, name="app")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app)
        await trio.sleep(1)
        assert app.status().not_ready == ("app/jobs/pool is starting",)
        gate.set()
        await trio.sleep(1)
        assert app.status().ready
        app.stop()


async def test_a_stopping_tree_is_not_ready(autojump_clock: trio.testing.MockClock) -> None:
    """From the stop request on, /readyz says so; the player being stopped is named."""

    async def listens() -> None:
        await orchestra.current_stop().wait()
        await trio.sleep(3)

    app = orchestra.Conductor({"web": listens}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(app)
        app.stop("deploy")
        await trio.sleep(1)
        assert app.status().not_ready == ("app/web is stopping",)
    assert app.status().not_ready == ("app is done",)


async def test_the_value_passed_to_started_is_in_the_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """started_value is what the current run passed to task_status.started()."""

    async def listener(*, task_status: trio.TaskStatus[int]) -> None:
        task_status.started(8123)
        await trio.sleep_forever()

    app = orchestra.Conductor({"web": listener, "plain": trio.sleep_forever})
    async with trio.open_nursery() as nursery:
        await nursery.start(app)
        children = app.status().children
        assert children["web"].started_value == 8123
        assert children["plain"].started_value is None
        app.stop()


# -- what a stop tells ------------------------------------------------------------------------


async def test_a_subscribed_player_cancelled_at_its_deadline_is_cut_off(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A warning with the path and the time past its grace; the event and the status say so."""
    seen: list[events.Event] = []

    async def deaf() -> None:
        orchestra.current_stop()  # subscribed, but ignores the soft phase
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.5)  # cleanup after the cancel

    async def polite() -> None:
        await orchestra.current_stop().wait()

    app = orchestra.Conductor(
        {"polite": polite, "deaf": deaf, "plain": trio.sleep_forever},
        name="app",
        grace=2,
        on_event=seen.append,
    )
    with caplog.at_level(logging.INFO, logger="trio_orchestra"):
        async with trio.open_nursery() as nursery:
            await nursery.start(app)
            app.stop()
    stopped = {event.path: event.cut_off for event in seen if isinstance(event, events.Stopped)}
    assert stopped == {"app/plain": False, "app/deaf": True, "app/polite": False}
    assert [node.cut_off for node in app.status().children.values()] == [False, True, False]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "player app/deaf was cut off at the end of its 2 s grace: it had not returned,"
        " and ended 0.5 s after its cancel"
    )
    assert warning.path == "app/deaf"  # type: ignore[attr-defined]


async def test_a_forced_stop_cuts_off_a_player_in_its_soft_phase(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """stop(force=True) during the soft phase: cut off, said as such."""

    async def slow() -> None:
        await orchestra.current_stop().wait()
        await trio.sleep(10)

    app = orchestra.Conductor({"slow": slow}, name="app", grace=30)
    with caplog.at_level(logging.WARNING, logger="trio_orchestra"):
        async with trio.open_nursery() as nursery:
            await nursery.start(app)
            app.stop("deploy")
            await trio.sleep(1)
            app.stop("again", force=True)
    assert app.status().children["slow"].cut_off
    assert [r.getMessage() for r in caplog.records] == [
        (
            "player app/slow was cut off when its conductor was hard-stopped: it had not"
            " returned, and ended 0 s after its cancel"
        )
    ]


async def test_a_player_that_returns_by_itself_finished_and_was_not_stopped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """'finished' and events.Finished for a return nobody asked for; 'stopped' for a stop."""
    seen: list[events.Event] = []

    async def job() -> None:
        await trio.sleep(1)

    app = orchestra.Conductor(
        {"job": job, "web": trio.sleep_forever}, name="app", on_event=seen.append
    )
    with caplog.at_level(logging.INFO, logger="trio_orchestra"):
        async with trio.open_nursery() as nursery:
            await nursery.start(app)
            await trio.sleep(2)
            app.stop("deploy")
    ends = [
        (type(e).__name__, e.path) for e in seen if isinstance(e, events.Finished | events.Stopped)
    ]
    assert ends == [("Finished", "app/job"), ("Stopped", "app/web")]
    messages = [r.getMessage() for r in caplog.records]
    assert "player app/job finished" in messages
    assert "player app/web stopped" in messages
    assert messages.count("conductor app stopping: deploy") == 1


async def test_a_forgotten_started_is_named_in_a_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """30 s after it was started without calling started(), a warning names it and where."""

    async def forgetful(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep_forever()

    app = orchestra.Conductor({"db": forgetful}, name="app")
    with caplog.at_level(logging.WARNING, logger="trio_orchestra"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app)
            await trio.sleep(29.9)
            assert caplog.records == []
            await trio.sleep(0.2)
            [record] = caplog.records
            assert trio.current_time() == pytest.approx(30.1)
            app.stop()
    assert record.getMessage().startswith(
        "player app/db has not called task_status.started() 30 s after it was started;"
    )
    assert "test_readiness.py" in record.getMessage()  # where it waits


async def test_a_player_that_starts_in_time_gets_no_warning_and_no_wake_up(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The slow-start timer is gone once the player is started: the idle tree never wakes."""

    async def prompt(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(1)
        task_status.started()
        await trio.sleep_forever()

    app = orchestra.Conductor({"db": prompt})
    with caplog.at_level(logging.WARNING, logger="trio_orchestra"):
        async with trio.open_nursery() as nursery:
            await nursery.start(app)
            await trio.sleep(1)
            counter = StepCounter()
            trio.lowlevel.add_instrument(counter)
            await trio.sleep(3600)
            trio.lowlevel.remove_instrument(counter)
            assert counter.steps == 1  # this test's own wake-up
            app.stop()
    assert caplog.records == []


# -- validation -------------------------------------------------------------------------------


def test_restart_takes_its_name_as_strategy_does() -> None:
    """restart="on_failure" is Restart.ON_FAILURE; an unknown name is a clear ValueError."""
    spec = orchestra.PlayerSpec(trio.sleep_forever, restart="on_failure")
    assert spec.restart is orchestra.Restart.ON_FAILURE
    assert spec == orchestra.PlayerSpec(trio.sleep_forever, restart=ON_FAILURE)
    with pytest.raises(
        ValueError,
        match=r"^PlayerSpec\(sleep_forever\): restart must be 'never', 'on_failure' or 'always'"
        r" \(or a Restart\), not 'sometimes'$",
    ):
        orchestra.PlayerSpec(trio.sleep_forever, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"^PlayerSpec\(sleep_forever\): restart must be a Restart or one of its names,"
        r" not int$",
    ):
        orchestra.PlayerSpec(trio.sleep_forever, restart=1)  # type: ignore[arg-type]


def test_readiness_options_are_validated() -> None:
    """min_ready is a whole number; ready_required a bool."""
    with pytest.raises(
        ValueError, match=r"^conductor 'pool': min_ready must be a whole number, 0 or more, not -1$"
    ):
        orchestra.Conductor({}, name="pool", min_ready=-1)
    with pytest.raises(TypeError, match=r"^conductor 'pool': min_ready must be an int or None"):
        orchestra.Conductor({}, name="pool", min_ready=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ready_required must be a bool"):
        orchestra.PlayerSpec(trio.sleep_forever, ready_required=1)  # type: ignore[arg-type]


def test_one_conductor_nested_in_two_places_is_refused() -> None:
    """The same Conductor object under two names, at any depth: a ValueError at construction."""
    pool = orchestra.Conductor({"w": trio.sleep_forever})
    message = (
        r"^conductor 'app': the same Conductor object is nested as 'a' and as 'b';"
        r" a conductor has one live run, so give each place its own$"
    )
    with pytest.raises(ValueError, match=message):
        orchestra.Conductor({"a": pool, "b": pool}, name="app")
    deeper = orchestra.Conductor({"pool": pool})
    with pytest.raises(ValueError, match=r"nested as 'a' and as 'b/pool'"):
        orchestra.Conductor({"a": pool, "b": deeper}, name="app")
