"""A fault fuzzer: random trees of misbehaving players, checked against the contract's invariants.

Hypothesis draws trees (depth up to 3, up to 4 players per conductor) of players that fail at
start, fail later, return, run until stopped (listening or not), ignore the soft stop, hang
when stopped or fail while stopping, under random restart policies, strategies and stop
orders, and stops the root at a random time, all on the autojump clock.

The players of each conductor form a line or a dependency graph (DESIGN.md section 9). In a
line no player names ``after=``. In a graph each player's ``after`` is ``None`` (the player
declared just before it), ``()`` or a set of its siblings, drawn over a random topological
order (a permutation of the players, shrinking to the declared order): a player names only
siblings before it in that order, so it may be after players declared later, and it takes
``None`` only when the player declared before it comes before it in that order too. So no
cycle can be drawn.

For every tree it checks (DESIGN.md sections 8 and 9):

* the root returns by the stop time plus the longest path of its players' stop times through
  the graph: a player that listens or ignores the soft stop takes at most its grace, one that
  hangs when stopped its hang, a nested conductor its own longest path, and under
  ``stop_order="parallel"`` the largest of them. This is exact (a line of players that use
  their whole grace takes it all) and within the bar of section 8 (the sum of the grace
  periods plus the straggler bound). A root still running 1 s after that bar is cancelled,
  and fails the check, rather than hang the test;
* every failure a player raised is seen by the conductor exactly once, and every reported
  failure is under its own path, exactly once, with no ``Cancelled`` anywhere;
* no player is still running after the root returned;
* within every run of every conductor, restarts never exceed its intensity;
* the stop follows the graph: in every run of every conductor, no player is asked to stop
  (its ``events.Stopping``) while a player that is after it, directly or through players
  that are gone, is still running (between its ``Started`` and its ``Stopped``,
  ``Finished``, ``Failed`` or ``Restarting``). This covers the conductor's own stop, the
  rollback of a failed start and the stop of a group restart (``one_for_all``,
  ``rest_for_one``). It is skipped where the contract stops everything at once: under
  ``stop_order="parallel"``, and from the moment a conductor is hard-stopped, which is the
  deadline of its own ``Stopping`` event or of an ancestor's (its parent then cancels it),
  or the root's cancellation above;
* the start follows the graph: a player's first ``Started`` in a run of its conductor (its
  start in the conductor's start) comes after every player it is after was ``Ready`` in
  that run, and at the very time the last of them was (or the run began: as early as
  possible); and no player is ever started, nor restarted, while a player it is after is
  being stopped. Other restarts are not held to the edges: ``one_for_one`` restarts a
  player alone, whatever the state of what it is after.

``HYPOTHESIS_PROFILE=fuzz`` runs 3000 examples with fresh randomness (``nox -s fuzz``); CI
runs a fixed, derandomized set of 200, so that it is reproducible.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Literal, cast

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import trio_orchestra as orchestra
from trio_orchestra import events

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BEHAVIOURS = (
    "run",
    "listen",
    "fail_at_start",
    "fail_at_restart",  # fails later on its first run, then fails to start
    "fail_later",
    "fail_later",
    "return",
    "ignore_soft_stop",
    "hang_on_stop",
    "fail_on_stop",
)
NEVER, ON_FAILURE, ALWAYS = (
    orchestra.Restart.NEVER,
    orchestra.Restart.ON_FAILURE,
    orchestra.Restart.ALWAYS,
)


class Boom(Exception):
    """A player's failure, tagged with where it came from."""

    def __init__(self, path: str, run: int) -> None:
        """Tag it with the player's *path* and *run* number."""
        super().__init__(path, run)
        self.path = path
        self.run = run


@attrs.frozen
class Leaf:
    """A player's behaviour and options."""

    behaviour: str
    delay: float
    restart: orchestra.Restart
    grace: float
    hang: float


After = tuple[str, ...] | None


@attrs.frozen
class Tree:
    """A conductor's options, its children and what each child is after (its ``after=``)."""

    children: tuple[tuple[str, Leaf | Tree], ...]
    after: tuple[After, ...]
    strategy: str
    max_restarts: int
    period: float
    grace: float
    stop_order: Literal["sequential", "parallel"]


leaves = st.builds(
    Leaf,
    behaviour=st.sampled_from(BEHAVIOURS),
    delay=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    restart=st.sampled_from([NEVER, ON_FAILURE, ON_FAILURE, ALWAYS, ALWAYS]),
    grace=st.sampled_from([0.0, 1.0, 2.0]),
    hang=st.sampled_from([0.5, 4.0]),
)


MAX_PLAYERS = 4


@st.composite
def orders(draw: st.DrawFn, count: int) -> tuple[After, ...]:
    """The ``after`` of each of *count* players: a line, or an acyclic graph.

    A graph is drawn over a topological order (a permutation, shrinking to the declared
    order): each player names a subset of the players before it in that order, or ``()``, or
    ``None`` (the player declared just before it) when that player is before it too.
    """
    if not draw(st.booleans()):
        return (None,) * count  # a line: no player names an after=
    topological: list[int] = draw(st.permutations(range(count)))
    rank = {player: position for position, player in enumerate(topological)}
    afters: list[After] = []
    for i in range(count):
        earlier = sorted(f"p{j}" for j in range(count) if rank[j] < rank[i])
        choices: list[st.SearchStrategy[After]] = [st.just(())]
        if i == 0 or rank[i - 1] < rank[i]:
            choices.append(st.none())
        if earlier:
            choices.append(st.lists(st.sampled_from(earlier), min_size=1, unique=True).map(tuple))
        afters.append(draw(st.one_of(choices)))
    return tuple(afters)


@st.composite
def trees(draw: st.DrawFn, depth: int) -> Tree:
    """Conductors of up to four players or nested conductors, in a line or a graph."""
    child: st.SearchStrategy[Leaf | Tree] = (
        leaves if depth <= 1 else st.one_of(leaves, trees(depth - 1))
    )
    kids = draw(st.lists(child, min_size=1, max_size=MAX_PLAYERS))
    return Tree(
        children=tuple((f"p{i}", kid) for i, kid in enumerate(kids)),
        after=draw(orders(len(kids))),
        strategy=draw(st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"])),
        max_restarts=draw(st.sampled_from([0, 2, 10])),
        period=draw(st.sampled_from([1.0, 5.0, 30.0])),
        grace=draw(st.sampled_from([0.5, 2.0])),
        stop_order=draw(st.sampled_from(["sequential", "sequential", "sequential", "parallel"])),
    )


class World:
    """What the players did: their failures, and how many are running."""

    def __init__(self) -> None:
        """Nothing has happened yet."""
        self.raised: list[BaseException] = []
        self.running = 0

    def player(self, path: str, leaf: Leaf, after: After) -> orchestra.PlayerSpec:
        """The player for *leaf* at *path*, after *after*."""
        runs = 0
        world = self

        async def play(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal runs
            runs += 1
            world.running += 1
            try:
                await behave(runs, task_status)
            finally:
                world.running -= 1

        async def behave(run: int, task_status: trio.TaskStatus[None]) -> None:
            kind = leaf.behaviour
            stop = orchestra.current_stop() if kind in {"listen", "ignore_soft_stop"} else None
            await trio.sleep(leaf.delay)
            if kind == "fail_at_start" or (kind == "fail_at_restart" and run > 1):
                raise world.boom(path, run)
            task_status.started()
            if kind in {"fail_later", "fail_at_restart"}:
                await trio.sleep(leaf.delay + 1)
                raise world.boom(path, run)
            if kind == "return":
                return
            if stop is not None and kind == "listen":
                await stop.wait()
                return
            try:
                await trio.sleep_forever()
            finally:
                if kind == "hang_on_stop":
                    with trio.CancelScope(shield=True):
                        await trio.sleep(leaf.hang)
                elif kind == "fail_on_stop":
                    raise world.boom(path, run)

        return orchestra.PlayerSpec(
            play,
            restart=leaf.restart,
            grace=leaf.grace,
            backoff=orchestra.Backoff(initial=0.5, factor=2, maximum=4, jitter=0),
            after=after,
        )

    def boom(self, path: str, run: int) -> Boom:
        """Make, and remember, a failure of *path*."""
        error = Boom(path, run)
        self.raised.append(error)
        return error

    def build(self, tree: Tree, path: str, on_event: Any = None) -> orchestra.Conductor:  # noqa: ANN401
        """The conductor for *tree* at *path*."""
        players: dict[str, orchestra.PlayerSpec | orchestra.Conductor] = {}
        for (name, child), after in zip(tree.children, tree.after, strict=True):
            child_path = f"{path}/{name}"
            if isinstance(child, Leaf):
                players[name] = self.player(child_path, child, after)
            else:
                players[name] = orchestra.PlayerSpec(
                    self.build(child, child_path),
                    restart=orchestra.Restart.ON_FAILURE,
                    backoff=None,
                    after=after,
                )
        return orchestra.Conductor(
            players,
            name=path.rpartition("/")[2],
            grace=tree.grace,
            stop_order=tree.stop_order,
            strategy=tree.strategy,  # type: ignore[arg-type]
            max_restarts=tree.max_restarts,
            period=tree.period,
            on_event=on_event,
        )


def walk_leaves(tree: Tree) -> Iterator[Leaf]:
    """Every leaf under *tree*."""
    for _, child in tree.children:
        if isinstance(child, Leaf):
            yield child
        else:
            yield from walk_leaves(child)


def walk_paths(tree: Tree, path: str) -> Iterator[tuple[str, Leaf]]:
    """Every leaf under *tree*, with its path."""
    for name, child in tree.children:
        if isinstance(child, Leaf):
            yield f"{path}/{name}", child
        else:
            yield from walk_paths(child, f"{path}/{name}")


def walk_conductors(tree: Tree, path: str) -> Iterator[tuple[str, Tree]]:
    """Every conductor under (and including) *tree*, with its path."""
    yield path, tree
    for name, child in tree.children:
        if isinstance(child, Tree):
            yield from walk_conductors(child, f"{path}/{name}")


def flatten(error: BaseException) -> list[BaseException]:
    """The leaves of an exception group."""
    if isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)
        return [leaf for inner in group.exceptions for leaf in flatten(inner)]
    return [error]


def sum_bound(tree: Tree) -> float:
    """The bar of DESIGN.md section 8: the grace periods plus the straggler bound, summed."""
    return sum(2 * leaf.grace + leaf.hang + 1 for leaf in walk_leaves(tree))


def leaf_stop(leaf: Leaf) -> float:
    """The longest a leaf takes to be gone once asked to stop."""
    if leaf.behaviour in {"listen", "ignore_soft_stop"}:
        return leaf.grace  # subscribed: at most its soft phase (it may still be starting)
    if leaf.behaviour == "hang_on_stop":
        return leaf.hang  # not subscribed: cancelled at once, then it hangs, shielded
    return 0.0  # cancelled at once, and gone at once


def stop_bound(tree: Tree) -> float:
    """The longest an orderly stop of *tree* can take: the longest path of stop times.

    A player is asked to stop once everything after it is gone, so it is gone by its own
    stop time after the latest of those; with ``stop_order="parallel"`` all are asked at
    once. A hard stop (a nested conductor cancelled at its deadline) cancels players earlier
    than their turn, never later, so it cannot make a stop longer.
    """
    weight = {
        name: leaf_stop(child) if isinstance(child, Leaf) else stop_bound(child)
        for name, child in tree.children
    }
    if tree.stop_order == "parallel":
        return max(weight.values())
    after_it = shape(tree).after_it
    # The players after a player come before it on the longest path that goes through it.
    finish: dict[str, float] = {}
    for name in sorted(weight, key=lambda name: len(after_it[name])):
        later = (finish[other] for other in after_it[name])
        finish[name] = weight[name] + max(later, default=0.0)
    return max(finish.values())


@attrs.frozen
class Shape:
    """A conductor's resolved order: what each player is after, and what is after each."""

    edges: dict[str, tuple[str, ...]]  # name -> the names it is directly after
    after_it: dict[str, frozenset[str]]  # name -> every name after it, directly or not
    parallel: bool


def shape(tree: Tree) -> Shape:
    """The order of *tree*'s players, resolved as section 9 says (``None``: the one before)."""
    edges: dict[str, tuple[str, ...]] = {}
    previous: tuple[str, ...] = ()
    for (name, _), after in zip(tree.children, tree.after, strict=True):
        edges[name] = previous if after is None else after
        previous = (name,)
    dependents = {name: tuple(other for other in edges if name in edges[other]) for name in edges}
    after_it: dict[str, frozenset[str]] = {}

    def reach(name: str) -> frozenset[str]:
        if name not in after_it:
            found: set[str] = set()
            for dependent in dependents[name]:
                found |= {dependent, *reach(dependent)}
            after_it[name] = frozenset(found)
        return after_it[name]

    for name in edges:
        reach(name)
    return Shape(edges, after_it, parallel=tree.stop_order == "parallel")


def origin(error: BaseException) -> BaseException:
    """The player's own failure behind a StopTimeout (a straggler that also raised)."""
    if isinstance(error, orchestra.StopTimeout) and error.__cause__ is not None:
        return error.__cause__
    return error


def check_every_failure_seen_once(seen: list[events.Event], raised: list[BaseException]) -> None:
    """Every failure a player raised reached its conductor exactly once."""
    failed = [e for e in seen if isinstance(e, events.Failed)]
    booms = [origin(e.error) for e in failed if isinstance(origin(e.error), Boom)]
    assert sorted(map(id, booms)) == sorted(map(id, raised))


def check_handled_only_when_allowed(seen: list[events.Event]) -> None:
    """A failure is kept out of the error only if restarted, or raised in a group restart's stop."""
    last_stop_reason: dict[str, str | None] = {}
    for index, happened in enumerate(seen):
        if isinstance(happened, events.Stopping):
            last_stop_reason[happened.path] = happened.reason
        if isinstance(happened, events.Failed) and happened.handled:
            restarted = any(
                isinstance(later, events.Restarting)
                and later.path == happened.path
                and later.time == happened.time
                for later in seen[index:]
            )
            reason = last_stop_reason.get(happened.path) or ""
            assert restarted or reason.startswith("restarting with player"), (
                f"{happened.path}: a failure was handled without a restart"
            )


def check_reported_exactly_once(
    seen: list[events.Event], outcome: orchestra.ConductorError | None
) -> None:
    """Every failure not handled is reported once, by its own conductor, under its own path."""
    failed = [e for e in seen if isinstance(e, events.Failed)]
    raised_by: dict[str, list[orchestra.ConductorError]] = {}
    for happened in failed:
        if isinstance(happened.error, orchestra.ConductorError):
            raised_by.setdefault(happened.path, []).append(happened.error)
    if outcome is not None:
        raised_by.setdefault("app", []).append(outcome)
        assert not any(isinstance(leaf, trio.Cancelled) for leaf in flatten(outcome))
        for path, leaf in outcome.failures.items():
            cause = origin(leaf)
            if isinstance(cause, Boom):
                assert cause.path == path
    member_of: dict[int, str] = {}
    for conductor_path, errors in raised_by.items():
        for raised in errors:
            for member in raised.exceptions:
                assert id(member) not in member_of, "a failure was reported twice"
                member_of[id(member)] = conductor_path
    unhandled = [happened for happened in failed if not happened.handled]
    assert sorted(id(happened.error) for happened in unhandled) == sorted(member_of)
    for happened in unhandled:
        assert member_of[id(happened.error)] == happened.path.rpartition("/")[0]


def check_intensity(seen: list[events.Event], tree: Tree) -> None:
    """Within each run of each conductor, restarts never exceed its intensity."""
    for path, node in walk_conductors(tree, "app"):
        epochs: dict[int, list[float]] = {}
        epoch = 0
        for happened in seen:
            if isinstance(happened, events.Started) and happened.path == path:
                epoch += 1
            if isinstance(happened, events.Restarting) and happened.path.rpartition("/")[0] == path:
                epochs.setdefault(epoch, []).append(happened.time)
        for times in epochs.values():
            for i, when in enumerate(times):
                window = [t for t in times[: i + 1] if t > when - node.period]
                assert len(window) <= node.max_restarts, f"{path} exceeded its intensity"


class Run:
    """One run of a conductor, as its events tell it."""

    def __init__(self, start: float, hard_at: float = math.inf) -> None:
        """A run that began at *start*, and is hard-stopped at *hard_at* if it still runs."""
        self.start = start
        self.hard_at = hard_at  # lowered to the deadline of its own Stopping, if it has one
        self.alive: set[str] = set()  # players between their Started and their end
        self.stopping: set[str] = set()  # players asked to stop, not yet ended
        self.started: set[str] = set()  # players started at least once in this run
        self.ready: dict[str, float] = {}  # the first Ready of each player in this run


ENDS = (events.Stopped, events.Finished, events.Failed, events.Restarting)


class OrderCheck:
    """Players start after what they are after, and stop before it, in every run."""

    def __init__(self, tree: Tree, cancelled_at: float) -> None:
        """Check the runs of *tree*, whose root is cancelled at *cancelled_at* if it still runs."""
        self.shapes = {path: shape(node) for path, node in walk_conductors(tree, "app")}
        self.runs = {"app": Run(0.0, hard_at=cancelled_at)}
        self.counts = {"checked": 0, "parallel": 0, "hard": 0}  # the stop requests, by case

    def hard_at(self, path: str) -> float:
        """When the current run of the conductor at *path* is hard-stopped, or will be."""
        when = math.inf
        while path in self.runs:
            when = min(when, self.runs[path].hard_at)
            path = path.rpartition("/")[0]
        return when

    def check(self, seen: Sequence[events.Event]) -> None:
        """Follow *seen*, the events of the whole tree, in order."""
        for index, happened in enumerate(seen):
            parent, _, name = happened.path.rpartition("/")
            if parent not in self.shapes:
                continue
            run, where = self.runs[parent], f"event {index} ({happened!r})"
            if isinstance(happened, events.Started):
                self.started(happened, parent, name, where)
            elif isinstance(happened, events.Ready):
                run.ready.setdefault(name, happened.time)
            elif isinstance(happened, events.Stopping):
                self.stopping(happened, parent, name, where)
            elif isinstance(happened, ENDS):
                run.alive.discard(name)
                run.stopping.discard(name)

    def started(self, happened: events.Started, parent: str, name: str, where: str) -> None:
        """Player *name* of the conductor at *parent* is started (or restarted)."""
        run, edges = self.runs[parent], self.shapes[parent].edges[name]
        stopping = set(edges) & run.stopping
        assert not stopping, f"{where}: started while {sorted(stopping)} are stopping"
        if name not in run.started:  # its start in the conductor's start
            run.started.add(name)
            unready = [dep for dep in edges if dep not in run.ready]
            assert not unready, f"{where}: started before {unready} were ready"
            due = max((run.ready[dep] for dep in edges), default=run.start)
            assert happened.time == due, f"{where}: started later than at {due}"
        run.alive.add(name)
        if happened.path in self.shapes:  # a nested conductor: a new run of it
            self.runs[happened.path] = Run(happened.time)

    def stopping(self, happened: events.Stopping, parent: str, name: str, where: str) -> None:
        """Player *name* of the conductor at *parent* is asked to stop."""
        run, form = self.runs[parent], self.shapes[parent]
        if happened.path in self.shapes:  # its parent hard-cancels it at the deadline
            inner = self.runs[happened.path]
            inner.hard_at = min(inner.hard_at, happened.deadline)
        run.stopping.add(name)
        if form.parallel:
            self.counts["parallel"] += 1
        elif happened.time >= self.hard_at(parent):
            self.counts["hard"] += 1
        else:
            self.counts["checked"] += 1
            running = form.after_it[name] & run.alive
            assert not running, f"{where}: asked to stop while {sorted(running)} still run"


@given(tree=trees(3), stop_at=st.sampled_from([0.0, 0.7, 2.0, 6.0, 20.0, 60.0]))
def test_random_trees_keep_the_invariants(tree: Tree, stop_at: float) -> None:
    """Random faults in random trees: bounded stop, failures exactly once, no leaks."""
    world = World()
    seen: list[events.Event] = []
    root = world.build(tree, "app", on_event=seen.append)
    outcome: list[orchestra.ConductorError] = []
    cancelled_at = stop_at + sum_bound(tree) + 1

    async def main() -> None:
        try:
            # A root that never returns fails the bound below, rather than hanging the test.
            with trio.move_on_after(cancelled_at - trio.current_time()):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_root)
                    await trio.sleep(stop_at)
                    root.stop("the fuzzer's stop")
        finally:
            assert world.running == 0, "a player outlived the root"

    async def run_root() -> None:
        try:
            await root()
        except orchestra.ConductorError as error:
            outcome.append(error)

    logging.getLogger("trio_orchestra").setLevel(logging.CRITICAL)
    try:
        clock = trio.testing.MockClock(autojump_threshold=0)
        trio.run(main, clock=clock)
    finally:
        logging.getLogger("trio_orchestra").setLevel(logging.NOTSET)

    event("failed" if outcome else "stopped cleanly")
    event("restarted" if any(isinstance(e, events.Restarting) for e in seen) else "no restart")
    if any(isinstance(e, events.Straggling) for e in seen):
        event("straggler")

    assert clock.current_time() <= stop_at + stop_bound(tree) + 1e-9, "the stop took too long"
    assert stop_bound(tree) <= sum_bound(tree)
    check_every_failure_seen_once(seen, world.raised)
    check_handled_only_when_allowed(seen)
    check_reported_exactly_once(seen, outcome[0] if outcome else None)
    check_intensity(seen, tree)
    order = OrderCheck(tree, cancelled_at)
    order.check(seen)
    counts = order.counts
    shapes = [node.after for _, node in walk_conductors(tree, "app")]
    event("a graph" if any(any(after is not None for after in a) for a in shapes) else "lines")
    checked = counts["checked"]
    event(f"stop order checked: {'none' if not checked else '1-4' if checked < 5 else '5+'}")
    for why in ("parallel", "hard"):
        if counts[why]:
            event(f"stop order not checked: {why}")
