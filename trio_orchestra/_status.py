"""Introspection values: the status tree and a conductor's statistics, as frozen snapshots.

Why this module: whatever renders a tree (the health endpoint, the demo, a test) should get an
immutable snapshot, never live state it could corrupt or that changes while it reads.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from typing import final

import attrs

from ._lifecycle import PlayerState

__all__ = ["ConductorStatistics", "PlayerStatus"]


def _no_children() -> Mapping[str, PlayerStatus]:
    return types.MappingProxyType({})


@final
@attrs.frozen(kw_only=True)
class PlayerStatus:
    """One node of :meth:`Conductor.status`: a player (or conductor) and its children.

    Attributes:
        path: the full path, e.g. ``"app/db/pool"``.
        state: its :class:`PlayerState`.
        restarts: how many times it was restarted in its conductor's current (or last) run.
        last_error: the last exception it raised (also a handled one), or ``None``.
        started_at: the :func:`trio.current_time` it last became started, or ``None``.
        started_value: what its current (or last) run passed to ``task_status.started()``:
            the port :func:`serve_asgi` bound, the listeners of :func:`serve_tcp`, the
            process of :func:`run_process`; ``None`` before it is started.
        cut_off: its last run had subscribed to the soft phase and was hard-cancelled before
            it returned (its work in hand was cut off).
        after: the names of the siblings it is after (the resolved edges of its conductor's
            order: for a line, the player before it).
        stop_budget: for a conductor, the longest its orderly stop can take now (see
            :meth:`Conductor.stop_budget`); ``None`` for a leaf.
        liveness: its ``PlayerSpec(liveness=...)``: how long it may go without a
            :func:`heartbeat`, or ``None``.
        last_heartbeat: the :func:`trio.current_time` of the last heartbeat of its current
            (or last) run, or ``None`` (before its first one, or without a liveness).
        not_ready: why it is not ready, one reason per player that keeps it from being ready
            (``"app/web is starting"``); empty when it is ready. See :attr:`ready`.
        children: a read-only mapping from name to node, in start order (empty for a leaf;
            a nested conductor's players).

    Example::

        for node in conductor.status().walk():
            print(node.path, node.state.name, node.restarts)
    """

    path: str
    state: PlayerState
    restarts: int = 0
    last_error: BaseException | None = None
    started_at: float | None = None
    started_value: object = attrs.field(default=None, repr=False)
    cut_off: bool = False
    after: tuple[str, ...] = ()
    stop_budget: float | None = None
    liveness: float | None = None
    last_heartbeat: float | None = None
    not_ready: tuple[str, ...] = ()
    children: Mapping[str, PlayerStatus] = attrs.field(factory=_no_children, repr=False)

    @property
    def ready(self) -> bool:
        """Whether it is ready, as ``/readyz`` tells (for the root).

        A player is ready while it is running or done; a conductor, while it is running and
        every player it counts is ready (or at least its ``min_ready`` of them). Players with
        ``ready_required=False`` are not counted.
        """
        return not self.not_ready

    def walk(self) -> Iterator[PlayerStatus]:
        """Yield this node, then every node below it, depth first, in start order."""
        yield self
        for child in self.children.values():
            yield from child.walk()


@final
@attrs.frozen(kw_only=True)
class ConductorStatistics:
    """Counts for one conductor (not its nested ones), from :meth:`Conductor.statistics`.

    Example::

        stats = conductor.statistics()
        assert stats.running == stats.players
    """

    players: int
    starting: int
    running: int
    stopping: int
    backoff: int
    done: int
    failed: int
    restarts: int
    recent_restarts: int
