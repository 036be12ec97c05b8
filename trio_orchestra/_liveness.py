"""Liveness: a player that stops sending heartbeats is hung, and a hung player is a failed one.

Why this module: the failure no supervisor catches is the player that is alive but stuck (a
network call with no timeout, a deadlock on a lock): its task exists, so nothing fails, and
only the whole process can be killed from outside. A player declared with
``PlayerSpec(liveness=S)`` promises to call :func:`heartbeat` at least every ``S`` seconds
once it is started; its conductor finds the one that goes silent.

Two costs are kept apart. :func:`heartbeat` sits in a player's hottest loop, so it is one
context-variable lookup and one clock reading into the run's :class:`Pulse` (the context
variable is set only in the tasks of players that have a liveness: other players pay nothing).
The conductor reads the pulses with one timer for all its players (:class:`Watch`), which
wakes at most once per the shortest liveness among the players it watches (running, not
stopping), and never without one. So a player silent for ``S`` seconds is found at most one
such period later: after between ``S`` and ``2 S`` of silence.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar, final

from ._stop import current_owner

__all__ = ["Pulse", "Watch", "begin_run", "heartbeat", "no_pulse"]

_INF = math.inf


@final
class Pulse:
    """The heartbeats of one run of one player.

    ``at`` is the Trio time of its last heartbeat (``None`` before the first one); ``since``
    is when the silence is counted from, its start, once it is started.
    """

    __slots__ = ("at", "clock", "since")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.at: float | None = None
        self.since = _INF

    def silent_since(self) -> float:
        """The Trio time since which it has sent no heartbeat (its start, or its last one)."""
        at = self.at
        return at if at is not None and at > self.since else self.since


_pulse: contextvars.ContextVar[Pulse | None] = contextvars.ContextVar(
    "trio_orchestra_pulse", default=None
)


def begin_run(clock: Callable[[], float]) -> Pulse:
    """In a player's own task, as its run begins: a new pulse, which its heartbeats feed."""
    pulse = Pulse(clock)
    _pulse.set(pulse)
    return pulse


def no_pulse(context: contextvars.Context) -> None:
    """Make *context* feed no pulse: a conductor's players must not beat for an outer player."""
    if context.get(_pulse) is not None:
        context.run(_pulse.set, None)


def heartbeat() -> None:
    """Tell the conductor that the player running this code is alive.

    A player declared with ``PlayerSpec(..., liveness=S)`` must call it at least every ``S``
    seconds once it is started, or it is *hung*: its conductor logs where it is stuck, stops
    it and fails it with :class:`PlayerHung` (so its restart policy applies). Call it where
    the player makes progress (once per message, per loop, per request), from the player's
    task or from any task it spawned. It costs about as much as a clock reading; in a player
    without ``liveness`` it does nothing.

    Raises:
        RuntimeError: it was called outside a player (not in a conductor's player or in a
            task the player spawned).

    Example::

        async def consume(queue):
            async for message in queue:
                orchestra.heartbeat()
                await handle(message)


        orchestra.PlayerSpec(consume, queue, liveness=30, restart="on_failure")
    """
    pulse = _pulse.get()
    if pulse is not None:
        pulse.at = pulse.clock()
        return
    if current_owner() is None:
        msg = (
            "heartbeat() was called outside a player: call it in a player of a conductor"
            " (or in a task the player spawned)"
        )
        raise RuntimeError(msg)


class _Watched(Protocol):
    """What the watch needs of a player: its liveness, and whether to watch it now."""

    @property
    def liveness(self) -> float: ...

    @property
    def watched(self) -> bool: ...


W = TypeVar("W", bound=_Watched)


@final
class Watch(Generic[W]):
    """The liveness of one conductor run's players, read by one timer for all of them.

    The conductor records each run's pulse with :meth:`record`, starts counting its silence
    with :meth:`started`, and calls :meth:`check` when :attr:`check_at` comes; ``check``
    returns the hung players and sets the next check: at the earliest moment one of them can
    be hung, but no sooner than the shortest liveness after this check.
    """

    __slots__ = ("check_at", "pulses")

    def __init__(self) -> None:
        self.pulses: dict[W, Pulse] = {}
        self.check_at = _INF  # the next check, Trio time

    def record(self, player: W, pulse: Pulse) -> None:
        """*pulse* is the current run's of *player* (it replaces the last run's)."""
        self.pulses[player] = pulse

    def forget(self, player: W) -> None:
        """*player* left the tree."""
        self.pulses.pop(player, None)

    def last_heartbeat(self, player: W) -> float | None:
        """The Trio time of the last heartbeat of *player*'s current (or last) run."""
        pulse = self.pulses.get(player)
        return None if pulse is None else pulse.at

    def started(self, player: W, now: float) -> bool:
        """*player* is started at *now*: count its silence; tell whether the check came sooner."""
        pulse = self.pulses.get(player)
        if pulse is None:
            return False
        pulse.since = now
        due = now + player.liveness
        if due < self.check_at:
            self.check_at = due
            return True
        return False

    def check(self, now: float) -> list[tuple[W, float]]:
        """The watched players silent for their liveness at *now*, each with its silence."""
        hung: list[tuple[W, float]] = []
        soonest = shortest = _INF
        for player, pulse in self._watched():
            since = pulse.silent_since()
            liveness = player.liveness
            shortest = min(shortest, liveness)
            if since + liveness <= now:
                hung.append((player, now - since))
            else:
                soonest = min(soonest, since + liveness)
        self.check_at = max(soonest, now + shortest) if soonest < _INF else _INF
        return hung

    def _watched(self) -> Iterator[tuple[W, Pulse]]:
        for player, pulse in self.pulses.items():
            if player.watched and pulse.since < _INF:
                yield player, pulse
