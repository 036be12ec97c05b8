"""How long each player's stops took, phase by phase: the data of ``trio_orchestra_stop_seconds``.

Why this module: an operator sizing a grace period wants to know how long players really take
to stop, and which ones only stop when they are cancelled. The conductor tells a
:class:`StopTimes` three instants of a stop (the soft phase begins, the hard cancel, the end);
this module turns them into histograms, one per player path and phase. Nothing here imports
prometheus-client: :mod:`trio_orchestra._metrics` renders these counts.

The phases of one stop of a player:

* ``soft``: from the moment its soft phase begins (its token is set, with a deadline) until it
  returns, or until its hard cancel if it did not return in time. Only a player that asked for
  its token (a subscribed player, a nested conductor) has one.
* ``hard``: from its hard cancel until it is gone, i.e. the time its cleanup took after the
  cancel. A player that never asked for its token has only this phase (usually near 0); one
  that returned within its soft phase has none.

So a player cut off at the end of a 5 s grace, whose cleanup then took 0.2 s, adds 5 to
``soft`` and 0.2 to ``hard``. Every stop the conductor asks for counts: the tree's stop, a
``remove()``, a ``restart()``, a group restart, a hung player's stop.

The conductor holds a :class:`StopTimes` only once a :class:`TreeCollector` was made for it
(``Conductor._stops``); until then each hook is one ``is None`` test on the stop path only.
"""

from __future__ import annotations

import bisect
import math
from typing import Protocol, final

import trio

__all__ = ["BUCKETS", "Histogram", "StopTimes"]

#: Upper bounds of the buckets, in seconds (then ``+Inf``): from a quick return to a long drain.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@final
class Histogram:
    """Observations of one phase of one player: counts per bucket (not cumulative), and sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one phase that lasted *seconds*."""
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """``[("0.01", n), ..., ("+Inf", total)]``, as Prometheus buckets are."""
        total = 0
        buckets: list[tuple[str, int]] = []
        for bound, count in zip((*BUCKETS, math.inf), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), total))
        return buckets


class _Player(Protocol):
    """What the conductors pass: a player's slot (hashable, with its path)."""

    def __hash__(self) -> int: ...

    @property
    def path(self) -> str: ...


@final
class StopTimes:
    """The stop times of a tree's players, by path and phase; fed by the conductors.

    The conductors call :meth:`soft`, :meth:`hard` and :meth:`ended` with the player's slot;
    a stop in progress is kept by slot, until the run ends.
    """

    __slots__ = ("_hard_at", "_soft_at", "histograms")

    def __init__(self) -> None:
        self._soft_at: dict[_Player, float] = {}
        self._hard_at: dict[_Player, float] = {}
        #: ``(path, phase)`` -> its histogram, in the order the phases first happened.
        self.histograms: dict[tuple[str, str], Histogram] = {}

    def soft(self, slot: _Player, now: float) -> None:
        """The soft phase of *slot*'s stop begins (its token is set)."""
        self._soft_at.setdefault(slot, now)

    def hard(self, slot: _Player, now: float) -> None:
        """*slot* is hard-cancelled: its soft phase, if any, ends; its hard phase begins."""
        self._hard_at.setdefault(slot, now)

    def ended(self, slot: _Player) -> None:
        """*slot*'s run ended: count the phases of its stop, if it was being stopped."""
        soft = self._soft_at.pop(slot, None)
        hard = self._hard_at.pop(slot, None)
        if soft is None and hard is None:
            return  # it was not being stopped: it finished, or failed
        now = trio.current_time()
        path = slot.path
        if soft is not None:
            self._observe(path, "soft", (now if hard is None else hard) - soft)
        if hard is not None:
            self._observe(path, "hard", now - hard)

    def _observe(self, path: str, phase: str, seconds: float) -> None:
        key = (path, phase)
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = Histogram()
        histogram.observe(max(0.0, seconds))
