"""Races between supervision and dynamic control, found by an independent review.

Each test was written failing against a real bug (group restarts against add/remove/restart,
stale timers, lost waiters, a lost failure, a backoff reset) and now guards its fix. Possible
hangs are guarded with ``trio.fail_after``, so they show as ``TooSlowError`` on the autojump
clock.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra

from .conftest import Journal, run_then_stop

ON_FAILURE = orchestra.Restart.ON_FAILURE
ALWAYS = orchestra.Restart.ALWAYS
NEVER = orchestra.Restart.NEVER
EXACT = orchestra.Backoff(initial=1, factor=2, maximum=100, jitter=0, reset_after=30)
S = orchestra.PlayerState
GROUP_BUSY = r"^cannot (remove|restart) a player: conductor 'conductor' is restarting a group"
PLAYER_BUSY = r"is already being added, removed or restarted$"


class Runs:
    """Counts the runs of named players."""

    def __init__(self) -> None:
        """Start with no runs."""
        self.count: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        """Count a run of *name*; return its number."""
        self.count[name] = self.count.get(name, 0) + 1
        return self.count[name]


def fails_once(runs: Runs, name: str, after: float) -> orchestra.PlayerSpec:
    """A player that fails after *after* seconds on its first run, then runs forever."""

    async def player() -> None:
        if runs(name) == 1:
            await trio.sleep(after)
            raise ValueError(f"{name} failed")
        await trio.sleep_forever()

    return orchestra.PlayerSpec(player, restart=ON_FAILURE, backoff=EXACT)


def forever(runs: Runs, name: str, restart: orchestra.Restart = ON_FAILURE) -> orchestra.PlayerSpec:
    """A player that runs until cancelled, counting its runs."""

    async def player() -> None:
        runs(name)
        await trio.sleep_forever()

    return orchestra.PlayerSpec(player, restart=restart, backoff=EXACT)


def slow_stopper(runs: Runs, name: str, takes: float) -> orchestra.PlayerSpec:
    """A subscribed player that takes *takes* seconds to stop after its soft phase starts."""

    async def player() -> None:
        runs(name)
        stop = orchestra.current_stop()
        await stop.wait()
        await trio.sleep(takes)

    return orchestra.PlayerSpec(player, restart=ON_FAILURE, backoff=EXACT, grace=100)


# -- group restarts and dynamic control ------------------------------------------------------


async def test_remove_during_a_group_restart_is_refused_and_the_group_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove() while a group restart waits in backoff: a clear error; the group restarts b."""
    runs = Runs()
    conductor = orchestra.Conductor(
        {"a": fails_once(runs, "a", 1), "b": forever(runs, "b")}, strategy="one_for_all"
    )
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(1.5)  # a failed at 1, b stopped, the group waits a's 1 s backoff
            assert conductor.status().children["b"].state is S.BACKOFF
            for name in ("a", "b"):
                with pytest.raises(RuntimeError, match=GROUP_BUSY):
                    await conductor.remove(name)
            await trio.sleep(10)
            assert runs.count["b"] == 2
            assert conductor.status().children["b"].state is S.RUNNING
            await conductor.remove("b")  # once the group restart is done
            assert "b" not in conductor.status().children
            conductor.stop()


async def test_restart_during_a_group_restart_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """restart() of a group member while the group restarts: a clear error, no double start."""
    runs = Runs()
    conductor = orchestra.Conductor(
        {"a": fails_once(runs, "a", 1), "b": forever(runs, "b")}, strategy="one_for_all"
    )
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(1.5)
            with pytest.raises(RuntimeError, match=GROUP_BUSY):
                await conductor.restart("b")
            await trio.sleep(10)  # a's backoff ends at 2: the group starts a, then b
            assert conductor.status().state is S.RUNNING
            assert runs.count["b"] == 2
            conductor.stop()


async def test_a_failure_during_group_backoff_leaves_no_stale_timer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failure during a group's backoff takes over its timer: no stale restart of the first."""
    runs = Runs()
    conductor = orchestra.Conductor(
        {"a": fails_once(runs, "a", 1.5), "b": fails_once(runs, "b", 1), "c": forever(runs, "c")},
        strategy="rest_for_one",
    )
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(10)
            tree = conductor.status()
            assert tree.state is S.RUNNING
            assert [tree.children[n].state for n in "abc"] == [S.RUNNING] * 3
            assert runs.count == {"a": 2, "b": 2, "c": 2}
            conductor.stop()


async def test_a_stale_group_timer_does_not_kill_a_healthy_player(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A backoff timer left from before a group restart never cancels a running player."""
    runs = Runs()
    b_runs = 0

    async def b() -> None:
        nonlocal b_runs
        b_runs += 1
        if b_runs <= 3:
            await trio.sleep(1 if b_runs == 3 else 0.1)
            raise ValueError("b")
        await trio.sleep_forever()

    players = {
        "a": fails_once(runs, "a", 5),
        "b": orchestra.PlayerSpec(b, restart=ON_FAILURE, backoff=EXACT),
        "c": forever(runs, "c"),
    }
    conductor = orchestra.Conductor(players, strategy="rest_for_one", max_restarts=100)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            # b (rest_for_one groups of b, c): fails at .1 and 1.2 (delays 1, 2); run 3 from
            # 3.2 fails at 4.2, delay 4 -> 8.2. a fails at 5, delay 1: group a, b, c at 6.
            await trio.sleep(20)
            tree = conductor.status()
            assert [tree.children[n].state for n in "abc"] == [S.RUNNING] * 3
            conductor.stop()


async def test_remove_of_a_member_being_stopped_for_a_group_restart_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While the group stops its members, remove() is refused; the group restart completes."""
    runs = Runs()
    conductor = orchestra.Conductor(
        {
            "a": fails_once(runs, "a", 1),
            "b": forever(runs, "b"),
            "c": slow_stopper(runs, "c", 5),
        },
        strategy="one_for_all",
    )
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(2)  # a failed at 1; the group is stopping c (5 s)
            assert conductor.status().children["c"].state is S.STOPPING
            with pytest.raises(RuntimeError, match=GROUP_BUSY):
                await conductor.remove("c")
            await trio.sleep(20)
            assert runs.count["b"] == 2
            assert conductor.status().children["a"].state is S.RUNNING
            conductor.stop()


async def test_a_spontaneous_failure_of_a_never_sibling_during_a_group_stop_is_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A NEVER member failing on its own while the group stops another is reported."""
    runs = Runs()

    async def crashes() -> None:
        await trio.sleep(3)
        raise KeyError("b crashed on its own")

    conductor = orchestra.Conductor(
        {
            "a": fails_once(runs, "a", 1),
            "b": orchestra.PlayerSpec(crashes, restart=NEVER),
            "c": slow_stopper(runs, "c", 5),  # the group stops c from 1 to 6
        },
        strategy="one_for_all",
        name="app",
    )
    with trio.fail_after(1000), pytest.raises(orchestra.ConductorError) as info:
        await run_then_stop(conductor, after=20)
    assert isinstance(info.value.failures["app/b"], KeyError)


# -- concurrent dynamic control --------------------------------------------------------------


async def test_a_second_control_call_on_one_player_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A restart() or remove() while another is in flight: a clear error; the first returns."""
    runs = Runs()
    conductor = orchestra.Conductor({"a": slow_stopper(runs, "a", 1)})
    returned: list[int] = []

    async def restart() -> None:
        await conductor.restart("a")
        returned.append(1)

    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            async with trio.open_nursery() as callers:
                callers.start_soon(restart)
                await trio.sleep(0.5)
                with pytest.raises(RuntimeError, match=PLAYER_BUSY):
                    await conductor.restart("a")
                with pytest.raises(RuntimeError, match=PLAYER_BUSY):
                    await conductor.remove("a")
            assert returned == [1]
            assert runs.count["a"] == 2
            conductor.stop()


async def test_a_restart_in_flight_when_the_conductor_stops_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A restart() caught by the conductor's stop gets an error instead of hanging."""
    runs = Runs()
    conductor = orchestra.Conductor({"a": slow_stopper(runs, "a", 5)})
    outcome: list[object] = []

    async def restart() -> None:
        try:
            await conductor.restart("a")
        except RuntimeError as exc:
            outcome.append(exc)
        else:
            outcome.append("returned")

    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            nursery.start_soon(restart)
            await trio.sleep(1)  # a is in its soft phase for the restart
            conductor.stop("deploy")
    [error] = outcome
    assert isinstance(error, RuntimeError)
    assert str(error) == "conductor 'conductor' stopped before player 'conductor/a' was started"


# -- backoff ---------------------------------------------------------------------------------


async def test_start_failures_of_a_restarted_player_do_not_reset_its_backoff(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Failures to start never reset the backoff, even after an earlier healthy run."""
    runs = 0

    async def player(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        journal(f"run {runs}")
        if runs == 1:
            task_status.started()
            await trio.sleep(100)  # a healthy run, longer than reset_after (30)
            raise ValueError("crash")
        raise OSError("cannot start")

    conductor = orchestra.Conductor(
        {"p": orchestra.PlayerSpec(player, restart=ON_FAILURE, backoff=EXACT)},
        max_restarts=100,
        period=1000,
    )
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(120)
            conductor.stop()
    times = [when for when, _ in journal.entries[:5]]
    # run 1 at 0, fails at 100; delays 1 (reset: healthy run), then 2, 4, 8
    assert times == [0, 101, 103, 107, 115]


async def test_a_group_restart_waiting_for_the_start_is_handled_if_the_stop_comes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Found by the fuzzer: the failure is handled (not lost, not reported) and counted."""
    runs = Runs()
    seen: list[orchestra.events.Event] = []

    async def slow(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(3)
        task_status.started()
        await trio.sleep_forever()

    conductor = orchestra.Conductor(
        {"a": fails_once(runs, "a", 1), "b": slow},
        strategy="one_for_all",
        on_event=seen.append,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conductor)
        await trio.sleep(2)  # a failed at 1; its group restart waits for b's start (3)
        assert conductor.statistics().recent_restarts == 1
        conductor.stop()
    failed = [e for e in seen if isinstance(e, orchestra.events.Failed)]
    assert [(e.path, e.handled) for e in failed] == [("conductor/a", True)]
    restarting = [e for e in seen if isinstance(e, orchestra.events.Restarting)]
    assert [(e.path, e.time) for e in restarting] == [("conductor/a", 1)]
