"""A fault fuzzer: random trees of misbehaving players, checked against the contract's invariants.

Hypothesis draws trees (depth up to 3, up to 3 players per conductor) of players that fail at
start, fail later, return, run until stopped (listening or not), ignore the soft stop, hang
when stopped or fail while stopping, under random restart policies and strategies, and stops
the root at a random time, all on the autojump clock. For every tree it checks (DESIGN.md
section 8):

* the root returns by the stop time plus a bound made of the grace periods and the hangs;
* every failure a player raised is seen by the conductor exactly once, and every reported
  failure is under its own path, exactly once, with no ``Cancelled`` anywhere;
* no player is still running after the root returned;
* within every run of every conductor, restarts never exceed its intensity.

``HYPOTHESIS_PROFILE=fuzz`` runs 3000 examples with fresh randomness (``nox -s fuzz``); CI
runs a fixed, derandomized set of 200, so that it is reproducible.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, cast

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


@attrs.frozen
class Tree:
    """A conductor's options and its children."""

    children: tuple[tuple[str, Leaf | Tree], ...]
    strategy: str
    max_restarts: int
    period: float
    grace: float


leaves = st.builds(
    Leaf,
    behaviour=st.sampled_from(BEHAVIOURS),
    delay=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    restart=st.sampled_from([NEVER, ON_FAILURE, ON_FAILURE, ALWAYS, ALWAYS]),
    grace=st.sampled_from([0.0, 1.0, 2.0]),
    hang=st.sampled_from([0.5, 4.0]),
)


def trees(depth: int) -> st.SearchStrategy[Tree]:
    """Conductors of up to three players or nested conductors."""
    child: st.SearchStrategy[Leaf | Tree] = (
        leaves if depth <= 1 else st.one_of(leaves, trees(depth - 1))
    )
    return st.builds(
        Tree,
        children=st.lists(child, min_size=1, max_size=3).map(
            lambda kids: tuple((f"p{i}", kid) for i, kid in enumerate(kids))
        ),
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
        max_restarts=st.sampled_from([0, 2, 10]),
        period=st.sampled_from([1.0, 5.0, 30.0]),
        grace=st.sampled_from([0.5, 2.0]),
    )


class World:
    """What the players did: their failures, and how many are running."""

    def __init__(self) -> None:
        """Nothing has happened yet."""
        self.raised: list[BaseException] = []
        self.running = 0

    def player(self, path: str, leaf: Leaf) -> orchestra.PlayerSpec:
        """The player for *leaf* at *path*."""
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
        )

    def boom(self, path: str, run: int) -> Boom:
        """Make, and remember, a failure of *path*."""
        error = Boom(path, run)
        self.raised.append(error)
        return error

    def build(self, tree: Tree, path: str, on_event: Any = None) -> orchestra.Conductor:  # noqa: ANN401
        """The conductor for *tree* at *path*."""
        players: dict[str, orchestra.PlayerSpec | orchestra.Conductor] = {}
        for name, child in tree.children:
            child_path = f"{path}/{name}"
            if isinstance(child, Leaf):
                players[name] = self.player(child_path, child)
            else:
                players[name] = orchestra.PlayerSpec(
                    self.build(child, child_path),
                    restart=orchestra.Restart.ON_FAILURE,
                    backoff=None,
                )
        return orchestra.Conductor(
            players,
            name=path.rpartition("/")[2],
            grace=tree.grace,
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


def stop_bound(tree: Tree) -> float:
    """The longest an orderly stop of *tree* can take, stragglers included."""
    return sum(2 * leaf.grace + leaf.hang + 1 for leaf in walk_leaves(tree))


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


@given(tree=trees(3), stop_at=st.sampled_from([0.0, 0.7, 2.0, 6.0, 20.0, 60.0]))
def test_random_trees_keep_the_invariants(tree: Tree, stop_at: float) -> None:
    """Random faults in random trees: bounded stop, failures exactly once, no leaks."""
    world = World()
    seen: list[events.Event] = []
    root = world.build(tree, "app", on_event=seen.append)
    outcome: list[orchestra.ConductorError] = []

    async def main() -> None:
        try:
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

    assert clock.current_time() <= stop_at + stop_bound(tree) + 1e-9
    check_every_failure_seen_once(seen, world.raised)
    check_handled_only_when_allowed(seen)
    check_reported_exactly_once(seen, outcome[0] if outcome else None)
    check_intensity(seen, tree)
