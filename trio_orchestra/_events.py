"""Typed, frozen lifecycle events, for a conductor's ``on_event`` hook.

Why this module: logs are for people, events are for programs (metrics, tests, dashboards).
Each event is an immutable attrs value that names the player's full path and the Trio time it
happened at. The same moments are logged under the ``trio_orchestra`` logger.
"""

from __future__ import annotations

from typing import final

import attrs

__all__ = [
    "Draining",
    "Event",
    "Failed",
    "Finished",
    "Hung",
    "Ready",
    "RestartLimitExceeded",
    "Restarting",
    "Started",
    "Stopped",
    "Stopping",
    "Straggling",
    "UpdateFailed",
    "Updated",
    "Updating",
]


@attrs.frozen(kw_only=True)
class Event:
    """Something that happened to the player at ``path``, at Trio time ``time``.

    Example::

        def on_event(event: orchestra.events.Event) -> None:
            if isinstance(event, orchestra.events.Failed):
                failures.labels(event.path).inc()
    """

    path: str
    time: float


@final
@attrs.frozen(kw_only=True)
class Started(Event):
    """The player's task was spawned (a first start or a restart).

    Example::

        Started(path="app/db", time=0.0)
    """


@final
@attrs.frozen(kw_only=True)
class Ready(Event):
    """The player is started: it called ``task_status.started()``, or began to run.

    Example::

        Ready(path="app/db", time=1.5)
    """


@final
@attrs.frozen(kw_only=True)
class Stopping(Event):
    """A stop of the player began; it has until ``deadline`` (``time`` for a hard cancel).

    Example::

        Stopping(path="app/web", time=10.0, reason="deploy", deadline=15.0)
    """

    reason: str | None
    deadline: float


@final
@attrs.frozen(kw_only=True)
class Draining(Event):
    """The conductor at ``path`` drains: it is not ready, and stops at ``until``.

    The runner's ``drain=`` (``--drain``): on the first signal the tree keeps serving, while
    ``/readyz`` answers 503, so that load balancers stop sending traffic before the stop.

    Example::

        Draining(path="app", time=30.0, reason="received SIGTERM", until=35.0)
    """

    reason: str | None
    until: float


@final
@attrs.frozen(kw_only=True)
class Stopped(Event):
    """A stop of the player ended without a failure: it returned, or was cancelled.

    ``cut_off`` is true when the player had subscribed to the soft phase (it asked for its
    :func:`~trio_orchestra.current_stop`) and was hard-cancelled before it returned: at the
    end of its grace, or by a forced stop. Its work in hand was cut off. A player that never
    subscribed is cancelled at once by design, and is never cut off.

    Example::

        Stopped(path="app/web", time=12.0, cut_off=False)
    """

    cut_off: bool = False


@final
@attrs.frozen(kw_only=True)
class Finished(Event):
    """The player returned by itself, with no stop asked of it (its work was done).

    Example::

        Finished(path="app/migrate", time=3.0)
    """


@final
@attrs.frozen(kw_only=True)
class Failed(Event):
    """The player raised (or failed to start, or outlived its hard cancel).

    ``handled`` tells whether the failure was dealt with and so is *not* in the conductor's
    :class:`ConductorError`: a restart was scheduled for it, it was raised to the caller of
    ``add``, ``remove`` or ``restart``, or the player raised it while being stopped for a
    restart. Every failure with ``handled=False`` is in that error, exactly once.

    Example::

        Failed(path="app/jobs", time=3.0, error=ValueError("bad row"), handled=True)
    """

    error: BaseException
    handled: bool


@final
@attrs.frozen(kw_only=True)
class Restarting(Event):
    """The player will be started again after ``delay`` seconds (its ``restarts``-th restart).

    Example::

        Restarting(path="app/jobs", time=3.0, delay=0.5, restarts=1)
    """

    delay: float
    restarts: int


@final
@attrs.frozen(kw_only=True)
class Straggling(Event):
    """The player is still running its grace after its hard cancel; ``where`` it is stuck.

    Example::

        Straggling(path="app/web", time=20.0, where=("app.py:12 in serve",))
    """

    where: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class Hung(Event):
    """The player sent no heartbeat for ``silent`` seconds, more than its ``liveness``.

    ``where`` is where it is stuck, as for :class:`Straggling`. Its stop follows (while its
    conductor runs; during a stop, in its turn), then a :class:`Failed` with a
    :class:`~trio_orchestra.PlayerHung`.

    Example::

        Hung(
            path="app/consumer",
            time=40.0,
            liveness=30.0,
            silent=30.0,
            where=("consumer.py:18 in consume",),
        )
    """

    liveness: float
    silent: float
    where: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class RestartLimitExceeded(Event):
    """The player needed more than ``max_restarts`` restarts within ``period``: escalation.

    Example::

        RestartLimitExceeded(path="app/jobs", time=9.0, max_restarts=5, period=60.0)
    """

    max_restarts: int
    period: float


@final
@attrs.frozen(kw_only=True)
class Updating(Event):
    """The conductor at ``path`` begins an update (:meth:`~trio_orchestra.Conductor.update`).

    ``added``, ``removed`` and ``changed`` are the names of its players that the update adds,
    removes, and restarts with a new spec (or updates, for a nested conductor), in the order
    it takes them.

    Example::

        Updating(path="app", time=60.0, added=("cache",), removed=(), changed=("web",))
    """

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class Updated(Event):
    """The update of the conductor at ``path`` is done: every change was made.

    Example::

        Updated(path="app", time=62.5, added=("cache",), removed=(), changed=("web",))
    """

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class UpdateFailed(Event):
    """The update of the conductor at ``path`` stopped at ``player``, which failed to start.

    Example::

        UpdateFailed(path="app", time=61.0, player="app/web", error=OSError("port in use"))
    """

    player: str
    error: BaseException
