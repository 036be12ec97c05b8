"""A fault fuzzer: random trees of misbehaving players, checked against the contract's invariants.

Hypothesis draws trees (depth up to 3, up to 4 players per conductor) of players that fail at
start, fail later, return, run until stopped (listening or not), ignore the soft stop, hang
when stopped or fail while stopping, under random restart policies, strategies and stop
orders, and stops the root at a random time, all on the autojump clock.

About half the players have a liveness (DESIGN.md section 11): they beat once as they begin
(before they are started, which must not count), then every fraction of their liveness
while they run, and may go silent (hang) some time after they are started, in their first
run or in every run, while staying alive in their behaviour: still waiting to be stopped,
still hearing their soft stop (a listener) or deaf to it, hanging or failing when cancelled,
or failing later all the same.

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
  player alone, whatever the state of what it is after;
* liveness (:class:`LivenessCheck`): every hang is found exactly once, as a ``Hung`` event
  while the run is watched (started, not asked to stop), its ``silent`` exactly the time
  since its start or its last heartbeat, at least its liveness ``S`` and at most ``S + m``
  (exactly, on the mock clock), ``m`` the shortest liveness of the run itself and of its
  siblings watched from before its silence began until after it was due (the timer's
  period, see :meth:`LivenessCheck.slack`); no run silent longer than that while watched
  goes unfound, and no player that kept beating is found. (``m`` is not the conductor's
  shortest liveness: a sibling not watched then does not count; see the xfail in
  test_liveness.py.) A hung run ends in a
  ``Failed`` with a ``PlayerHung`` (and nothing else does), which is then reported once
  under its path or handled by a restart (its own, or a group restart's: see
  :func:`check_handled_only_when_allowed`), never both, as the failure checks above hold
  for it. A hung player is stopped at once (``it is hung`` in its ``Stopping``) only while
  its conductor runs; found hung during its conductor's stop, it is stopped in its turn, so
  the stop order above is checked for it. The stop of a player found hung while its
  conductor runs is its failure, not an ordered stop: it is not held to the order, and its
  dependents may start while it is stopped, as after any failure.

The stop bound needs nothing for liveness: a hang found while its conductor runs begins that
player's stop before the tree's, so it is gone within its own stop time of a moment before
its turn; a hang found during the stop changes neither its turn nor how it stops; a beating
listener returns at once at its soft stop, as a listener does.

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
SILENT_RUNS: tuple[Literal["first", "every"], ...] = ("first", "every")
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
class Pulse:
    """A player's liveness, how often it beats, and when it goes silent (hangs), if it does."""

    liveness: float  # its PlayerSpec(liveness=)
    beat: float  # the fraction of its liveness between two of its heartbeats
    silent: float | None  # it goes silent (and stays alive) this long after it is started
    silent_runs: Literal["first", "every"]  # in which of its runs it goes silent

    @property
    def every(self) -> float:
        """Seconds between two of its heartbeats (less than its liveness)."""
        return self.liveness * self.beat


@attrs.frozen
class Leaf:
    """A player's behaviour and options."""

    behaviour: str
    delay: float
    restart: orchestra.Restart
    grace: float
    hang: float
    pulse: Pulse | None = None  # no liveness

    @property
    def liveness(self) -> float | None:
        """Its liveness, if it has one."""
        return None if self.pulse is None else self.pulse.liveness


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
    pulse=st.none()
    | st.builds(
        Pulse,
        liveness=st.sampled_from([0.5, 1.0, 2.5]),
        beat=st.sampled_from([0.4, 0.9]),
        silent=st.sampled_from([None, 0.0, 0.5, 2.0]),
        silent_runs=st.sampled_from(SILENT_RUNS),
    ),
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
    """What the players did: their failures, their heartbeats, and how many are running."""

    def __init__(self) -> None:
        """Nothing has happened yet."""
        self.raised: list[BaseException] = []
        self.running = 0
        self.runs: dict[str, int] = {}  # path -> how many runs it began
        self.beats: dict[tuple[str, int], list[float]] = {}  # (path, run) -> its heartbeats

    def player(self, path: str, leaf: Leaf, after: After) -> orchestra.PlayerSpec:
        """The player for *leaf* at *path*, after *after*."""
        runs = 0
        world = self

        async def play(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal runs
            runs += 1
            world.runs[path] = runs
            world.running += 1
            try:
                await behave(runs, task_status)
            finally:
                world.running -= 1

        async def behave(run: int, task_status: trio.TaskStatus[None]) -> None:
            kind = leaf.behaviour
            stop = orchestra.current_stop() if kind in {"listen", "ignore_soft_stop"} else None
            beats = None if leaf.pulse is None else world.beats.setdefault((path, run), [])
            if beats is not None:  # a beat before its start: its silence counts from its start
                orchestra.heartbeat()
                beats.append(trio.current_time())
            await trio.sleep(leaf.delay)
            if kind == "fail_at_start" or (kind == "fail_at_restart" and run > 1):
                raise world.boom(path, run)
            task_status.started()
            every, silent_at = beating(leaf.pulse, run)
            if kind in {"fail_later", "fail_at_restart"}:
                await alive(beats, every, silent_at, trio.current_time() + leaf.delay + 1)
                raise world.boom(path, run)
            if kind == "return":
                return
            if stop is not None and kind == "listen":
                with stop.soft_scope():  # a hung one is stuck, but still hears its soft stop
                    await alive(beats, every, silent_at, math.inf)
                return
            try:
                await alive(beats, every, silent_at, math.inf)
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
            liveness=leaf.liveness,
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


def beating(pulse: Pulse | None, run: int) -> tuple[float, float]:
    """How often the *run* of a player that is started now beats, and when it goes silent."""
    if pulse is None:
        return math.inf, math.inf
    if pulse.silent is None or (run > 1 and pulse.silent_runs == "first"):
        return pulse.every, math.inf
    return pulse.every, trio.current_time() + pulse.silent  # then hung: alive, but silent


async def alive(beats: list[float] | None, every: float, silent_at: float, until: float) -> None:
    """Run until the Trio time *until*: beat every *every* s into *beats* until *silent_at*.

    With no *beats* (no liveness) it only sleeps. From *silent_at* on it sends no heartbeat,
    and stays alive: hung.
    """
    while beats is not None:
        now = trio.current_time()
        if now >= silent_at:
            break
        orchestra.heartbeat()
        beats.append(now)
        if now + every >= until:
            break
        await trio.sleep_until(now + every)
    await trio.sleep_until(until)


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
    """The player's own failure behind a StopTimeout or a PlayerHung (raised while stopped)."""
    if isinstance(error, orchestra.PlayerHung) and error.__context__ is not None:
        return origin(error.__context__)
    if isinstance(error, orchestra.StopTimeout) and error.__cause__ is not None:
        return error.__cause__
    return error


def check_every_failure_seen_once(seen: list[events.Event], raised: list[BaseException]) -> None:
    """Every failure a player raised reached its conductor exactly once."""
    failed = [e for e in seen if isinstance(e, events.Failed)]
    booms = [origin(e.error) for e in failed if isinstance(origin(e.error), Boom)]
    assert sorted(map(id, booms)) == sorted(map(id, raised))


def check_handled_only_when_allowed(seen: list[events.Event]) -> None:
    """A failure is kept out of the error only if restarted, or raised in a group restart's stop.

    A player found hung is stopped as hung, not for a group restart that begins meanwhile: its
    PlayerHung is its own failure, for its own restart policy (restarted, or reported).
    """
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
HUNG = "it is hung"  # how the reason of a hung player's own stop begins


class OrderCheck:
    """Players start after what they are after, and stop before it, in every run."""

    def __init__(self, tree: Tree, cancelled_at: float) -> None:
        """Check the runs of *tree*, whose root is cancelled at *cancelled_at* if it still runs."""
        self.shapes = {path: shape(node) for path, node in walk_conductors(tree, "app")}
        self.runs = {"app": Run(0.0, hard_at=cancelled_at)}
        # the stop requests, by case ("hung": a hung player's own stop, which is its failure)
        self.counts = {"checked": 0, "parallel": 0, "hard": 0, "hung": 0}

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
        if (happened.reason or "").startswith(HUNG):
            # Found hung while its conductor runs: stopped at once, as a failure ends at once
            # (LivenessCheck makes sure it is not so during its conductor's own stop).
            self.counts["hung"] += 1
            return
        run.stopping.add(name)
        if form.parallel:
            self.counts["parallel"] += 1
        elif happened.time >= self.hard_at(parent):
            self.counts["hard"] += 1
        else:
            self.counts["checked"] += 1
            running = form.after_it[name] & run.alive
            assert not running, f"{where}: asked to stop while {sorted(running)} still run"


@attrs.define
class Beating:
    """One run of a player with a liveness, as the events tell it."""

    path: str
    run: int
    liveness: float
    ready: float | None = None  # its first Ready: its silence counts from there
    unwatched: float = math.inf  # when its silence stopped counting: asked to stop, hung, gone
    hung: events.Hung | None = None
    hung_in_stop: bool = False  # found hung while its conductor was stopping
    ended: bool = False


class LivenessCheck:
    """Every hang is found in its time, once, and is a failure; no beating player is hung.

    A run of a player is *watched* from its ``Ready`` until it is asked to stop (its
    ``Stopping``, or its conductor's hard stop, which asks without an event), found hung, or
    gone. Its silence counts from its ``Ready`` or its last heartbeat after it, whichever is
    later (so ``since``); it is hung once watched and silent for its liveness ``S``.
    """

    def __init__(self, tree: Tree, world: World, cancelled_at: float, stop_index: int) -> None:
        """Check the runs of *tree*'s players; its root is asked to stop at event *stop_index*."""
        self.world = world
        self.leaves = dict(walk_paths(tree, "app"))
        self.conductors = {path for path, _ in walk_conductors(tree, "app")}
        self.hard = {"app": cancelled_at}  # the hard stop of each conductor's current run
        self.stopping = {"app": False}  # whether each conductor's current run is stopping
        self.stop_index = stop_index
        self.current: dict[str, Beating] = {}  # each player's current (or last) run
        self.started: dict[str, int] = {}  # how many runs each player began
        self.runs: list[Beating] = []  # the runs that are over
        self.counts = {"hung": 0, "hung in a stop": 0, "later than the smallest": 0}

    def hard_at(self, path: str) -> float:
        """When the current run of the conductor at *path* is hard-stopped, or will be."""
        when = math.inf
        while path in self.hard:
            when = min(when, self.hard[path])
            path = path.rpartition("/")[0]
        return when

    def check(self, seen: Sequence[events.Event]) -> None:
        """Follow *seen*, the events of the whole tree, in order; then check every run."""
        for index, happened in enumerate(seen):
            if index == self.stop_index:
                self.stopping["app"] = True
            self.follow(happened, f"event {index} ({happened!r})")
        for beating in self.current.values():
            self.end(beating)
        for path, leaf in self.leaves.items():
            started = sum(1 for e in seen if isinstance(e, events.Started) and e.path == path)
            assert self.world.runs.get(path, 0) == started, f"{path}: a run without a Started"
            if leaf.liveness is None:
                assert not any(isinstance(e, events.Hung) and e.path == path for e in seen)
        for beating in self.runs:
            self.check_run(beating)

    def follow(self, happened: events.Event, where: str) -> None:
        """One event, in order."""
        path = happened.path
        parent = path.rpartition("/")[0]
        if path in self.conductors:
            if isinstance(happened, events.Started):  # a new run of a nested conductor
                self.hard[path], self.stopping[path] = math.inf, False
            elif isinstance(happened, events.Stopping):  # its parent cancels it at the deadline
                self.hard[path] = min(self.hard[path], happened.deadline)
                self.stopping[path] = True
        if isinstance(happened, events.Failed) and not happened.handled and parent in self.hard:
            self.stopping[parent] = True  # a failure it reports: it is stopping
        self.follow_player(happened, parent, where)

    def follow_player(self, happened: events.Event, parent: str, where: str) -> None:
        """One event of a player of the conductor at *parent*, in order."""
        path = happened.path
        leaf = self.leaves.get(path)
        if leaf is None or leaf.liveness is None:
            return
        if isinstance(happened, events.Started):
            run = self.started[path] = self.started.get(path, 0) + 1
            if path in self.current:
                self.end(self.current[path])
            self.current[path] = Beating(path, run, leaf.liveness)
            return
        beating = self.current.get(path)
        if beating is None or beating.ended:
            return  # a Restarting after the run's Failed: that run is over
        if isinstance(happened, events.Ready):
            if beating.ready is None:
                beating.ready = happened.time
        elif isinstance(happened, events.Hung):
            self.hung(beating, happened, parent, where)
        elif isinstance(happened, events.Stopping):
            self.asked(beating, happened, where)
        elif isinstance(happened, ENDS):
            self.gone(beating, happened, where)

    def asked(self, beating: Beating, happened: events.Stopping, where: str) -> None:
        """The run is asked to stop: as hung only at once, and never during its conductor's stop."""
        if (happened.reason or "").startswith(HUNG):
            hung = beating.hung
            assert hung is not None, f"{where}: stopped as hung, but not found hung"
            assert hung.time == happened.time, f"{where}: stopped later than found hung"
            assert not beating.hung_in_stop, f"{where}: hung during the stop, stopped early"
        beating.unwatched = min(beating.unwatched, happened.time)

    def gone(self, beating: Beating, happened: events.Event, where: str) -> None:
        """The run ended: a hung one with its PlayerHung, and only a hung one."""
        beating.unwatched = min(beating.unwatched, happened.time)
        is_hung = isinstance(happened, events.Failed) and isinstance(
            happened.error, orchestra.PlayerHung
        )
        if beating.hung is not None:
            assert is_hung, f"{where}: the end of a hung run is not its PlayerHung"
        else:
            assert not is_hung, f"{where}: a PlayerHung without a Hung event"
        self.end(beating)

    def hung(self, beating: Beating, happened: events.Hung, parent: str, where: str) -> None:
        """The run is found hung: it must have been watched."""
        assert beating.ready is not None, f"{where}: hung before it was started"
        assert beating.unwatched == math.inf, f"{where}: hung, though no longer watched"
        assert beating.hung is None, f"{where}: hung twice in one run"
        assert happened.time <= self.hard_at(parent), f"{where}: hung after a hard stop"
        assert happened.liveness == beating.liveness
        beating.hung, beating.unwatched = happened, happened.time
        beating.hung_in_stop = self.stopping[parent]

    def end(self, beating: Beating) -> None:
        """The run is over: its conductor's hard stop asked it to stop, if nothing else did."""
        if not beating.ended:
            beating.ended = True
            parent = beating.path.rpartition("/")[0]
            beating.unwatched = min(beating.unwatched, self.hard_at(parent))
            self.runs.append(beating)

    def slack(self, beating: Beating, since: float) -> float:
        """How long after ``since + S`` the check that finds the run hung can come, at most.

        The conductor checks all its players with one timer: a check at ``c`` sets the next
        at the earliest moment one can be hung, but no sooner than ``c + m``, ``m`` the
        shortest liveness among the players it watched at ``c`` (``Watch.check``). While the
        run is watched the checks are at most ``S`` apart, so the last one before it is due at
        ``D = since + S`` comes no earlier than ``since``; a player watched from before
        ``since`` to after ``D`` was watched by it. So ``m`` is at most the shortest liveness
        of those and of the run itself.
        """
        due = since + beating.liveness
        parent = beating.path.rpartition("/")[0]
        watched = (
            other.liveness
            for other in self.runs
            if other.path.rpartition("/")[0] == parent
            and other.ready is not None
            and other.ready < since
            and other.unwatched > due
        )
        return min(beating.liveness, min(watched, default=math.inf))

    def check_run(self, beating: Beating) -> None:
        """Found when silent for its liveness, no later than one check period more."""
        if beating.ready is None:
            return  # never started: never watched
        liveness, ready = beating.liveness, beating.ready
        beats = self.world.beats.get((beating.path, beating.run), [])
        where = f"{beating.path} run {beating.run}"
        hung = beating.hung
        if hung is not None:
            found = hung.time
            since = max([ready, *(b for b in beats if ready < b < found)])
            assert hung.silent == found - since, f"{where}: hung after {hung.silent} s"
            assert since + liveness <= found, f"{where}: hung at {found}, silent since {since}"
            assert found <= since + liveness + self.slack(beating, since), (
                f"{where}: found hung at {found}, silent since {since}: too late"
            )
            smallest = min(
                leaf.liveness
                for path, leaf in self.leaves.items()
                if leaf.liveness is not None
                and path.rpartition("/")[0] == beating.path.rpartition("/")[0]
            )
            self.counts["hung"] += 1
            self.counts["hung in a stop"] += beating.hung_in_stop
            self.counts["later than the smallest"] += found > since + liveness + smallest
            return
        end = beating.unwatched
        since = max([ready, *(b for b in beats if ready < b <= end)])
        assert end <= since + liveness + self.slack(beating, since), (
            f"{where}: silent from {since} to {end}, and never found hung"
        )


@given(tree=trees(3), stop_at=st.sampled_from([0.0, 0.7, 2.0, 6.0, 20.0, 60.0]))
def test_random_trees_keep_the_invariants(tree: Tree, stop_at: float) -> None:
    """Random faults in random trees: bounded stop, failures exactly once, no leaks."""
    world = World()
    seen: list[events.Event] = []
    root = world.build(tree, "app", on_event=seen.append)
    outcome: list[orchestra.ConductorError] = []
    stop_index: list[int] = []  # the number of events before the fuzzer's stop
    cancelled_at = stop_at + sum_bound(tree) + 1

    async def main() -> None:
        try:
            # A root that never returns fails the bound below, rather than hanging the test.
            with trio.move_on_after(cancelled_at - trio.current_time()):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_root)
                    await trio.sleep(stop_at)
                    stop_index.append(len(seen))
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
    for why in ("parallel", "hard", "hung"):
        if counts[why]:
            event(f"stop order not checked: {why}")
    check_liveness(
        tree,
        world,
        seen,
        cancelled_at=cancelled_at,
        stop_index=stop_index[0],  # set: the root is cancelled, if at all, after the stop
    )


def check_liveness(
    tree: Tree,
    world: World,
    seen: list[events.Event],
    *,
    cancelled_at: float,
    stop_index: int,
) -> None:
    """The hangs of one example (see :class:`LivenessCheck`), and how many there were."""
    checked = LivenessCheck(tree, world, cancelled_at, stop_index)
    checked.check(seen)
    if not any(leaf.liveness is not None for leaf in walk_leaves(tree)):
        return
    found = checked.counts
    event(f"hung: {'none' if not found['hung'] else '1-4' if found['hung'] < 5 else '5+'}")
    for what in ("hung in a stop", "later than the smallest"):
        if found[what]:
            event(what)
