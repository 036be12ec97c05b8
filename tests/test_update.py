"""Conductor.update: a running tree changed as one transaction (contract s. 12)."""

from __future__ import annotations

import logging
from functools import partial

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra import events
from trio_orchestra.testing import background

from .conftest import Journal


async def service(
    journal: Journal,
    name: str,
    ready: float = 1.0,
    linger: float = 1.0,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Ready after *ready* s; on a stop, takes *linger* s to return."""
    stop = orchestra.current_stop()
    journal(f"{name} begins")
    await trio.sleep(ready)
    task_status.started()
    journal(f"{name} ready")
    await stop.wait()
    await trio.sleep(linger)
    journal(f"{name} gone")


async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Fails to start."""
    await trio.sleep(1)
    raise OSError("address already in use")


def spec(journal: Journal, name: str, *args: float, **options: object) -> orchestra.PlayerSpec:
    """A spec of :func:`service`; the same name gives an equal spec only with the same partial."""
    return orchestra.PlayerSpec(partial(service, journal, name, *args), **options)  # type: ignore[arg-type]


def states(conductor: orchestra.Conductor) -> dict[str, str]:
    """Each player's state, by path."""
    return {node.path: node.state.value for node in conductor.status().walk()}


async def test_equal_specs_are_left_alone_and_the_rest_is_changed_in_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Removed first (dependents first), then new and changed ones one at a time, each ready."""
    db, web, old = spec(journal, "db"), spec(journal, "web"), spec(journal, "old")
    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {"db": db, "old": old, "web": web}, name="app", on_event=seen.append
    )
    async with background(conductor) as run:
        assert trio.current_time() == 3
        journal.entries.clear()
        await run.conductor.update(
            {
                "db": db,  # equal: left alone
                "cache": spec(journal, "cache"),  # new
                "web": spec(journal, "web", 1, 1, grace=10),  # changed
            }
        )
        # old's stop (1 s), cache's start (1 s), web's stop and start (2 s)
        assert trio.current_time() == 7
        assert journal.entries == [
            (4, "old gone"),
            (4, "cache begins"),
            (5, "cache ready"),
            (6, "web gone"),
            (6, "web begins"),
            (7, "web ready"),
        ]
        status = run.conductor.status()
        assert list(status.children) == ["db", "cache", "web"]
        assert {name: node.restarts for name, node in status.children.items()} == {
            "db": 0,
            "cache": 0,
            "web": 0,
        }
        assert run.conductor.players["web"].grace == 10
        assert await run.stop() is None
    kinds = [
        (type(e).__name__, e.added, e.removed, e.changed)
        for e in seen
        if isinstance(e, (events.Updating, events.Updated))
    ]
    assert kinds == [
        ("Updating", ("cache",), ("old",), ("web",)),
        ("Updated", ("cache",), ("old",), ("web",)),
    ]


async def test_a_player_moved_after_a_new_one_is_restarted_once_the_new_one_is_ready(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Web after db becomes web after db and cache (new): cache starts first, then web."""
    db = spec(journal, "db", after=())
    conductor = orchestra.Conductor({"db": db, "web": spec(journal, "web", after=("db",))})
    async with background(conductor) as run:
        journal.entries.clear()
        await run.conductor.update(
            {
                "db": db,
                "cache": spec(journal, "cache", 2, after=()),
                "web": spec(journal, "web", after=("db", "cache")),
            }
        )
        assert journal.entries == [
            (2, "cache begins"),
            (4, "cache ready"),
            (5, "web gone"),
            (5, "web begins"),
            (6, "web ready"),
        ]
        assert run.conductor.status().children["web"].after == ("db", "cache")
        journal.entries.clear()
        assert await run.stop() is None
    assert journal.events[0] == "web gone"  # the new graph: web stops before cache and db


async def test_a_new_player_that_fails_to_start_stops_the_update_and_is_left_out(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The steps before it stay, it is not in the tree, the ones after it are not made."""
    db = spec(journal, "db")
    seen: list[events.Event] = []
    conductor = orchestra.Conductor({"db": db}, name="app", on_event=seen.append)
    async with background(conductor) as run:
        with pytest.raises(orchestra.UpdateError) as caught:
            await run.conductor.update(
                {
                    "db": db,
                    "cache": spec(journal, "cache"),
                    "web": orchestra.PlayerSpec(broken),
                    "jobs": spec(journal, "jobs"),
                }
            )
        error = caught.value
        assert str(error) == (
            "the update stopped at player 'app/web', which failed to start:"
            " OSError: address already in use"
        )
        assert error.path == "app/web"
        assert isinstance(error.cause, OSError)
        assert error.__cause__ is error.cause
        assert list(run.conductor.status().children) == ["db", "cache"]
        assert states(run.conductor) == {
            "app": "running",
            "app/db": "running",
            "app/cache": "running",
        }
        assert list(run.conductor.players) == ["db"]  # the declaration is the old one
        assert await run.stop() is None
    failed = [e for e in seen if isinstance(e, events.UpdateFailed)]
    assert [(e.path, e.player, type(e.error)) for e in failed] == [("app", "app/web", OSError)]


async def test_a_changed_player_that_fails_to_start_gets_its_old_spec_back(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Web's new spec fails: its old one is started again, and the update raises."""
    web = spec(journal, "web")
    conductor = orchestra.Conductor({"web": web}, name="app")
    async with background(conductor) as run:
        journal.entries.clear()
        with pytest.raises(orchestra.UpdateError, match=r"at player 'app/web'"):
            await run.conductor.update({"web": orchestra.PlayerSpec(broken)})
        assert journal.entries == [(2, "web gone"), (3, "web begins"), (4, "web ready")]
        node = run.conductor.status().children["web"]
        assert node.state is orchestra.PlayerState.RUNNING
        assert isinstance(node.last_error, OSError)
        assert run.conductor.players["web"] is web
        # The running spec is the old one: an update to it changes nothing.
        journal.entries.clear()
        await run.conductor.update({"web": web})
        assert journal.entries == []
        assert await run.stop() is None


async def test_a_nested_conductor_is_updated_rather_than_restarted(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The same options, new players: its unchanged player keeps running, the new one starts."""
    pool = spec(journal, "pool")
    conductor = orchestra.Conductor(
        {"jobs": orchestra.Conductor({"pool": pool}, grace=3)}, name="app"
    )
    async with background(conductor) as run:
        journal.entries.clear()
        new_jobs = orchestra.Conductor({"pool": pool, "extra": spec(journal, "extra")}, grace=3)
        await run.conductor.update({"jobs": new_jobs})
        assert journal.entries == [(1, "extra begins"), (2, "extra ready")]
        assert states(run.conductor) == {
            "app": "running",
            "app/jobs": "running",
            "app/jobs/pool": "running",
            "app/jobs/extra": "running",
        }
        assert run.conductor.players["jobs"].fn is new_jobs
        assert await run.stop() is None


async def test_a_nested_conductor_with_other_options_is_restarted(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A new grace for the nested conductor: it is restarted, its players with it."""
    pool = spec(journal, "pool")
    conductor = orchestra.Conductor({"jobs": orchestra.Conductor({"pool": pool}, grace=3)})
    async with background(conductor) as run:
        journal.entries.clear()
        await run.conductor.update({"jobs": orchestra.Conductor({"pool": pool}, grace=9)})
        assert journal.entries == [(2, "pool gone"), (2, "pool begins"), (3, "pool ready")]
        assert await run.stop() is None


async def test_a_failure_in_a_nested_update_names_the_inner_player(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The inner update's UpdateError comes out as it is; the outer one stops there too."""
    pool = spec(journal, "pool")
    conductor = orchestra.Conductor({"jobs": orchestra.Conductor({"pool": pool})}, name="app")
    async with background(conductor) as run:
        with pytest.raises(orchestra.UpdateError) as caught:
            await run.conductor.update(
                {
                    "jobs": orchestra.Conductor({"pool": pool, "bad": broken}),
                    "later": spec(journal, "later"),
                }
            )
        assert caught.value.path == "app/jobs/bad"
        assert list(run.conductor.status().children) == ["jobs"]
        assert list(run.conductor.status().children["jobs"].children) == ["pool"]
        assert await run.stop() is None


async def test_a_second_update_waits_for_the_first(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Two updates at once: applied one after the other, the second from where the first left."""
    a = spec(journal, "a")
    conductor = orchestra.Conductor({"a": a})
    async with background(conductor) as run:
        journal.entries.clear()
        b = spec(journal, "b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.conductor.update, {"a": a, "b": b})
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(run.conductor.update, {"a": a, "b": b, "c": spec(journal, "c")})
        assert journal.entries == [
            (1, "b begins"),
            (2, "b ready"),
            (2, "c begins"),
            (3, "c ready"),
        ]
        assert await run.stop() is None


async def test_an_invalid_declaration_changes_nothing(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A cycle, an unknown name, a bad spec: the constructor's errors, before any change."""
    a = spec(journal, "a")
    conductor = orchestra.Conductor({"a": a}, name="app")
    async with background(conductor) as run:
        journal.entries.clear()
        with pytest.raises(ValueError, match=r"^app: dependency cycle x -> y -> x$"):
            await run.conductor.update(
                {"x": spec(journal, "x", after=("y",)), "y": spec(journal, "y", after=("x",))}
            )
        with pytest.raises(TypeError, match=r"^player app/x: a player must be an async callable"):
            await run.conductor.update({"a": a, "x": print})  # type: ignore[dict-item]
        assert journal.entries == []
        assert list(run.conductor.players) == ["a"]
        assert await run.stop() is None


async def test_add_remove_and_restart_are_refused_during_an_update(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """One sentence, naming the conductor; the update goes on."""
    a = spec(journal, "a")
    conductor = orchestra.Conductor({"a": a}, name="app")
    async with background(conductor) as run:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.conductor.update, {"a": a, "slow": spec(journal, "slow", 5)})
            await trio.sleep(1)
            with pytest.raises(
                RuntimeError,
                match=r"^cannot add a player: conductor 'app' is updating; try again once it is"
                r" done$",
            ):
                await run.conductor.add("x", spec(journal, "x"))
            with pytest.raises(RuntimeError, match=r"^cannot restart a player: .* is updating"):
                await run.conductor.restart("a")
        assert list(run.conductor.status().children) == ["a", "slow"]
        assert await run.stop() is None


async def test_a_reordered_line_restarts_nothing_and_stops_in_the_new_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Equal specs in another order: nothing restarts; the stop follows the new line."""
    a, b = spec(journal, "a"), spec(journal, "b")
    conductor = orchestra.Conductor({"a": a, "b": b})
    async with background(conductor) as run:
        journal.entries.clear()
        await run.conductor.update({"b": b, "a": a})
        assert journal.entries == []
        assert await run.stop() is None
    assert journal.events == ["a gone", "b gone"]


async def test_update_of_a_conductor_that_is_not_running_is_refused() -> None:
    """Before a run: a RuntimeError."""
    conductor = orchestra.Conductor({}, name="app")
    with pytest.raises(RuntimeError, match=r"^cannot update: conductor 'app' is not running"):
        await conductor.update({})


async def test_renaming_the_only_player_keeps_the_conductor_running(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The old name is removed before the new one starts; the conductor does not end between."""
    conductor = orchestra.Conductor({"web": spec(journal, "web")}, name="app")
    async with background(conductor) as run:
        journal.entries.clear()
        await run.conductor.update({"web2": spec(journal, "web2")})
        assert journal.entries == [(2, "web gone"), (2, "web2 begins"), (3, "web2 ready")]
        assert states(run.conductor) == {"app": "running", "app/web2": "running"}
        assert await run.stop() is None


async def test_an_update_to_no_players_ends_a_conductor_that_had_some(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """As when every player is done: it returns (a pool, created empty, would keep running)."""
    conductor = orchestra.Conductor({"web": spec(journal, "web")}, name="app")
    async with background(conductor) as run:
        await run.conductor.update({})
        assert await run.wait_stopped() is None
        assert trio.current_time() == 2


async def test_the_log_says_what_the_update_changes_and_why_a_player_stops(
    autojump_clock: trio.testing.MockClock, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    """One line before, one after, path by path; a changed player's stop says why."""
    a = spec(journal, "a")
    conductor = orchestra.Conductor({"a": a, "old": spec(journal, "old")}, name="app")
    async with background(conductor) as run:
        with caplog.at_level(logging.INFO, logger="trio_orchestra"):
            await run.conductor.update({"a": spec(journal, "a", 1, 1, grace=9)})
        assert await run.stop() is None
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "conductor app updating: removes old; restarts a (fn, grace)"
    assert "player app/old stopping (removed by an update), with 5 s to finish" in said
    assert "player app/a stopping (its spec changed in an update), with 5 s to finish" in said
    assert said[-1] == "conductor app updated: removes old; restarts a (fn, grace)"
