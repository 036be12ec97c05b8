"""The testing kit and its pytest plugin (contract s. 7)."""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra.testing import (
    BackgroundRun,
    Fail,
    Finish,
    ScriptedPlayer,
    assert_failures,
    background,
)

ON_FAILURE = orchestra.Restart.ON_FAILURE
ONE_SECOND = orchestra.Backoff(initial=1, jitter=0)


async def test_a_scripted_player_fails_recovers_and_counts_its_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """fail() makes the current run raise; the restarted run is counted and timed."""
    player = ScriptedPlayer(ready_after=2)
    conductor = orchestra.Conductor(
        {"p": orchestra.PlayerSpec(player, restart=ON_FAILURE, backoff=ONE_SECOND)}, name="app"
    )
    async with background(conductor) as run:
        await player.wait_runs(1)
        player.fail(ValueError("boom"))
        await player.wait_runs(2)
        assert (player.runs, player.started_times) == (2, [2, 5])  # 2 + 1 backoff + 2 ready
        assert await run.stop("bye") is None
    assert player.stop_reasons == ["bye"]


async def test_a_scripted_player_finishes_and_fails_to_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """finish() returns; fail_at_start makes the start fail, raised when entering the block."""
    done = ScriptedPlayer()
    async with background(orchestra.Conductor({"d": done})) as run:
        done.finish()
        assert await run.wait_stopped() is None  # its only player is done
    broken = ScriptedPlayer(fail_at_start=OSError("port"))
    with pytest.raises(orchestra.ConductorError) as info:
        async with background(orchestra.Conductor({"b": broken}, name="app")):
            pytest.fail("the block must not run")
    assert_failures(info.value, {"app/b": OSError})


async def test_a_script_fails_twice_then_runs(autojump_clock: trio.testing.MockClock) -> None:
    """Each run takes the next step of the script; after it, the runs wait for commands."""
    flaky = ScriptedPlayer(script=[Fail(after=1), Fail(after=1, error=KeyError("k"))])
    conductor = orchestra.Conductor(
        {"p": orchestra.PlayerSpec(flaky, restart=ON_FAILURE, backoff=ONE_SECOND)}, name="app"
    )
    async with background(conductor) as run:
        await trio.sleep(100)
        # Ready at 0, fails at 1; 1 s of backoff: ready at 2, fails at 3; 2 s: ready at 5.
        assert flaky.started_times == [0, 2, 5]
        node = conductor.status().children["p"]
        assert (node.state, node.restarts) == (orchestra.PlayerState.RUNNING, 2)
        assert isinstance(node.last_error, KeyError)
        assert await run.stop() is None


async def test_a_repeated_step_fails_every_run(autojump_clock: trio.testing.MockClock) -> None:
    """A script is read lazily: itertools.repeat(Fail()) fails runs until the limit."""
    broken = ScriptedPlayer(script=itertools.repeat(Fail(after=2)))
    conductor = orchestra.Conductor(
        {"p": orchestra.PlayerSpec(broken, restart=ON_FAILURE, backoff=None)},
        name="app",
        max_restarts=2,
        period=60,
    )
    async with background(conductor) as run:
        error = await run.wait_stopped()
    assert_failures(error, {"app/p": ValueError})
    assert error is not None
    assert broken.started_times == [0, 2, 4]
    assert str(error.failures["app/p"]) == "scripted failure of run 3"


async def test_a_finish_step_and_a_command_that_comes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Finish(after) returns on time; a command sent before a step's time wins over it."""
    batch = ScriptedPlayer(script=[Finish(after=3)])
    async with background(orchestra.Conductor({"b": batch})) as run:
        assert await run.wait_stopped() is None
        assert trio.current_time() == 3
    early = ScriptedPlayer(script=[Fail(after=10)])
    async with background(orchestra.Conductor({"e": early})) as run:
        early.finish()
        assert await run.wait_stopped() is None
        assert trio.current_time() == 3  # no later than the finish command


def test_script_steps_are_checked() -> None:
    """A step's time must be a number of seconds, 0 or more."""
    with pytest.raises(TypeError, match="after must be a number of seconds"):
        Fail(after="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after must be 0 seconds or more"):
        Finish(after=-1)
    with pytest.raises(ValueError, match="after must be 0 seconds or more"):
        Finish(after=float("nan"))


@pytest.mark.parametrize("step", ["fail", None])
async def test_a_script_step_of_the_wrong_type_fails_the_run(
    autojump_clock: trio.testing.MockClock, step: object
) -> None:
    """A step that is neither Fail nor Finish is a TypeError when its run reads it."""
    odd = ScriptedPlayer(script=[step])  # type: ignore[list-item]
    async with background(orchestra.Conductor({"o": odd}, name="app")) as run:
        error = await run.wait_stopped()
    assert_failures(error, {"app/o": TypeError})


async def test_a_reused_error_is_raised_afresh_each_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One error for every run: raised as given, without the tracebacks of the runs before."""

    class Empty(Exception):  # an error that is false: it must still be raised as given
        def __len__(self) -> int:
            return 0

    error = Empty("mine")
    broken = ScriptedPlayer(script=itertools.repeat(Fail(after=1, error=error)))
    conductor = orchestra.Conductor(
        {"p": orchestra.PlayerSpec(broken, restart=ON_FAILURE, backoff=None)},
        max_restarts=1000,
        period=1,
    )
    async with background(conductor) as run:
        await trio.sleep(50.5)
        assert conductor.status().children["p"].last_error is error
        assert run.running
        assert len(traceback.extract_tb(error.__traceback__)) < 10  # one raise, not 50
        await run.stop()


async def test_misbehaving_on_stop(autojump_clock: trio.testing.MockClock) -> None:
    """ignore_soft_stop waits for the hard cancel; hang_on_stop straggles; fail_on_stop raises."""
    deaf = ScriptedPlayer(ignore_soft_stop=True)
    hung = ScriptedPlayer(hang_on_stop=10)
    angry = ScriptedPlayer(fail_on_stop=KeyError("k"))
    conductor = orchestra.Conductor(
        {"deaf": deaf, "hung": hung, "angry": angry}, name="app", grace=2
    )
    async with background(conductor) as run:
        error = await run.stop()
    assert_failures(error, {"app/angry": KeyError, "app/hung": orchestra.StopTimeout})
    # Reverse order: angry raises at 0; hung hangs 10 s, hard-cancelled at 2, a straggler
    # from 4, gone at 10; deaf ignores its soft phase and is cancelled at 10 + 2.
    assert trio.current_time() == 12


async def test_an_unread_failure_is_raised_when_the_block_exits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failure nobody read with wait_stopped() comes out of the block, unwrapped."""
    player = ScriptedPlayer()

    async def fail_and_leave() -> None:
        async with background(orchestra.Conductor({"p": player})):
            player.fail(ValueError("unread"))
            await trio.sleep(1)

    with pytest.raises(orchestra.ConductorError):
        await fail_and_leave()


def test_assert_failures_says_what_differs() -> None:
    """assert_failures names the paths and types it expected and what it got."""
    with pytest.raises(AssertionError, match=r"^expected a ConductorError failing at \['a'\]"):
        assert_failures(None, {"a": ValueError})
    error = orchestra.ConductorError("x", [ValueError(1)], paths={})
    with pytest.raises(AssertionError, match=r"^expected failures at \['a'\], got \[\]$"):
        assert_failures(error, {"a": ValueError})


async def test_the_plugin_fixtures(
    autojump_clock: trio.testing.MockClock,
    start_conductor: Callable[[orchestra.Conductor], Awaitable[BackgroundRun]],
    scripted_player: Callable[..., ScriptedPlayer],
) -> None:
    """start_conductor runs a conductor until the test ends; scripted_player makes players."""
    player = scripted_player(ready_after=3)
    run = await start_conductor(orchestra.Conductor({"p": player}))
    assert trio.current_time() == 3
    assert run.running
    assert run.conductor.statistics().running == 1
