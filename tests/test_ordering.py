"""The dependency graph: start, stop, restart, rollback, dynamic changes (contract s. 9)."""

from __future__ import annotations

import sys
from functools import partial

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra
from trio_orchestra import events
from trio_orchestra._ordering import longest_path, resolve, topological
from trio_orchestra.testing import assert_failures, background

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

from .conftest import Journal, run_then_stop


async def service(
    journal: Journal,
    name: str,
    ready: float = 0.0,
    linger: float = 0.0,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Ready after *ready* seconds; on a stop, take *linger* seconds to return."""
    stop = orchestra.current_stop()
    journal(f"{name} begins")
    await trio.sleep(ready)
    journal(f"{name} ready")
    task_status.started()
    await stop.wait()
    journal(f"{name} stopping")
    try:
        await trio.sleep(linger)
    finally:
        journal(f"{name} gone")


def spec(journal: Journal, name: str, *args: float, **options: object) -> orchestra.PlayerSpec:
    """A spec of :func:`service` named *name*."""
    return orchestra.PlayerSpec(partial(service, journal, name, *args), **options)  # type: ignore[arg-type]


def diamond(journal: Journal, **options: object) -> orchestra.Conductor:
    """A graph: db and cache depend on nothing; worker is after db; web after both."""
    return orchestra.Conductor(
        {
            "db": spec(journal, "db", 1, 1, after=()),
            "cache": spec(journal, "cache", 2, 3, after=()),
            "worker": spec(journal, "worker", 1, 1, after=("db",)),
            "web": spec(journal, "web", 1, 2, after=("db", "cache")),
        },
        name="app",
        grace=10,
        **options,  # type: ignore[arg-type]
    )


# -- start ----------------------------------------------------------------------------------


async def test_a_diamond_starts_each_player_once_what_it_is_after_is_started(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """Independent players start together; each dependent starts once its last dependency is."""
    conductor = diamond(journal)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        assert trio.current_time() == 3
        conductor.stop()
    starts = {event: when for when, event in journal.entries if event.endswith(("begins", "ready"))}
    assert starts == {
        "db begins": 0,
        "cache begins": 0,
        "db ready": 1,
        "worker begins": 1,
        "cache ready": 2,
        "worker ready": 2,
        "web begins": 2,
        "web ready": 3,
    }


async def test_a_thousand_independent_players_start_side_by_side(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """1 000 players with after=() that each take 10 ms are all started at 10 ms (s. 14)."""

    async def slow(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(0.01)
        task_status.started()
        await trio.sleep_forever()

    players = {f"p{i}": orchestra.PlayerSpec(slow, after=()) for i in range(1000)}
    conductor = orchestra.Conductor(players)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        assert trio.current_time() == pytest.approx(0.01)
        conductor.stop()


@pytest.mark.parametrize("explicit", [False, True], ids=["default line", "named chain"])
async def test_a_chain_of_a_thousand_starts_one_after_another(
    autojump_clock: trio.testing.MockClock, *, explicit: bool
) -> None:
    """A chain of 1 000 players taking 10 ms each is started at 10 s, named or by default."""

    async def slow(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(0.01)
        task_status.started()
        await trio.sleep_forever()

    players = {
        f"p{i}": orchestra.PlayerSpec(slow, after=(f"p{i - 1}",) if explicit and i else None)
        for i in range(1000)
    }
    conductor = orchestra.Conductor(players)
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        assert trio.current_time() == pytest.approx(10)
        conductor.stop()


# -- stop -----------------------------------------------------------------------------------


async def test_a_diamond_stops_each_player_once_everything_after_it_is_gone(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """Web and worker stop first, together; db once both are gone; cache once web is."""
    conductor = diamond(journal)
    await run_then_stop(conductor, after=7)  # started at 3, stopped at 10
    stops = {event: when for when, event in journal.entries if event.endswith(("stopping", "gone"))}
    assert stops == {
        "web stopping": 10,
        "worker stopping": 10,
        "worker gone": 11,
        "web gone": 12,
        "db stopping": 12,
        "cache stopping": 12,
        "db gone": 13,
        "cache gone": 15,
    }
    assert trio.current_time() == 15


async def test_the_stop_of_a_graph_takes_its_longest_path_of_graces(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Players that use their whole grace: the stop lasts the budget exactly, not the sum."""
    conductor = orchestra.Conductor(
        {
            "db": spec(journal, "db", 0, 99, grace=4, after=()),
            "cache": spec(journal, "cache", 0, 99, grace=1, after=()),
            "worker": spec(journal, "worker", 0, 99, grace=3, after=("db",)),
            "web": spec(journal, "web", 0, 99, grace=2, after=("db", "cache")),
        },
        name="app",
    )
    assert conductor.stop_budget() == 7  # worker then db: 3 + 4
    await run_then_stop(conductor)
    assert trio.current_time() == 7
    assert journal.time_of("db stopping") == 3  # once worker (3 s) and web (2 s) are gone
    assert journal.time_of("cache stopping") == 2


async def test_a_wide_fan_out_stops_every_dependent_at_once_then_the_base(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """100 workers after db stop together; db stops when the slowest of them is gone."""
    players: dict[str, orchestra.PlayerSpec] = {"db": spec(journal, "db", 0, 1, after=())}
    for i in range(100):
        players[f"w{i}"] = spec(journal, f"w{i}", 0, i / 10, after=("db",))
    conductor = orchestra.Conductor(players, grace=20)
    assert conductor.stop_budget() == 40  # the longest path: one worker, then db
    await run_then_stop(conductor)
    assert {journal.time_of(f"w{i} stopping") for i in range(100)} == {0}
    assert journal.time_of("db stopping") == pytest.approx(9.9)
    assert trio.current_time() == pytest.approx(10.9)


async def test_a_deep_chain_stops_in_reverse_one_after_another(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A named chain of 20 stops as a line does: the last first, each after the next is gone."""
    players = {
        f"p{i}": spec(journal, f"p{i}", 0, 1, after=(f"p{i - 1}",) if i else ()) for i in range(20)
    }
    conductor = orchestra.Conductor(players, grace=5)
    assert conductor.stop_budget() == 100
    await run_then_stop(conductor)
    assert [journal.time_of(f"p{i} stopping") for i in range(20)] == list(range(19, -1, -1))
    assert trio.current_time() == 20


async def test_the_order_passes_through_a_player_that_has_finished(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """With c after b after a and b done, c still stops before a (not side by side)."""

    async def brief() -> None:
        journal("b done")

    for after in (None, ("b",)):
        journal.entries.clear()
        conductor = orchestra.Conductor(
            {
                "a": spec(journal, "a", 0, 1),
                "b": orchestra.PlayerSpec(brief, after=None if after is None else ("a",)),
                "c": spec(journal, "c", 0, 1, after=after),
            }
        )
        start = trio.current_time()
        await run_then_stop(conductor, after=1)
        assert journal.time_of("c stopping") - start == 1
        assert journal.time_of("a stopping") - start == 2


async def test_parallel_stop_ignores_the_edges(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """stop_order='parallel' stops every player at once, whatever it is after."""
    conductor = diamond(journal, stop_order="parallel")
    await run_then_stop(conductor)
    assert {journal.time_of(f"{name} stopping") for name in ("db", "cache", "web")} == {3}


# -- rollback -------------------------------------------------------------------------------


async def test_a_start_failure_rolls_back_dependents_first(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A start failure of web: the others stop, db only once worker is gone."""

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(0.5)
        raise OSError("no port")

    conductor = orchestra.Conductor(
        {
            "db": spec(journal, "db", 1, 1, after=()),
            "cache": spec(journal, "cache", 2, 3, after=()),
            "worker": spec(journal, "worker", 1, 2, after=("db",)),
            "web": orchestra.PlayerSpec(broken, after=("db", "cache")),
        },
        name="app",
    )
    with pytest.raises(orchestra.ConductorError) as caught:
        await conductor()
    assert_failures(caught.value, {"app/web": OSError})
    assert journal.time_of("worker stopping") == 2.5
    assert journal.time_of("cache stopping") == 2.5
    assert journal.time_of("db stopping") == 4.5  # after worker's 2 s
    assert trio.current_time() == 5.5


async def test_a_stop_while_starting_ends_the_start_in_graph_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A stop at 1.5 s: web is never started; the players still starting stop, db last."""
    conductor = diamond(journal)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conductor)
        await trio.sleep(1.5)
        conductor.stop("enough")
    assert "web begins" not in journal.events
    # worker and cache see the stop once they are ready (at 2 s); db once worker is gone.
    assert journal.time_of("worker stopping") == 2
    assert journal.time_of("db stopping") == 3
    assert trio.current_time() == 5


# -- restarts -------------------------------------------------------------------------------


async def failing_once(
    journal: Journal, state: dict[str, int], *, task_status: trio.TaskStatus[None]
) -> None:
    """db: ready at once; its first run fails 5 s in."""
    state["runs"] += 1
    journal("db begins")
    task_status.started()
    if state["runs"] == 1:
        await trio.sleep(5)
        journal("db fails")
        raise ValueError("connection lost")
    await trio.sleep_forever()


def restarting_diamond(journal: Journal, strategy: str) -> orchestra.Conductor:
    """A graph with a report after web, whose db fails once, under *strategy*."""
    db = orchestra.PlayerSpec(
        partial(failing_once, journal, {"runs": 0}),
        after=(),
        restart="on_failure",
        backoff=orchestra.Backoff(initial=1, jitter=0),
    )
    return orchestra.Conductor(
        {
            "db": db,
            "cache": spec(journal, "cache", 0, 3, after=(), restart="always"),
            "worker": spec(journal, "worker", 1, 1, after=("db",), restart="always"),
            "web": spec(journal, "web", 1, 2, after=("db", "cache"), restart="always"),
            "report": spec(journal, "report", 1, 0, after=("web",), restart="always"),
        },
        name="app",
        strategy=strategy,  # type: ignore[arg-type]
    )


async def test_rest_for_one_restarts_everything_after_the_failed_player(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """At db's failure, report, then web and worker, stop; db restarts, then they do."""
    conductor = restarting_diamond(journal, "rest_for_one")
    async with background(conductor) as run:
        await trio.sleep(20)
        assert conductor.status().children["cache"].restarts == 0
        assert await run.stop() is None
    after_failure = sorted((when, event) for when, event in journal.entries if 5 <= when < 20)
    assert after_failure == sorted(
        [
            (5, "db fails"),
            (5, "report stopping"),
            (5, "worker stopping"),
            (5, "report gone"),
            (5, "web stopping"),
            (6, "worker gone"),
            (7, "web gone"),
            (8, "db begins"),  # every dependent gone at 7, then db's 1 s backoff
            (8, "worker begins"),
            (8, "web begins"),
            (9, "worker ready"),
            (9, "web ready"),
            (9, "report begins"),
            (10, "report ready"),
        ]
    )
    assert "cache stopping" not in [event for _, event in after_failure]


async def test_one_for_one_restarts_the_failed_player_alone(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """At db's failure, db alone restarts; the players after it keep running."""
    conductor = restarting_diamond(journal, "one_for_one")
    async with background(conductor) as run:
        await trio.sleep(20)
        assert await run.stop() is None
    during = [event for when, event in journal.entries if 5 <= when < 20]
    assert during == ["db fails", "db begins"]
    assert journal.entries[-1] == (27, "cache gone")  # stopped at 22: report, web, cache


async def test_one_for_all_restarts_every_player_in_graph_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """one_for_all: every player stops (dependents first) and starts again in graph order."""
    conductor = restarting_diamond(journal, "one_for_all")
    async with background(conductor) as run:
        await trio.sleep(20)
        assert conductor.status().children["cache"].restarts == 1
        assert await run.stop() is None
    assert journal.time_of("cache stopping") == 7  # once web is gone
    restarted = sorted((when, event) for when, event in journal.entries if 10 < when < 20)
    assert restarted == sorted(
        [
            (11, "db begins"),  # cache gone at 10, then the 1 s backoff
            (11, "cache begins"),
            (11, "cache ready"),
            (11, "worker begins"),
            (11, "web begins"),
            (12, "worker ready"),
            (12, "web ready"),
            (12, "report begins"),
            (13, "report ready"),
        ]
    )


# -- dynamic changes ------------------------------------------------------------------------


async def test_add_places_a_player_after_running_players(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """add() with after=: the new player is stopped before those it is after, not the others."""
    conductor = orchestra.Conductor(
        {"db": spec(journal, "db", 0, 1, after=()), "cache": spec(journal, "cache", 0, 5, after=())}
    )
    async with background(conductor) as run:
        await conductor.add("report", spec(journal, "report", 0, 2, after=("db",)))
        assert conductor.status().children["report"].after == ("db",)
        assert await run.stop() is None
    assert journal.time_of("report stopping") == 0
    assert journal.time_of("cache stopping") == 0
    assert journal.time_of("db stopping") == 2


async def test_add_to_a_line_by_name_turns_it_into_a_graph(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A line that gains a named edge keeps its own order and gets the new edge."""
    conductor = orchestra.Conductor(
        {"a": spec(journal, "a", 0, 1), "b": spec(journal, "b", 0, 1)}, grace=5
    )
    async with background(conductor) as run:
        await conductor.add("c", spec(journal, "c", 0, 1, after=("a",)))
        assert [node.after for node in conductor.status().children.values()] == [
            (),
            ("a",),
            ("a",),
        ]
        assert await run.stop() is None
    assert journal.time_of("b stopping") == journal.time_of("c stopping") == 0
    assert journal.time_of("a stopping") == 1


async def test_add_refuses_an_unknown_or_not_running_dependency(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """after= naming nothing, itself, or a player in backoff: ValueError, nothing added."""

    async def failing() -> None:
        raise ValueError("down")

    conductor = orchestra.Conductor(
        {
            "db": spec(journal, "db"),
            "flaky": orchestra.PlayerSpec(
                failing, restart="on_failure", backoff=orchestra.Backoff(initial=10, jitter=0)
            ),
        },
        name="app",
    )
    async with background(conductor) as run:
        await trio.sleep(1)
        for after, message in [
            (("nope",), r"^app: player 'x' is after 'nope', which is not a player of app$"),
            (("x",), r"^app: player 'x' cannot be after itself$"),
            (
                ("flaky",),
                (
                    r"^app: player 'x' is after 'flaky', which is not running \(backoff\);"
                    r" add it once 'flaky' runs$"
                ),
            ),
        ]:
            with pytest.raises(ValueError, match=message):
                await conductor.add("x", spec(journal, "x", after=after))
        assert "x" not in conductor.status().children
        assert await run.stop() is None


async def test_remove_refuses_to_pull_a_dependency_from_under_a_running_player(
    autojump_clock: trio.testing.MockClock,
    journal: Journal,
) -> None:
    """remove('db') while web names it: ValueError naming web; nothing stops."""
    conductor = orchestra.Conductor(
        {
            "db": spec(journal, "db", after=()),
            "web": spec(journal, "web", after=("db",)),
            "cache": spec(journal, "cache", after=("db",)),
        },
        name="app",
    )
    async with background(conductor) as run:
        with pytest.raises(
            ValueError,
            match=r"^cannot remove player 'app/db': 'web', 'cache' of conductor 'app' are after"
            r" it; remove them first$",
        ):
            await conductor.remove("db")
        assert "db stopping" not in journal.events
        await conductor.remove("web")
        await conductor.remove("cache")
        await conductor.remove("db")
        assert await run.stop() is None


async def test_remove_splices_a_player_out_of_the_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """Removing the middle of a (named or default) chain keeps the ends in order."""
    for after in (None, ("b",)):
        journal.entries.clear()
        conductor = orchestra.Conductor(
            {
                "a": spec(journal, "a", 0, 1),
                "b": spec(journal, "b", 0, 1),
                "c": spec(journal, "c", 0, 1, after=after),
            },
            grace=5,
        )
        async with background(conductor) as run:
            if after is not None:
                await conductor.remove("c")  # c names b: take c out first
                await conductor.add("c", spec(journal, "c", 0, 1, after=("b",)))
                await conductor.remove("c")
                await conductor.add("c", spec(journal, "c", 0, 1))
            await conductor.remove("b")
            assert conductor.status().children["c"].after == ("a",)
            start = trio.current_time()
            assert await run.stop() is None
        assert journal.time_of("a stopping") > journal.time_of("c stopping")
        assert trio.current_time() - start == 2


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("players", "message"),
    [
        ({"web": ("db",)}, r"^app: player 'web' is after 'db', which is not a player of app$"),
        ({"web": ("web",)}, r"^app: player 'web' cannot be after itself$"),
        ({"web": ("db",), "db": ("web",)}, r"^app: dependency cycle web -> db -> web$"),
        (
            {"a": (), "b": ("d",), "c": None, "d": ("c",)},
            r"^app: dependency cycle b -> d -> c -> b$",
        ),
    ],
)
def test_a_broken_graph_is_refused_at_construction(
    players: dict[str, tuple[str, ...] | None], message: str
) -> None:
    """Unknown names, self-edges and cycles: one ValueError naming the conductor and the rule."""

    async def idle() -> None:
        await trio.sleep_forever()

    specs = {name: orchestra.PlayerSpec(idle, after=after) for name, after in players.items()}
    with pytest.raises(ValueError, match=message):
        orchestra.Conductor(specs, name="app")


@pytest.mark.parametrize(
    ("after", "error", "message"),
    [
        ("db", TypeError, r"after must be a tuple of player names, such as \('db',\), not str$"),
        (("db", 3), TypeError, r"after must hold player names \(str\), not int$"),
        (("db", "db"), ValueError, r"after names 'db' twice$"),
    ],
)
def test_a_bad_after_is_refused_by_the_spec(after: object, error: type, message: str) -> None:
    """A bare str or a non-str name is a TypeError; a repeated name is a ValueError."""

    async def idle() -> None:
        await trio.sleep_forever()

    with pytest.raises(error, match=message):
        orchestra.PlayerSpec(idle, after=after)  # type: ignore[arg-type]


def test_the_resolved_edges_and_the_status_show_the_graph() -> None:
    """after=None is after the player before; after=() is after nothing."""
    edges = resolve({"a": None, "b": None, "c": (), "d": ("a", "c"), "e": None}, "app")
    assert edges == {"a": (), "b": ("a",), "c": (), "d": ("a", "c"), "e": ("d",)}
    assert resolve({"a": None, "b": None}, "app") is None
    assert topological({"web": ("db",), "db": ()}) == ["db", "web"]
    assert longest_path(["a", "b"], None, {"a": 1.0, "b": 2.0}.__getitem__) == 3

    async def idle() -> None:
        await trio.sleep_forever()

    conductor = orchestra.Conductor(
        {"db": idle, "web": orchestra.PlayerSpec(idle, after=("db",)), "cache": idle}
    )
    tree = conductor.status()
    assert [node.after for node in tree.children.values()] == [(), ("db",), ("web",)]
    assert tree.stop_budget == 15


# -- one stop deadline ----------------------------------------------------------------------


async def test_stop_within_gives_players_stopped_later_what_is_left(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A line of three, 5 s each, within=12: the third is hard-cancelled at 12 s."""
    deadlines: dict[str, float] = {}

    def on_event(event: orchestra.events.Event) -> None:
        if isinstance(event, orchestra.events.Stopping):
            deadlines[event.path] = event.deadline

    conductor = orchestra.Conductor(
        {name: spec(journal, name, 0, 5) for name in "abc"}, grace=10, on_event=on_event
    )
    async with background(conductor) as run:
        assert conductor.status().stop_budget == 30
        conductor.stop("deploy", within=12)
        assert conductor.status().stop_budget == 12  # what is left of the deadline
        assert await run.stop() is None
    assert deadlines == {"conductor/c": 10, "conductor/b": 12, "conductor/a": 12}
    assert journal.time_of("a stopping") == 10
    assert trio.current_time() == 12
    assert conductor.status().children["a"].cut_off


async def test_the_deadline_hard_cancels_players_still_waiting_their_turn(
    autojump_clock: trio.testing.MockClock, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    """Players not yet asked to stop at the deadline are cancelled then, with one warning."""
    conductor = orchestra.Conductor(
        {name: spec(journal, name, 0, 5) for name in "abc"}, name="app", grace=10
    )
    await run_then_stop(conductor)  # no within: 15 s
    assert trio.current_time() == 15
    journal.entries.clear()
    conductor = orchestra.Conductor(
        {name: spec(journal, name, 0, 5) for name in "abc"}, name="app", grace=10
    )
    async with background(conductor):
        start = trio.current_time()
        conductor.stop("deploy", within=3)
    assert trio.current_time() - start == 3
    assert "a stopping" not in journal.events  # hard-cancelled at once, before its turn
    assert (
        "the stop deadline (within 3 s) has passed; hard-cancelling what still runs: a, b, c"
        in caplog.text
    )
    assert "player app/a was cut off at the stop deadline" in caplog.text


async def test_a_later_stop_may_only_bring_the_deadline_earlier(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A stop(within=20), then within=4 at 1 s: the deadline is 5 s; a later 30 s is ignored."""
    conductor = orchestra.Conductor({"a": spec(journal, "a", 0, 99)}, grace=60)
    async with background(conductor):
        start = trio.current_time()
        conductor.stop(within=20)
        await trio.sleep(1)
        conductor.stop(within=4)
        conductor.stop(within=30)
    assert trio.current_time() - start == 5


async def test_a_nested_conductor_keeps_its_parents_deadline(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The deadline reaches players of a nested conductor, and a later tightening too."""
    inner = orchestra.Conductor({name: spec(journal, name, 0, 5) for name in ("x", "y")}, grace=10)
    outer = orchestra.Conductor({"inner": inner, "web": spec(journal, "web", 0, 1)}, grace=10)
    async with background(outer):
        start = trio.current_time()
        outer.stop(within=30)
        await trio.sleep(2)
        outer.stop(within=5)  # at 2 s: the deadline is now 7 s
    assert journal.time_of("y stopping") - start == 1
    assert trio.current_time() - start == 7  # y ended at 6; x had 1 s when cut
    assert outer.status().children["inner"].children["x"].cut_off


def test_stop_within_is_checked() -> None:
    """A negative or NaN within is a ValueError, a str a TypeError."""
    conductor = orchestra.Conductor({})
    with pytest.raises(ValueError, match="within"):
        conductor.stop(within=-1)
    with pytest.raises(ValueError, match="within"):
        conductor.stop(within=float("nan"))
    with pytest.raises(TypeError, match="within"):
        conductor.stop(within="5")  # type: ignore[arg-type]
    assert conductor.stop_budget(within=3) == 0


async def test_the_drain_keeps_the_tree_up_and_not_ready_then_stops(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """_drain(5): /readyz's reasons say draining; the stop begins 5 s later, within counts it."""
    events: list[orchestra.events.Event] = []
    conductor = orchestra.Conductor(
        {name: spec(journal, name, 0, 5) for name in ("a", "b")},
        name="app",
        grace=10,
        on_event=events.append,
    )
    async with background(conductor) as run:
        start = trio.current_time()
        conductor._drain(5, "received SIGTERM", within=12)
        assert conductor.status().not_ready == (
            "app is draining before its stop: received SIGTERM",
        )
        await trio.sleep(4.5)
        assert "b stopping" not in journal.events
        assert await run.wait_stopped() is None
    assert journal.time_of("b stopping") - start == 5
    assert journal.time_of("a stopping") - start == 10
    assert trio.current_time() - start == 12  # a is cut at the deadline, 7 s after the drain
    [draining] = [event for event in events if isinstance(event, orchestra.events.Draining)]
    assert draining.until - draining.time == 5


async def test_a_stop_during_the_drain_ends_it(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A stop requested while draining begins at once."""
    conductor = orchestra.Conductor({"a": spec(journal, "a", 0, 1)})
    async with background(conductor):
        start = trio.current_time()
        conductor._drain(30, "received SIGTERM", within=None)
        await trio.sleep(2)
        conductor.stop("received SIGTERM again")
    assert trio.current_time() - start == 3


async def test_a_failure_is_reported_in_a_graph_by_its_path(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A graph player that fails for good stops the rest, dependents first, and is reported."""

    async def crash() -> None:
        await trio.sleep(4)
        raise KeyError("x")

    conductor = orchestra.Conductor(
        {
            "db": spec(journal, "db", 0, 1, after=()),
            "web": spec(journal, "web", 0, 1, after=("db",)),
            "job": orchestra.PlayerSpec(crash, after=()),
        },
        name="app",
    )
    with pytest.raises(ExceptionGroup) as caught:
        await run_then_stop(conductor, after=100)
    assert isinstance(caught.value, orchestra.ConductorError)
    assert_failures(caught.value, {"app/job": KeyError})
    assert journal.time_of("web stopping") == 4
    assert journal.time_of("db stopping") == 5


async def test_rest_for_one_on_a_fan_out_stops_and_starts_the_workers_together(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """The db of 50 workers fails: they all stop at once, then db restarts, then they all start."""
    db = orchestra.PlayerSpec(
        partial(failing_once, journal, {"runs": 0}),
        after=(),
        restart="on_failure",
        backoff=orchestra.Backoff(initial=1, jitter=0),
    )
    players: dict[str, orchestra.PlayerSpec] = {"db": db}
    for i in range(50):
        players[f"w{i}"] = spec(journal, f"w{i}", 1, 2, after=("db",), restart="always")
    conductor = orchestra.Conductor(players, strategy="rest_for_one")
    async with background(conductor) as run:
        await trio.sleep(20)
        assert await run.stop() is None
    times = {
        what: {when for when, event in journal.entries if event.endswith(what) and 5 <= when < 20}
        for what in (" stopping", " gone", " begins", " ready")
    }
    assert times == {" stopping": {5}, " gone": {7}, " begins": {8}, " ready": {9}}
    assert sorted(when for when, event in journal.entries if event == "db begins") == [0, 8]


async def test_a_chain_rolls_back_and_restarts_in_reverse_then_in_order(
    autojump_clock: trio.testing.MockClock, journal: Journal
) -> None:
    """A named chain: a start failure stops the started ones last first; rest_for_one too."""

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(1)
        raise OSError("no")

    chain = {
        f"p{i}": spec(journal, f"p{i}", 1, 1, after=(f"p{i - 1}",) if i else ()) for i in range(3)
    }
    chain["p3"] = orchestra.PlayerSpec(broken, after=("p2",))
    with pytest.raises(orchestra.ConductorError):
        await orchestra.Conductor(chain)()
    assert [journal.time_of(f"p{i} stopping") for i in (2, 1, 0)] == [4, 5, 6]

    journal.entries.clear()
    start = trio.current_time()
    players = {
        "p0": orchestra.PlayerSpec(
            partial(failing_once, journal, {"runs": 0}),
            restart="on_failure",
            backoff=orchestra.Backoff(initial=1, jitter=0),
        )
    }
    for i in range(1, 4):
        players[f"p{i}"] = spec(journal, f"p{i}", 1, 1, after=(f"p{i - 1}",), restart="always")
    conductor = orchestra.Conductor(players, strategy="rest_for_one")
    async with background(conductor) as run:
        await trio.sleep(20)
        assert await run.stop() is None
    relative = [(when - start, event) for when, event in journal.entries if 5 <= when - start < 20]
    assert [event for _, event in relative if "stopping" in event] == [
        "p3 stopping",
        "p2 stopping",
        "p1 stopping",
    ]
    assert relative[-1] == (12, "p3 ready")  # gone by 8, db again at 9, then 1 s each


# -- found by the fuzzer, and by reading it ---------------------------------------------


async def test_a_player_cancelled_at_the_deadline_is_no_straggler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A grace-0 player cancelled at the stop deadline gets its turn to end: no straggler."""

    async def quick(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()  # returns at once when cancelled

    async def slow(*, task_status: trio.TaskStatus[None]) -> None:
        orchestra.current_stop()  # subscribed; ignores the soft stop
        task_status.started()
        await trio.sleep_forever()

    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {"a": orchestra.PlayerSpec(quick, grace=0), "b": orchestra.PlayerSpec(slow, grace=10)},
        on_event=seen.append,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        conductor.stop(within=1)  # b's soft phase is cut to 1 s; then a and b are cancelled
    assert trio.current_time() == 1
    assert not [e for e in seen if isinstance(e, (events.Straggling, events.Failed))]


async def test_a_merged_group_still_stops_through_gone_players(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A second failure joining a rest_for_one group keeps the order through gone players."""

    async def fails_at(when: float, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(when)
        raise ValueError(when)

    async def serves(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def returns(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()

    async def lingers(*, task_status: trio.TaskStatus[None]) -> None:
        stop = orchestra.current_stop()
        task_status.started()
        await stop.wait()
        await trio.sleep(3)  # takes 3 s of its 10 s grace to be gone

    once = orchestra.Restart.ON_FAILURE
    seen: list[events.Event] = []
    conductor = orchestra.Conductor(
        {
            "f": orchestra.PlayerSpec(fails_at, 1, restart=once, after=()),
            "x": orchestra.PlayerSpec(serves, restart=once, after=("f",)),
            "y": orchestra.PlayerSpec(returns, after=("x",)),  # done at once: gone
            "z": orchestra.PlayerSpec(lingers, restart=once, grace=10, after=("y",)),
            "b": orchestra.PlayerSpec(fails_at, 1.5, restart=once, after=()),
        },
        name="app",
        strategy="rest_for_one",
        on_event=seen.append,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(2)
        # f failed at 1: its group stops z (after y, after x), then x once z is gone, at 4.
        stopping = {e.path: e.time for e in seen if isinstance(e, events.Stopping)}
        assert stopping == {"app/z": 1}
        conductor.stop()
