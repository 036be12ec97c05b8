"""The order of a conductor's players: who starts when, who stops when.

Why this module: a conductor's players have one of two shapes. A **line** (no player names
``after=``): each is after the one declared before it, as OTP and fx start children; the line
costs nothing per player, since the conductor's own list of players is the line. A **graph**
(``PlayerSpec(after=...)``): each player is after the siblings it names, independent ones start
side by side, and a player stops only once everything after it is gone, so a stop takes the
longest path of graces, not their sum.

The conductor owns every state change; this module only answers "who is next". It hands out
*waves*: a :class:`StartWave` over the players to start (the conductor's start, or a group
restart's) says which may start first and which may start once one is started; a
:class:`StopWave` over the players to stop says which may stop first and which may stop once
one is gone. The order is transitive through players that are no longer running: if ``web`` is
after ``cache``, which is after ``db``, and ``cache`` has finished, ``db`` still stops after
``web``; so a line keeps its order exactly, whoever in it has already returned.

Edges come in two kinds. A name in ``after=`` is a *requirement*: ``remove()`` refuses to take
that player out from under a running dependent. The default order (``after=None``, "after the
player declared just before me") is only an *ordering*: removing a player of a line splices it
out, as a dynamic pool of workers expects.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Generic, Protocol, TypeVar

__all__ = [
    "Graph",
    "Line",
    "Order",
    "StartWave",
    "StopWave",
    "check_names",
    "longest_path",
    "resolve",
]


class Node(Protocol):
    """A player as this module sees it: a name, a position in start order, alive or not."""

    name: str
    order: int
    alive: bool


N = TypeVar("N", bound=Node)

_by_order = attrgetter("order")
_NOTHING: tuple[()] = ()


# -- the declared edges: checked once, at construction --------------------------------------


def resolve(
    declared: Mapping[str, tuple[str, ...] | None], where: str
) -> dict[str, tuple[str, ...]] | None:
    """The edges of a conductor's players (name -> names it is after), or None for a line.

    *declared* maps each name, in declaration order, to its ``after`` (``None``: after the one
    before it). Raises ``ValueError`` naming the conductor *where*, the player and the rule.
    """
    if all(after is None for after in declared.values()):
        return None
    edges: dict[str, tuple[str, ...]] = {}
    previous: str | None = None
    for name, after in declared.items():
        if after is None:
            edges[name] = () if previous is None else (previous,)
        else:
            check_names(name, after, declared, where)
            edges[name] = after
        previous = name
    cycle = _find_cycle(edges)
    if cycle:
        msg = f"{where}: dependency cycle {' -> '.join(cycle)}"
        raise ValueError(msg)
    return edges


def check_names(name: str, after: Iterable[str], players: Container[str], where: str) -> None:
    """Raise ``ValueError`` if *name*'s *after* names itself, or what is not in *players*."""
    for other in after:
        if other == name:
            msg = f"{where}: player {name!r} cannot be after itself"
            raise ValueError(msg)
        if other not in players:
            msg = f"{where}: player {name!r} is after {other!r}, which is not a player of {where}"
            raise ValueError(msg)


def _find_cycle(edges: Mapping[str, tuple[str, ...]]) -> list[str]:
    """A cycle of *edges* (``[a, b, a]``: a is after b, b after a), or an empty list."""
    done: set[str] = set()
    for root in edges:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        todo: list[Iterator[str]] = [iter(edges[root])]
        while todo:
            following = next(todo[-1], None)
            if following is None:
                todo.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
                continue
            if following in on_path:
                return [*path[path.index(following) :], following]
            if following not in done:
                path.append(following)
                on_path.add(following)
                todo.append(iter(edges[following]))
    return []


def topological(edges: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The names of an acyclic *edges*, each after everything it is after, else as declared."""
    placed: dict[str, None] = {}
    for root in edges:
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        while stack:
            name, pending = stack[-1]
            following = next(pending, None)
            if following is None:
                stack.pop()
                placed.setdefault(name)
            elif following not in placed:
                stack.append((following, iter(edges[following])))
    return list(placed)


def longest_path(
    names: Sequence[str],
    edges: Mapping[str, tuple[str, ...]] | None,
    weight: Callable[[str], float],
) -> float:
    """The longest a stop can take: the heaviest chain of *weight* along the edges.

    A player stops once everything after it is gone, so its stop ends at its own weight plus
    the latest end among those after it. A line (``edges`` None) stops one player after
    another: the sum.
    """
    if edges is None:
        return sum(weight(name) for name in names)
    order = topological(edges)
    dependents: dict[str, list[str]] = {}
    for name in order:
        for dep in edges[name]:
            dependents.setdefault(dep, []).append(name)
    finish: dict[str, float] = {}
    for name in reversed(order):  # everything after a player comes first
        after_it = (finish[dependent] for dependent in dependents.get(name, ()))
        finish[name] = weight(name) + max(after_it, default=0.0)
    return max(finish.values(), default=0.0)


# -- waves ----------------------------------------------------------------------------------


class StartWave(Protocol[N]):
    """Players to start, each once what it is after (among them) is started."""

    first: Sequence[N]
    left: int

    def started(self, node: N) -> Sequence[N]:
        """*node* is started: return the members that may start now."""
        ...


class StopWave(Protocol[N]):
    """Players to stop, each once what is after it is gone."""

    first: Sequence[N]

    def gone(self, node: N) -> Sequence[N]:
        """*node* has exited: return the members that may be asked to stop now."""
        ...


class _LineStart(Generic[N]):
    """A line's start: one member after another."""

    __slots__ = ("_members", "first", "left")

    def __init__(self, members: Sequence[N]) -> None:
        self._members = members
        self.left = len(members)
        self.first: Sequence[N] = (members[0],) if members else _NOTHING

    def started(self, node: N) -> Sequence[N]:
        del node
        self.left -= 1
        left = self.left
        return (self._members[-left],) if left else _NOTHING


class _LineStop(Generic[N]):
    """A line's stop: the latest member still alive, then the one before it, and so on."""

    __slots__ = ("_cursor", "_members", "first")

    def __init__(self, members: Sequence[N]) -> None:
        self._members = members
        self._cursor = len(members) - 1
        self.first = self.gone(None)

    def gone(self, node: N | None) -> Sequence[N]:
        del node
        members = self._members
        cursor = self._cursor
        while cursor >= 0:
            member = members[cursor]
            if member.alive:
                self._cursor = cursor
                return (member,)
            cursor -= 1
        self._cursor = cursor
        return _NOTHING


class _GraphStart(Generic[N]):
    """A graph's start: each member once every member it is after is started."""

    __slots__ = ("_dependents", "_waiting", "first", "left")

    def __init__(self, graph: Graph[N], members: Sequence[N]) -> None:
        deps = graph.deps
        waiting = dict.fromkeys(members, 0)
        for member in members:
            waiting[member] = sum(1 for dep in deps.get(member, _NOTHING) if dep in waiting)
        self._waiting = waiting
        self._dependents = graph.dependents
        self.left = len(members)
        self.first: Sequence[N] = [member for member in members if not waiting[member]]

    def started(self, node: N) -> Sequence[N]:
        self.left -= 1
        waiting = self._waiting
        free: list[N] = []
        for dependent in self._dependents.get(node, _NOTHING):
            count = waiting.get(dependent)
            if count is not None:
                waiting[dependent] = count - 1
                if count == 1:
                    free.append(dependent)
        return free


class _GraphStop(Generic[N]):
    """A graph's stop: each member once no member after it, directly or not, is alive.

    ``pending[n]`` counts the members directly after ``n`` that are not yet *clear* (gone,
    and everything after them gone too); a member is asked to stop when its count is 0, and
    becomes clear when it is gone then.
    """

    __slots__ = ("_deps", "_pending", "first")

    def __init__(self, graph: Graph[N], members: Collection[N] | None) -> None:
        dependents = graph.dependents
        pending: dict[N, int] = {}
        for node in reversed(graph.topo):  # everything after a node comes first
            if members is not None and node not in members:
                continue
            count = 0
            for dependent in dependents.get(node, _NOTHING):
                if pending.get(dependent, -1) != -1:  # in the wave, and not clear
                    count += 1
            pending[node] = count if count or node.alive else -1  # -1: clear already
        self._pending = pending
        self._deps = graph.deps
        self.first: Sequence[N] = sorted(
            (node for node, count in pending.items() if not count and node.alive), key=_by_order
        )

    def gone(self, node: N) -> Sequence[N]:
        pending = self._pending
        if pending.get(node) != 0:
            return _NOTHING  # not ours, or what is after it is still alive: cleared later
        free: list[N] = []
        clear = [node]
        deps = self._deps
        while clear:
            done = clear.pop()
            pending[done] = -1
            for dep in deps.get(done, _NOTHING):
                count = pending.get(dep)
                if count is None or count <= 0:
                    continue
                pending[dep] = count - 1
                if count == 1:
                    (free if dep.alive else clear).append(dep)
        return free


# -- the two shapes -------------------------------------------------------------------------


class Order(Protocol[N]):
    """The shape of a conductor's players: what the conductor asks of a line or a graph."""

    def start(self, members: Sequence[N]) -> StartWave[N]:
        """A wave starting *members* (in start order)."""
        ...

    def stop(self, members: Collection[N] | None) -> StopWave[N]:
        """A wave stopping *members* (``None``: every player), the latest first."""
        ...

    def closure(self, node: N) -> list[N]:
        """*node* and every player after it, directly or not (``rest_for_one``)."""
        ...

    def after(self, node: N) -> Sequence[N]:
        """The players *node* is directly after."""
        ...

    def requirers(self, node: N) -> list[N]:
        """The players that name *node* in their ``after=``."""
        ...

    def add(self, node: N, after: Sequence[N], *, explicit: bool) -> None:
        """Place a new player after *after* (*explicit*: named in its ``after=``)."""
        ...

    def remove(self, node: N) -> None:
        """Take a player out; what was after it is now after what it was after."""
        ...


class Line(Generic[N]):
    """Players in a line: the conductor's own list of them, in start order."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: list[N]) -> None:
        self._nodes = nodes  # the conductor's list: it appends and removes, sorted by order

    def start(self, members: Sequence[N]) -> StartWave[N]:
        return _LineStart(members)

    def stop(self, members: Collection[N] | None) -> StopWave[N]:
        if members is None:
            return _LineStop(self._nodes)
        return _LineStop(sorted(members, key=_by_order))

    def closure(self, node: N) -> list[N]:
        return [other for other in self._nodes if other.order >= node.order]

    def after(self, node: N) -> Sequence[N]:
        index = bisect.bisect_left(self._nodes, node.order, key=_by_order)
        return (self._nodes[index - 1],) if index > 0 else _NOTHING

    def requirers(self, node: N) -> list[N]:
        del node
        return []

    def add(self, node: N, after: Sequence[N], *, explicit: bool) -> None:
        del node, after, explicit  # the conductor appends it to the list

    def remove(self, node: N) -> None:
        del node  # the conductor takes it out of the list


class Graph(Generic[N]):
    """Players in a dependency graph: each after the siblings it names."""

    __slots__ = ("dependents", "deps", "explicit", "topo")

    def __init__(self) -> None:
        self.deps: dict[N, tuple[N, ...]] = {}  # only players after something
        self.dependents: dict[N, list[N]] = {}  # only players something is after
        self.explicit: set[N] = set()  # players whose edges were named in after=
        self.topo: list[N] = []  # every player, each after what it is after

    @classmethod
    def of(
        cls,
        nodes: Sequence[N],
        edges: Mapping[str, tuple[str, ...]] | None,
        explicit: Collection[str] = (),
    ) -> Graph[N]:
        """The graph of *nodes* (in declaration order) with the resolved *edges*.

        ``edges`` None makes the graph of a line (each after the one before it); *explicit*
        names the players whose edges were named in their ``after=``.
        """
        graph: Graph[N] = cls()
        graph.explicit = {node for node in nodes if node.name in explicit}
        by_name = {node.name: node for node in nodes}
        if edges is None:
            for before, node in itertools.pairwise(nodes):
                graph._link(node, (before,))
            graph.topo = list(nodes)
            return graph
        for node in nodes:
            graph._link(node, tuple(by_name[name] for name in edges[node.name]))
        graph.topo = [by_name[name] for name in topological(edges)]
        return graph

    def _link(self, node: N, after: tuple[N, ...]) -> None:
        if after:
            self.deps[node] = after
            for dep in after:
                self.dependents.setdefault(dep, []).append(node)

    def start(self, members: Sequence[N]) -> StartWave[N]:
        return _GraphStart(self, members)

    def stop(self, members: Collection[N] | None) -> StopWave[N]:
        return _GraphStop(self, members)

    def closure(self, node: N) -> list[N]:
        found = {node: None}
        todo = [node]
        while todo:
            for dependent in self.dependents.get(todo.pop(), _NOTHING):
                if dependent not in found:
                    found[dependent] = None
                    todo.append(dependent)
        return list(found)

    def after(self, node: N) -> Sequence[N]:
        return self.deps.get(node, _NOTHING)

    def requirers(self, node: N) -> list[N]:
        return [
            dependent
            for dependent in self.dependents.get(node, _NOTHING)
            if dependent in self.explicit
        ]

    def add(self, node: N, after: Sequence[N], *, explicit: bool) -> None:
        if explicit:
            self.explicit.add(node)
        self._link(node, tuple(after))
        self.topo.append(node)

    def remove(self, node: N) -> None:
        after = self.deps.pop(node, _NOTHING)
        for dep in after:
            self.dependents[dep].remove(node)
            if not self.dependents[dep]:
                del self.dependents[dep]
        for dependent in self.dependents.pop(node, []):
            kept = tuple(dep for dep in self.deps[dependent] if dep is not node)
            spliced = kept + tuple(dep for dep in after if dep not in kept)
            self.deps[dependent] = spliced
            for dep in spliced:
                if dep not in kept:
                    self.dependents.setdefault(dep, []).append(dependent)
            if not spliced:
                del self.deps[dependent]
        self.explicit.discard(node)
        self.topo.remove(node)
