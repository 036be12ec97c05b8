"""The stop token and the subscription rule (contract s. 2)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra

from .conftest import Journal, run_then_stop


def test_current_stop_outside_a_player_is_an_error() -> None:
    """current_stop() outside a player raises RuntimeError with one sentence."""
    with pytest.raises(
        RuntimeError,
        match=r"^current_stop\(\) was called outside a player; only code a Conductor runs has one$",
    ):
        orchestra.current_stop()


async def test_the_token_before_a_stop(autojump_clock: trio.testing.MockClock) -> None:
    """Before a stop: not requested, no reason, an infinite deadline; the same token each time."""
    seen: list[orchestra.StopToken] = []

    async def look() -> None:
        token = orchestra.current_stop()
        assert token is orchestra.current_stop()
        assert (token.requested, token.reason, token.deadline) == (False, None, math.inf)
        assert repr(token) == "<StopToken not requested>"
        seen.append(token)

    await orchestra.Conductor({"look": look})()
    assert len(seen) == 1


async def test_the_token_during_the_soft_phase(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """wait() returns at the stop; requested, reason and deadline (now + grace) are set."""

    async def player() -> None:
        token = orchestra.current_stop()
        await token.wait()
        journal(f"{token.requested} {token.reason} {token.deadline}")
        await token.wait()  # returns at once now
        journal("again")

    conductor = orchestra.Conductor({"p": orchestra.PlayerSpec(player, grace=7)})
    await run_then_stop(conductor, after=3, reason="deploy")
    assert journal.entries == [(3, "True deploy 10.0"), (3, "again")]


async def test_soft_scope_is_cancelled_at_the_stop_and_the_rest_runs_on(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The block in soft_scope() ends at the stop; code after it runs in the soft phase."""

    async def server() -> None:
        token = orchestra.current_stop()
        with token.soft_scope() as scope:
            await trio.sleep_forever()
        journal(f"accept loop ended, cancelled_caught={scope.cancelled_caught}")
        await trio.sleep(2)  # drain
        journal("drained")

    await run_then_stop(orchestra.Conductor({"s": server}), after=1)
    assert journal.entries == [
        (1, "accept loop ended, cancelled_caught=True"),
        (3, "drained"),
    ]


async def test_soft_scope_after_the_stop_is_cancelled_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A soft_scope entered after the stop was requested is already cancelled."""

    async def late() -> None:
        token = orchestra.current_stop()
        await token.wait()
        with token.soft_scope():
            await trio.sleep_forever()
        journal("skipped")

    await run_then_stop(orchestra.Conductor({"late": late}))
    assert journal.entries == [(0, "skipped")]


async def test_an_unsubscribed_player_is_cancelled_at_once(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """No token asked for, no waiting: plain Trio cancellation, with finally blocks run."""

    async def plain() -> None:
        try:
            await trio.sleep_forever()
        finally:
            journal("finally ran")

    conductor = orchestra.Conductor({"plain": plain}, grace=30)
    await run_then_stop(conductor, after=2)
    assert journal.entries == [(2, "finally ran")]
    assert trio.current_time() == 2
    assert not conductor.status().children["plain"].cut_off  # cancelled at once by design


async def test_a_token_asked_for_after_a_hard_cancel_says_so(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A player that asks only after being cancelled gets a requested token, deadline now."""

    async def asks_late() -> None:
        try:
            await trio.sleep_forever()
        finally:
            token = orchestra.current_stop()
            journal(f"{token.requested} {token.reason} {token.deadline}")

    await run_then_stop(orchestra.Conductor({"a": asks_late}), after=4, reason="bye")
    assert journal.entries == [(4, "True bye 4.0")]


async def test_the_token_is_per_player(autojump_clock: trio.testing.MockClock) -> None:
    """Each player has its own token; a child task of a player sees its player's token."""
    tokens: dict[str, orchestra.StopToken] = {}

    async def player(name: str) -> None:
        tokens[name] = orchestra.current_stop()
        async with trio.open_nursery() as nursery:

            async def child() -> None:
                assert orchestra.current_stop() is tokens[name]

            nursery.start_soon(child)

    await orchestra.Conductor({"a": partial(player, "a"), "b": partial(player, "b")})()
    assert tokens["a"] is not tokens["b"]


async def test_soft_stop_while_starting_keeps_its_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stop that comes while a subscribed player starts keeps its grace once it is started."""

    async def ignores_the_soft_stop(*, task_status: trio.TaskStatus[None]) -> None:
        orchestra.current_stop()  # subscribes: it has a soft phase
        await trio.sleep(1)  # still starting when the stop comes, at 0.5
        task_status.started()  # at 1, before its grace ends (0.5 + 2 = 2.5)
        await trio.sleep_forever()  # ignores the soft stop: must be cancelled at 2.5

    conductor = orchestra.Conductor({"p": orchestra.PlayerSpec(ignores_the_soft_stop, grace=2)})
    with trio.move_on_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conductor)
            await trio.sleep(0.5)
            conductor.stop()
    assert trio.current_time() == 2.5
