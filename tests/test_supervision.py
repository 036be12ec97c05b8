"""Supervision: restart policies, strategies, intensity, backoff, dynamic control (s. 4).

Scenarios from Erlang/OTP's supervisor tests, suture's, and triotp's blind spots, with every
delay asserted exactly on the autojump clock.
"""

from __future__ import annotations

import contextvars
import gc
import itertools
import logging
import random
import tracemalloc
from collections.abc import Callable
from functools import partial

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra import events

from .conftest import Journal, StepCounter, run_then_stop

ON_FAILURE = orchestra.Restart.ON_FAILURE
ALWAYS = orchestra.Restart.ALWAYS
EXACT = orchestra.Backoff(initial=1, factor=2, maximum=10, jitter=0, reset_after=30)


class Script:
    """A player whose runs follow a script: each run takes the next step.

    A step is ``("fail", after)``, ``("return", after)`` or ``("run", None)`` (until stopped).
    Runs past the end of the script repeat the last step.
    """

    def __init__(self, journal: Journal, name: str, *steps: tuple[str, float | None]) -> None:
        """Script *steps* for the player called *name*."""
        self.journal = journal
        self.name = name
        self.steps = steps
        self.runs = 0

    async def __call__(self) -> None:
        """One run of the player."""
        step, after = self.steps[min(self.runs, len(self.steps) - 1)]
        self.runs += 1
        self.journal(f"{self.name} run {self.runs}")
        try:
            if step == "run":
                await trio.sleep_forever()
            await trio.sleep(after or 0)
        except trio.Cancelled:
            self.journal(f"{self.name} stopped")
            raise
        if step == "fail":
            self.journal(f"{self.name} fails")
            raise ValueError(f"{self.name} failed on run {self.runs}")
        self.journal(f"{self.name} returns")


def spec(
    script: Script, restart: orchestra.Restart = ON_FAILURE, **options: object
) -> orchestra.PlayerSpec:
    """A spec for *script* with the exact backoff unless told otherwise."""
    options.setdefault("backoff", EXACT)
    return orchestra.PlayerSpec(script, restart=restart, **options)  # type: ignore[arg-type]


# -- policies and backoff -------------------------------------------------------------------


async def test_a_failing_player_is_restarted_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """ON_FAILURE: fails twice, is restarted after 1 s then 2 s, then runs; none reported."""
    flaky = Script(journal, "flaky", ("fail", 1), ("fail", 1), ("run", None))
    conductor = orchestra.Conductor({"flaky": spec(flaky)}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(100)
        node = conductor.status().children["flaky"]
        assert (node.state, node.restarts) == (orchestra.PlayerState.RUNNING, 2)
        assert isinstance(node.last_error, ValueError)
        conductor.stop()
    assert journal.entries == [
        (0, "flaky run 1"),
        (1, "flaky fails"),
        (2, "flaky run 2"),  # 1 s of backoff
        (3, "flaky fails"),
        (5, "flaky run 3"),  # 2 s
        (100, "flaky stopped"),
    ]


async def test_the_backoff_grows_to_its_cap_and_resets_after_a_healthy_run(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Delays 1, 2, 4, 8, 10, 10; a run of reset_after seconds resets them; an instant one never."""
    steps = [("fail", 0.0)] * 6 + [("fail", 30.0), ("fail", 0.0), ("run", None)]
    flaky = Script(journal, "f", *steps)
    conductor = orchestra.Conductor({"f": spec(flaky)}, max_restarts=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(200)
        conductor.stop()
    starts = [
        when
        for when, what in journal.entries
        if what.endswith(
            ("run 1", "run 2", "run 3", "run 4", "run 5", "run 6", "run 7", "run 8", "run 9")
        )
    ]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 6 instant failures: 1, 2, 4, 8, 10, 10 s; then a 30 s run resets: 30 + 1; then 2.
    assert gaps == [1, 2, 4, 8, 10, 10, 31, 2]


async def test_jitter_comes_from_the_injected_random(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A seeded random makes jittered delays exact and reproducible, within +-25 %."""
    backoff = orchestra.Backoff(initial=4, factor=1, maximum=4, jitter=0.25)
    flaky = Script(journal, "f", ("fail", 0), ("fail", 0), ("run", None))
    conductor = orchestra.Conductor(
        {"f": orchestra.PlayerSpec(flaky, restart=ON_FAILURE, backoff=backoff)},
        random=random.Random(7),
    )
    await run_then_stop(conductor, after=50)
    same = random.Random(7)
    expected = [4 * (1 + 0.25 * (2 * same.random() - 1)) for _ in range(2)]
    starts = [when for when, what in journal.entries if " run " in what]
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx(expected, abs=1e-9)
    assert all(3 <= gap <= 5 for gap in expected)


async def test_the_restart_log_line_rounds_a_jittered_delay_to_hundredths(
    autojump_clock: trio.testing.MockClock, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    """``restarting in 4.33 s``, not ``4.33104 s``; the event keeps the exact delay."""
    backoff = orchestra.Backoff(initial=4, factor=1, maximum=4, jitter=0.25)
    flaky = Script(journal, "f", ("fail", 0), ("run", None))
    delays: list[float] = []

    def hook(event: events.Event) -> None:
        if isinstance(event, events.Restarting):
            delays.append(event.delay)

    conductor = orchestra.Conductor(
        {"f": orchestra.PlayerSpec(flaky, restart=ON_FAILURE, backoff=backoff)},
        random=random.Random(7),
        on_event=hook,
    )
    with caplog.at_level(logging.INFO, logger="trio_orchestra"):
        await run_then_stop(conductor, after=50)
    [delay] = delays
    assert delay != round(delay, 2)  # the seed gives a delay with more digits
    lines = [r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()]
    assert lines == [f"player conductor/f restarting in {round(delay, 2):g} s (restart 1)"]


async def test_backoff_none_restarts_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """backoff=None: the restart follows the failure with no delay."""
    flaky = Script(journal, "f", ("fail", 1), ("run", None))
    conductor = orchestra.Conductor({"f": spec(flaky, backoff=None)})
    await run_then_stop(conductor, after=10)
    assert journal.entries[:3] == [(0, "f run 1"), (1, "f fails"), (1, "f run 2")]


async def test_on_failure_does_not_restart_a_normal_return(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """ON_FAILURE (transient): a normal return is done; the conductor returns."""
    once = Script(journal, "once", ("return", 3))
    await orchestra.Conductor({"once": spec(once)})()
    assert once.runs == 1
    assert trio.current_time() == 3


async def test_always_restarts_after_a_normal_return(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """ALWAYS (permanent): a normal return is restarted too."""
    loop = Script(journal, "loop", ("return", 1), ("run", None))
    conductor = orchestra.Conductor({"loop": spec(loop, ALWAYS)})
    await run_then_stop(conductor, after=10)
    assert loop.runs == 2
    assert journal.time_of("loop run 2") == 2  # 1 s run + 1 s backoff


async def test_a_permanent_player_that_keeps_returning_does_not_give_up_silently(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Past the intensity, a normal return becomes TooManyRestarts, reported by path."""
    loop = Script(journal, "loop", ("return", 0))
    conductor = orchestra.Conductor(
        {"loop": spec(loop, ALWAYS, backoff=None)}, name="app", max_restarts=3, period=10
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await conductor()
    assert loop.runs == 4  # max_restarts=3 means four runs
    error = info.value.failures["app/loop"]
    assert isinstance(error, orchestra.TooManyRestarts)
    assert (error.max_restarts, error.period) == (3, 10)


async def test_a_player_failing_forever_reports_its_path_and_the_limit(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The failure that exceeds the intensity is its last exception, with a note."""
    broken = Script(journal, "broken", ("fail", 0))
    conductor = orchestra.Conductor(
        {"broken": spec(broken, backoff=None)}, name="app", max_restarts=2, period=5
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await conductor()
    assert broken.runs == 3
    error = info.value.failures["app/broken"]
    assert str(error) == "broken failed on run 3"
    assert getattr(error, "__notes__", None) == [
        "the restart limit was exceeded: more than 2 restarts within 5 s",
        "raised in player 'app/broken'",
    ]


async def test_the_intensity_window_slides(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Restarts spaced wider than the period never exceed the intensity."""
    flaky = Script(journal, "f", ("fail", 6))
    conductor = orchestra.Conductor({"f": spec(flaky, backoff=None)}, max_restarts=1, period=5)
    await run_then_stop(conductor, after=63)  # not on a failure's instant
    assert flaky.runs == 11  # a failure every 6 s: never two restarts within 5 s


async def test_a_stop_during_backoff_ends_the_wait_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Nothing is restarted once the conductor is stopping, and the wait does not delay it."""
    slow = orchestra.Backoff(initial=100, maximum=100, jitter=0)
    flaky = Script(journal, "f", ("fail", 1))
    conductor = orchestra.Conductor({"f": spec(flaky, backoff=slow)})
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(5)
        assert conductor.status().children["f"].state is orchestra.PlayerState.BACKOFF
        conductor.stop()
    assert trio.current_time() == 5
    assert flaky.runs == 1
    assert conductor.status().children["f"].state is orchestra.PlayerState.DONE


async def test_a_handled_failure_is_not_reported_even_if_the_stop_comes_in_backoff(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A failure whose restart was scheduled is handled: the stop returns normally."""
    flaky = Script(journal, "f", ("fail", 1))
    conductor = orchestra.Conductor({"f": spec(flaky)})
    await run_then_stop(conductor, after=1.5)  # in the 1 s backoff after the failure


async def test_a_start_failure_of_a_restarted_player_counts_as_a_failure(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Once running, a player that fails to start is restarted like any failure."""
    runs = 0

    async def flaky_start(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        journal(f"run {runs}")
        if runs == 2:
            raise OSError("port busy")
        task_status.started()
        if runs == 1:
            await trio.sleep(1)
            raise ValueError("crash")
        await trio.sleep_forever()

    conductor = orchestra.Conductor(
        {"s": orchestra.PlayerSpec(flaky_start, restart=ON_FAILURE, backoff=EXACT)}
    )
    await run_then_stop(conductor, after=20)
    assert journal.entries == [(0, "run 1"), (2, "run 2"), (4, "run 3")]


async def test_a_start_failure_during_the_first_start_rolls_back_whatever_the_policy(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """During the conductor's own start, a start failure is not restarted: rollback."""

    async def never_starts(*, task_status: trio.TaskStatus[None]) -> None:
        raise OSError("no")

    conductor = orchestra.Conductor(
        {"n": orchestra.PlayerSpec(never_starts, restart=ALWAYS)}, name="app"
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await conductor()
    assert isinstance(info.value.failures["app/n"], OSError)


# -- strategies -----------------------------------------------------------------------------


def trio_of(
    journal: Journal, failing: str, restart: dict[str, orchestra.Restart] | None = None
) -> dict[str, orchestra.PlayerSpec]:
    """Three players a, b, c; *failing* fails once after 5 s, the others run."""
    restart = restart or {}
    players: dict[str, orchestra.PlayerSpec] = {}
    for name in "abc":
        steps = [("fail", 5.0), ("run", None)] if name == failing else [("run", None)]
        script = Script(journal, name, *steps)
        players[name] = spec(script, restart.get(name, ON_FAILURE))
    return players


async def test_one_for_one_restarts_only_the_failed_player(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """one_for_one: the siblings keep running."""
    conductor = orchestra.Conductor(trio_of(journal, "b"))
    await run_then_stop(conductor, after=20)
    assert journal.entries[3:6] == [(5, "b fails"), (6, "b run 2"), (20, "c stopped")]


async def test_one_for_all_stops_all_in_reverse_and_starts_all_in_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """one_for_all: c then a are stopped, then after b's backoff a, b, c start again."""
    conductor = orchestra.Conductor(trio_of(journal, "b"), strategy="one_for_all")
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(20)
        tree = conductor.status()
        assert {name: node.restarts for name, node in tree.children.items()} == {
            "a": 1,
            "b": 1,
            "c": 1,
        }
        assert conductor.statistics().recent_restarts == 1  # one restart toward the intensity
        conductor.stop()
    assert journal.entries[3:10] == [
        (5, "b fails"),
        (5, "c stopped"),
        (5, "a stopped"),
        (6, "a run 2"),
        (6, "b run 2"),
        (6, "c run 2"),
        (20, "c stopped"),
    ]


async def test_rest_for_one_restarts_the_failed_player_and_those_after_it(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """rest_for_one: a keeps running; c is stopped, then b and c start again in order."""
    conductor = orchestra.Conductor(trio_of(journal, "b"), strategy="rest_for_one")
    await run_then_stop(conductor, after=20)
    assert journal.entries[3:8] == [
        (5, "b fails"),
        (5, "c stopped"),
        (6, "b run 2"),
        (6, "c run 2"),
        (20, "c stopped"),
    ]
    assert "a run 2" not in journal.events


async def test_rest_for_one_never_restarts_a_player_started_before_the_failed_one(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """OTP's rest_for_one_other_child_fails_restart: b failing to start restarts b alone."""
    runs = {"a": 0, "b": 0}

    def player(name: str, fail_run: int, *, at_start: bool) -> orchestra.PlayerSpec:
        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            runs[name] += 1
            try:
                if at_start and runs[name] == fail_run:
                    journal(f"{name} start failed")
                    raise OSError(f"{name} cannot start")
                journal(f"{name} start")
                task_status.started()
                if not at_start and runs[name] == fail_run:
                    await trio.sleep(5)
                    journal(f"{name} fails")
                    raise ValueError(f"{name} failed")
                await trio.sleep_forever()
            except trio.Cancelled:
                journal(f"{name} stop")
                raise

        return orchestra.PlayerSpec(run, restart=ON_FAILURE, backoff=EXACT)

    conductor = orchestra.Conductor(
        {"a": player("a", 1, at_start=False), "b": player("b", 2, at_start=True)},
        strategy="rest_for_one",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(20)
        tree = conductor.status()
        assert {name: node.restarts for name, node in tree.children.items()} == {"a": 1, "b": 2}
        conductor.stop()
    assert journal.entries == [
        (0, "a start"),
        (0, "b start"),
        (5, "a fails"),
        (5, "b stop"),
        (6, "a start"),  # after a's backoff of 1 s
        (6, "b start failed"),
        (7, "b start"),  # b alone, after its own backoff: a keeps running
        (20, "b stop"),
        (20, "a stop"),
    ]


async def test_a_never_sibling_is_not_started_again_by_a_group_restart(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """OTP temporary children: stopped with the group, then left done."""
    conductor = orchestra.Conductor(
        trio_of(journal, "b", {"a": orchestra.Restart.NEVER}), strategy="one_for_all"
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(20)
        assert conductor.status().children["a"].state is orchestra.PlayerState.DONE
        conductor.stop()
    assert "a run 2" not in journal.events
    assert journal.time_of("b run 2") == 6


async def test_a_sibling_raising_while_stopped_for_a_group_restart_is_only_logged(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its error is logged, kept as last_error, and not reported."""
    raised = 0

    async def bad_stopper() -> None:
        nonlocal raised
        try:
            await trio.sleep_forever()
        finally:
            if not raised:
                raised += 1
                raise KeyError("while stopping")

    players = trio_of(journal, "a")
    players["c"] = orchestra.PlayerSpec(bad_stopper, restart=ON_FAILURE, backoff=EXACT)
    conductor = orchestra.Conductor(players, strategy="one_for_all", name="app")
    with caplog.at_level(logging.WARNING, logger="trio_orchestra"):
        await run_then_stop(conductor, after=10)  # returns normally: nothing reported
    assert isinstance(conductor.status().children["c"].last_error, KeyError)
    assert conductor.status().children["c"].restarts == 1
    [restart, record] = caplog.records
    assert restart.getMessage() == (
        "player app/a failed and will be restarted: ValueError('a failed on run 1')"
    )
    assert (record.levelname, record.getMessage(), record.exc_info) == (
        "WARNING",  # handled: one line, its traceback at DEBUG
        "player app/c failed while being stopped for a group restart: KeyError('while stopping')",
        None,
    )


async def test_escalation_and_recovery_through_two_levels(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A nested conductor past its intensity fails; its parent restarts it, fresh."""
    broken = Script(journal, "p", ("fail", 1))
    inner = orchestra.Conductor({"p": spec(broken, backoff=None)}, max_restarts=1, period=10)
    outer = orchestra.Conductor(
        {"inner": orchestra.PlayerSpec(inner, restart=ON_FAILURE, backoff=None)},
        name="app",
        max_restarts=1,
        period=100,
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await outer()
    # inner: 2 runs of p per run of inner; outer: 2 runs of inner.
    assert broken.runs == 4
    assert trio.current_time() == 4
    error = info.value.failures["app/inner/p"]
    assert str(error) == "p failed on run 4"
    [nested] = info.value.exceptions
    assert isinstance(nested, orchestra.ConductorError)


async def test_a_nested_conductor_giving_up_stops_its_parent_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Escalation is early: the parent begins its stop when the child decides to fail."""

    async def slow_to_stop() -> None:
        stop = orchestra.current_stop()
        await stop.wait()
        await trio.sleep(10)  # a long soft phase in the pool
        journal("slow done")

    async def front() -> None:
        stop = orchestra.current_stop()
        await stop.wait()
        journal(f"front told to stop: {stop.reason}")

    broken = Script(journal, "bad", ("fail", 1))
    pool = orchestra.Conductor(
        {"slow": slow_to_stop, "bad": spec(broken, backoff=None)},
        max_restarts=1,
        grace=30,
    )
    app = orchestra.Conductor({"pool": pool, "front": front}, name="app", grace=30)
    with pytest.raises(orchestra.ConductorError) as info:
        await app()
    assert journal.entries[-2:] == [
        (2, "front told to stop: player 'app/pool' failed"),  # not at 12, once pool is gone
        (12, "slow done"),
    ]
    assert list(info.value.failures) == ["app/pool/bad"]


async def test_a_nested_conductor_giving_up_is_restarted_without_stopping_its_parent(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A parent that will restart the failing child does not stop its other players."""
    broken = Script(journal, "bad", ("fail", 1))
    pool = orchestra.Conductor({"bad": spec(broken, backoff=None)}, max_restarts=0)
    front = Script(journal, "front", ("run", None))
    app = orchestra.Conductor(
        {"pool": orchestra.PlayerSpec(pool, restart=ON_FAILURE, backoff=None), "front": front},
        max_restarts=2,
    )
    with pytest.raises(orchestra.ConductorError):
        await app()
    # pool runs 3 times (2 restarts allowed); front is stopped only when app gives up.
    assert broken.runs == 3
    assert journal.entries[-1] == (3, "front stopped")


# -- dynamic control ------------------------------------------------------------------------


async def test_add_remove_and_restart_while_running(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Calls to add return once started; remove stops gracefully; restart stops, then starts."""

    async def ready(name: str, *, task_status: trio.TaskStatus[str]) -> None:
        await trio.sleep(1)
        journal(f"{name} ready")
        task_status.started(name.upper())
        try:
            await trio.sleep_forever()
        finally:
            journal(f"{name} stopped")

    conductor = orchestra.Conductor(name="pool")
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        assert await conductor.add("w1", partial(ready, "w1")) == "W1"
        assert await conductor.add("w2", partial(ready, "w2")) == "W2"
        assert list(conductor.status().children) == ["w1", "w2"]
        assert await conductor.restart("w1") == "W1"
        assert conductor.status().children["w1"].restarts == 1
        await conductor.remove("w2")
        assert list(conductor.status().children) == ["w1"]
        conductor.stop()
    assert journal.entries == [
        (1, "w1 ready"),
        (2, "w2 ready"),
        (2, "w1 stopped"),
        (3, "w1 ready"),
        (3, "w2 stopped"),
        (3, "w1 stopped"),
    ]


async def test_an_added_player_is_stopped_before_the_declared_ones(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Players added with add() count after the declared ones in the stop order."""
    conductor = orchestra.Conductor({"a": Script(journal, "a", ("run", None))})
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await conductor.add("b", Script(journal, "b", ("run", None)))
        conductor.stop()
    assert journal.events == ["a run 1", "b run 1", "b stopped", "a stopped"]


async def test_a_start_failure_of_an_added_player_goes_to_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """add() raises the start failure; the player is not in the tree; the tree runs on."""

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        raise OSError("port in use")

    conductor = orchestra.Conductor({"a": trio.sleep_forever}, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        with pytest.raises(OSError, match=r"^port in use$"):
            await conductor.add("b", broken)
        assert list(conductor.status().children) == ["a"]
        assert conductor.status().state is orchestra.PlayerState.RUNNING
        conductor.stop()


async def test_an_error_while_removing_goes_to_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove() raises what the player raised while stopping; the conductor returns cleanly."""

    async def bad_stopper() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise KeyError("cleanup")

    conductor = orchestra.Conductor({"a": trio.sleep_forever, "b": bad_stopper})
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        with pytest.raises(KeyError):
            await conductor.remove("b")
        conductor.stop()


async def test_removing_a_straggler_raises_to_the_caller_and_the_tree_keeps_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove() of a player that outlives its hard cancel: StopTimeout to the caller, once."""

    async def stubborn() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(7)

    conductor = orchestra.Conductor({"a": trio.sleep_forever, "b": stubborn}, grace=2, name="app")
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        with pytest.raises(orchestra.StopTimeout) as info:
            await conductor.remove("b")
        assert trio.current_time() == 7
        assert info.value.path == "app/b"
        assert conductor.status().state is orchestra.PlayerState.RUNNING
        assert list(conductor.status().children) == ["a"]
        await trio.sleep(10)
        conductor.stop()  # returns normally: the StopTimeout went to the caller only


async def test_dynamic_control_refuses_bad_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Unknown or duplicate names, and a conductor that is not running, are clear errors."""
    conductor = orchestra.Conductor({"a": trio.sleep_forever}, name="app")
    with pytest.raises(
        RuntimeError, match=r"^cannot add a player: conductor 'app' is not running \(started\)$"
    ):
        await conductor.add("b", trio.sleep_forever)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        with pytest.raises(ValueError, match=r"^conductor 'app' already has a player named 'a'$"):
            await conductor.add("a", trio.sleep_forever)
        with pytest.raises(ValueError, match=r"^conductor 'app': player name 'x/y' must be"):
            await conductor.add("x/y", trio.sleep_forever)
        with pytest.raises(LookupError, match=r"^conductor 'app' has no player named 'zz'$"):
            await conductor.remove("zz")
        with pytest.raises(LookupError, match=r"^conductor 'app' has no player named 'zz'$"):
            await conductor.restart("zz")
        conductor.stop()
        with pytest.raises(
            RuntimeError, match=r"^cannot restart a player: conductor 'app' is stopping$"
        ):
            await conductor.restart("a")


async def test_a_new_run_forgets_added_players(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A run after the previous one returned starts fresh from the declared players."""
    conductor = orchestra.Conductor({"a": trio.sleep_forever})
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            assert list(conductor.status().children) == ["a"]
            await conductor.add("extra", trio.sleep_forever)
            conductor.stop()


# -- introspection --------------------------------------------------------------------------


async def test_status_is_a_tree_of_snapshots_with_final_states(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """status(): paths, states, restarts, started_at and nested children, also after return."""
    inner = orchestra.Conductor({"x": trio.sleep_forever})
    conductor = orchestra.Conductor({"inner": inner, "y": trio.sleep_forever}, name="app")
    before = conductor.status()
    assert before.state is orchestra.PlayerState.STARTING
    assert [node.path for node in before.walk()] == ["app", "app/inner", "app/y"]
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(3)
        tree = conductor.status()
        assert [(n.path, n.state.name, n.started_at) for n in tree.walk()] == [
            ("app", "RUNNING", 0),
            ("app/inner", "RUNNING", 0),
            ("app/inner/x", "RUNNING", 0),
            ("app/y", "RUNNING", 0),
        ]
        with pytest.raises(TypeError):
            tree.children["z"] = tree  # type: ignore[index]
        conductor.stop()
    after = conductor.status()
    assert [(n.path, n.state.name) for n in after.walk()] == [
        ("app", "DONE"),
        ("app/inner", "DONE"),
        ("app/inner/x", "DONE"),
        ("app/y", "DONE"),
    ]


async def test_statistics_count_players_by_state(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """statistics() counts this conductor's players by state and its restarts."""
    flaky = Script(journal, "f", ("fail", 1), ("run", None))
    conductor = orchestra.Conductor({"f": spec(flaky), "g": trio.sleep_forever})
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(1.5)
        stats = conductor.statistics()
        assert (stats.players, stats.running, stats.backoff, stats.restarts) == (2, 1, 1, 1)
        conductor.stop()


async def test_events_go_to_the_hook_typed_and_in_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """on_event gets frozen events: started, ready, failed, restarting, stopping, stopped."""
    seen: list[events.Event] = []
    flaky = Script(journal, "f", ("fail", 1), ("run", None))
    conductor = orchestra.Conductor({"f": spec(flaky)}, name="app", on_event=seen.append)
    await run_then_stop(conductor, after=5, reason="bye")
    kinds = [(type(e).__name__, e.time) for e in seen]
    assert kinds == [
        ("Started", 0),
        ("Ready", 0),
        ("Failed", 1),
        ("Restarting", 1),
        ("Started", 2),
        ("Ready", 2),
        ("Stopping", 5),
        ("Stopped", 5),
    ]
    failed, restarting = seen[2], seen[3]
    assert isinstance(failed, events.Failed)
    assert failed.handled
    assert isinstance(restarting, events.Restarting)
    assert (restarting.delay, restarting.restarts) == (1, 1)
    assert all(e.path == "app/f" for e in seen)


async def test_an_idle_tree_never_wakes_up(autojump_clock: trio.testing.MockClock) -> None:
    """No polling: with restart policies and nesting, an idle tree takes no task step."""
    inner = orchestra.Conductor(
        {"x": orchestra.PlayerSpec(trio.sleep_forever, restart=ALWAYS)}, strategy="one_for_all"
    )
    conductor = orchestra.Conductor(
        {"inner": inner, "y": orchestra.PlayerSpec(trio.sleep_forever, restart=ON_FAILURE)}
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(1)  # let everything settle
        counter = StepCounter()
        trio.lowlevel.add_instrument(counter)
        await trio.sleep(3600)
        trio.lowlevel.remove_instrument(counter)
        assert counter.steps == 1  # only this test's own wake-up
        conductor.stop()


async def test_a_restart_storm_keeps_memory_flat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Thousands of restarts through backoff timers: memory does not grow (see test_soak)."""
    runs = 0

    async def crash() -> None:
        nonlocal runs
        runs += 1
        await trio.sleep(0.01)
        raise ValueError("crash")

    tiny = orchestra.Backoff(initial=0.01, factor=1, maximum=0.01, jitter=0)
    conductor = orchestra.Conductor(
        {"c": orchestra.PlayerSpec(crash, restart=ON_FAILURE, backoff=tiny)},
        max_restarts=10,
        period=0.05,
    )
    logging.getLogger("trio_orchestra").setLevel(logging.CRITICAL)
    tracemalloc.start()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(20)  # warm up: 1000 restarts
            gc.collect()  # what is left of the failures is cyclic garbage, not growth
            before = tracemalloc.get_traced_memory()[0]
            await trio.sleep(100)  # 5000 more
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            conductor.stop()
    finally:
        tracemalloc.stop()
        logging.getLogger("trio_orchestra").setLevel(logging.NOTSET)
    assert runs > 5000
    assert after - before < 16 * 1024


async def test_a_hundred_nested_conductors(autojump_clock: trio.testing.MockClock) -> None:
    """A hundred nested conductors (suture's test): all start, all stop, all in the tree."""
    children: dict[str, Callable[..., object]] = {
        f"c{i}": orchestra.Conductor({"p": trio.sleep_forever}) for i in range(100)
    }
    conductor = orchestra.Conductor(children, name="root")  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        tree = conductor.status()
        assert len(tree.children) == 100
        assert tree.children["c42"].children["p"].path == "root/c42/p"
        conductor.stop()
    assert all(node.state is orchestra.PlayerState.DONE for node in conductor.status().walk())


def test_supervision_options_are_validated() -> None:
    """Bad strategies, intensities, backoffs and combinations are refused at construction."""
    with pytest.raises(ValueError, match=r"^conductor 'c': strategy must be 'one_for_one',"):
        orchestra.Conductor(name="c", strategy="all_for_one")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^conductor 'c': max_restarts must be a whole number"):
        orchestra.Conductor(name="c", max_restarts=-1)
    with pytest.raises(TypeError, match=r"^conductor 'c': max_restarts must be an int, not float$"):
        orchestra.Conductor(name="c", max_restarts=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^conductor 'c': period must be more than 0 seconds$"):
        orchestra.Conductor(name="c", period=0)
    with pytest.raises(ValueError, match=r"^Backoff: jitter must be at most 0.25"):
        orchestra.Backoff(jitter=0.5)
    with pytest.raises(ValueError, match=r"^Backoff: factor must be 1 or more, not 0.5$"):
        orchestra.Backoff(factor=0.5)
    with pytest.raises(
        ValueError, match=r"^Backoff: maximum \(1\) must be at least initial \(2\)$"
    ):
        orchestra.Backoff(initial=2, maximum=1)
    with pytest.raises(ValueError, match=r"a significant player cannot have Restart.ALWAYS"):
        orchestra.PlayerSpec(trio.sleep_forever, significant=True, restart=ALWAYS)


def test_the_default_backoff_meets_the_contract() -> None:
    """First delay at most 1 s, growth at least 1.5, cap between 10x the first and 60 s."""
    default = orchestra.Backoff()
    assert 0 < default.initial <= 1
    assert default.factor >= 1.5
    assert 10 * default.initial <= default.maximum <= 60
    assert orchestra.PlayerSpec(trio.sleep_forever).backoff == default


async def test_a_restart_at_once_starts_with_fresh_context_variables(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A player restarted with no backoff does not see the context variables of its last run."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="fresh")
    seen: list[str] = []

    async def sets_then_fails() -> None:
        seen.append(var.get())
        var.set("stale")
        if len(seen) < 3:
            raise ValueError("again")
        await trio.sleep_forever()

    spec_ = orchestra.PlayerSpec(sets_then_fails, restart=ON_FAILURE, backoff=None)
    await run_then_stop(orchestra.Conductor({"p": spec_}), after=1)
    assert seen == ["fresh", "fresh", "fresh"]


async def test_a_crash_loop_shares_the_event_loop(autojump_clock: trio.testing.MockClock) -> None:
    """A player failing at once, restarted with no backoff, lets the other tasks run."""
    ticks = 0
    crashes = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async def crash() -> None:
        nonlocal crashes
        crashes += 1
        raise ValueError("crash")

    conductor = orchestra.Conductor(
        {
            "ticker": ticker,
            "crash": orchestra.PlayerSpec(crash, restart=ON_FAILURE, backoff=None),
        },
        max_restarts=1000,
        period=1,
    )
    logging.getLogger("trio_orchestra").setLevel(logging.CRITICAL)
    try:
        with pytest.raises(orchestra.ConductorError):
            await conductor()
    finally:
        logging.getLogger("trio_orchestra").setLevel(logging.NOTSET)
    assert crashes == 1001
    assert ticks >= 1000  # about one tick per restart: the loop was shared
