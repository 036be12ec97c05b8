"""The conductor: runs named players in one nursery, starts them in order, stops them in reverse.

Theory of operation
-------------------
One run of a :class:`Conductor` is one Trio nursery. Each player is one task in it, wrapped by
:meth:`Conductor._play`, inside one cancel scope of its own; the player's slot object
(:class:`_Slot`) doubles as its ``task_status``, so readiness costs no hidden nursery.

The *supervising task* is the nursery's body. It parks without polling and wakes only to report
``started()``, to fire a timer (a soft phase that ran out, a straggler), or to return. Player
events are handled in the player's own task as they happen: a player that becomes started spawns
the next one; a player that exits during a stop requests the stop of the one before it. So the
ordered start and the reverse-order stop each cost one scheduler round per player and no extra
task. Players are spawned under a context snapshot taken when the run began, so one player's
context variables never leak into its next sibling.

Timers need no task either: the supervising task parks in one cancel scope whose deadline is the
earliest pending timer, moved earlier when a new timer comes sooner. A stale deadline costs one
spurious wake-up; an idle conductor never wakes.

State changes of a player go through :func:`trio_orchestra._lifecycle.move`.
"""

from __future__ import annotations

import contextvars
import logging
import math
import sys
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Literal, cast, final

import trio

from ._diagnostics import where_stuck
from ._errors import ConductorError, StartTimeout, StopTimeout, path_note
from ._lifecycle import PlayerState, move
from ._spec import PlayerSpec, as_spec, check_time, check_type
from ._stop import StopToken, _current_owner

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = ["Conductor", "open_conductor"]

logger = logging.getLogger("trio_orchestra")

_INFO = logging.INFO
_S = PlayerState
_INF = math.inf


class _Phase:
    """The phases of one conductor run (plain ints: compared on hot paths)."""

    IDLE: int = 0
    STARTING: int = 1
    RUNNING: int = 2
    STOPPING: int = 3
    DONE: int = 4


def _not_running(*_args: object, **_kwargs: object) -> None:
    """What spawning a player means outside a run: a bug."""
    msg = "a player was spawned outside a conductor run; this is a bug in trio_orchestra"
    raise RuntimeError(msg)


def _add_note(exc: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover - exercised on 3.10 only
        notes: list[str] = list(getattr(exc, "__notes__", ()))
        notes.append(note)
        exc.__notes__ = notes  # type: ignore[attr-defined]


@final
class _Slot:
    """One player of one conductor run: its spec, its state, its cancel scope, its token.

    It is also the player's ``task_status`` (:meth:`started`) and what :func:`current_stop`
    finds in the player's context (:meth:`stop_token`).
    """

    __slots__ = (
        "alive",
        "begun",
        "child",
        "conductor",
        "hard",
        "index",
        "last_error",
        "name",
        "path",
        "restarts",
        "scope",
        "spec",
        "started_at",
        "started_flag",
        "state",
        "stop_pending",
        "stop_requested",
        "straggler",
        "timer",
        "token",
        "value",
    )

    def __init__(self, conductor: Conductor, name: str, spec: PlayerSpec, index: int) -> None:
        self.conductor = conductor
        self.name = name
        self.spec = spec
        self.index = index
        self.path = f"{conductor._path}/{name}"
        self.state = _S.STARTING
        self.scope = trio.CancelScope()
        self.token: StopToken | None = None
        self.child: Conductor | None = None
        self.alive = False
        self.begun = False
        self.started_flag = False
        self.stop_requested = False
        self.stop_pending = False
        self.hard = False
        self.straggler = False
        self.timer = _INF
        self.started_at: float | None = None
        self.value: object = None
        self.restarts = 0
        self.last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<player {self.path!r} {self.state.name}>"

    def started(self, value: object = None) -> None:
        """Report the player started (its ``task_status.started()``)."""
        self.conductor._on_started(self, value)

    def stop_token(self) -> StopToken:
        """Return the player's token, creating it (and so subscribing the player)."""
        token = self.token
        if token is None:
            token = self.token = StopToken()
            if self.hard:  # cancelled before it asked: it is too late for a soft phase
                token._request(self.conductor._stop_reason, trio.current_time())
        return token


@final
class Conductor:
    """Run named players under supervision, with ordered start and a two-phase stop.

    Args:
        players: a mapping from name to an async callable or a :class:`PlayerSpec`. Names are
            non-empty, unique and contain no ``/``. Players start in this order and stop in
            reverse. An empty mapping makes a pool that runs until it is stopped.
        name: this conductor's path element when it is the root (default ``"conductor"``);
            nested, its path element is its key in its parent's mapping.
        grace: default seconds of soft phase for players that subscribed with
            :func:`current_stop` (default 5).
        stop_order: ``"sequential"`` (default: one player after another, in reverse start
            order) or ``"parallel"`` (all at once).

    A conductor is itself a player: run it with ``await nursery.start(conductor)`` (returns once
    every player is started), with ``await conductor()``, or nest it in another conductor.
    It returns when every player is done, and raises :class:`ConductorError` when a player
    failed. Validation happens here, before anything runs.

    Example::

        conductor = orchestra.Conductor(
            {"db": db_pool, "web": web_server, "jobs": orchestra.PlayerSpec(worker, queue)},
            name="app",
            grace=5.0,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            ...
            conductor.stop("deploy")
    """

    # The state of the current (or last) run, reset by _reset().
    _slots: list[_Slot]
    _pool: bool
    _phase: int
    _stop_reason: str | None
    _force: bool
    _next_start: int
    _stop_cursor: int
    _live: int
    _ready: bool
    _failures: list[tuple[str, Exception]]
    _fatal: BaseException | None
    _cancelled: BaseException | None
    _timed: set[_Slot]
    _deferred: list[_Slot]
    _wake_at: float
    _park_scope: trio.CancelScope | None
    _parked: bool
    _shield: bool
    _task: trio.lowlevel.Task | None
    _nursery: trio.Nursery | None
    _nursery_start_soon: Callable[..., object]
    _spawn_soon: Callable[..., object]
    _parent_slot: _Slot | None

    def __init__(
        self,
        players: Mapping[str, Callable[..., Awaitable[object]] | PlayerSpec] | None = None,
        *,
        name: str = "conductor",
        grace: float = 5.0,
        stop_order: Literal["sequential", "parallel"] = "sequential",
    ) -> None:
        check_type(name, str, "Conductor name", "a str")
        if not name or "/" in name:
            msg = f"Conductor name {name!r} must be non-empty and contain no '/'"
            raise ValueError(msg)
        where = f"conductor {name!r}"
        check_time(grace, "grace", where)
        if stop_order not in {"sequential", "parallel"}:
            msg = f"{where}: stop_order must be 'sequential' or 'parallel', not {stop_order!r}"
            raise ValueError(msg)
        players = {} if players is None else players
        check_type(players, Mapping, f"{where}: players", "a mapping of name to player")
        specs: dict[str, PlayerSpec] = {}
        for key, value in players.items():
            check_type(key, str, f"{where}: player name {key!r}", "a str")
            if not key or "/" in key:
                msg = f"{where}: player name {key!r} must be non-empty and contain no '/'"
                raise ValueError(msg)
            specs[key] = as_spec(value, f"player {name}/{key}")
        self._name = name
        self._grace = float(grace)
        self._parallel = stop_order == "parallel"
        self._specs = specs
        self._runs = 0
        self._running = False
        self._prestop: str | None = None
        self._prestopped = False
        self._stop_hooks: list[Callable[[str | None], object]] = []
        self._path = name
        self._reset()

    # -- public surface ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """This conductor's name (its path when it is the root)."""
        return self._name

    @property
    def grace(self) -> float:
        """The default soft-phase window of its players, in seconds."""
        return self._grace

    @property
    def path(self) -> str:
        """Its full path in the tree during a run (``name`` when it is the root)."""
        return self._path

    @property
    def stop_order(self) -> Literal["sequential", "parallel"]:
        """``"sequential"`` or ``"parallel"``."""
        return "parallel" if self._parallel else "sequential"

    @property
    def players(self) -> Mapping[str, PlayerSpec]:
        """The declared players, as specs, in start order."""
        return types.MappingProxyType(self._specs)

    def __repr__(self) -> str:
        return f"<Conductor {self._path!r} with {len(self._specs)} players>"

    def stop(self, reason: str | None = None, *, force: bool = False) -> None:
        """Request a graceful stop; return at once (the run returns when all have stopped).

        Players stop in reverse start order, each with its soft phase if it subscribed. The
        first call's *reason* wins and later calls do nothing, except that ``force=True``
        skips what is left of the soft phases and hard-cancels every player at once (the
        runner's second Ctrl-C). A call before the conductor runs makes its next run start
        nothing; a call after it returned does nothing.

        Example::

            conductor.stop("deploy")
        """
        if not self._running:
            if self._runs == 0 and not self._prestopped:
                self._prestopped = True
                self._prestop = reason
            return
        self._begin_stop(reason, force=force)

    async def __call__(
        self, *, task_status: trio.TaskStatus[Conductor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the players: start them in order, supervise them, return when all are done.

        Reports ``task_status.started(self)`` once every player is started.

        Raises:
            ConductorError: a player failed (to start, while running, or while stopping).
            RuntimeError: this conductor is already running.
        """
        if self._running:
            msg = f"conductor {self._path!r} is already running; a Conductor has one live run"
            raise RuntimeError(msg)
        self._running = True
        self._runs += 1
        owner = _current_owner.get(None)
        parent = owner if isinstance(owner, _Slot) and owner.child is None else None
        self._path = parent.path if parent is not None else self._name
        self._reset()
        escaped: BaseException | None = None
        self._parent_slot = parent
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._nursery_start_soon = nursery.start_soon
                await self._supervise(task_status)
        except BaseException as exc:  # noqa: BLE001 - only cancellation gets here: see below
            escaped = exc
        finally:
            self._running = False
            self._nursery = None
            self._task = None
            self._spawn_soon = _not_running
            if parent is not None and parent.child is self:
                parent.child = None
        if self._fatal is not None:
            raise self._fatal
        if self._failures:
            raise self._error()
        if escaped is not None:
            raise escaped
        if self._cancelled is not None:
            raise self._cancelled

    # -- run state --------------------------------------------------------------------------

    def _reset(self) -> None:
        """Forget the previous run: a new run starts fresh from the declared players."""
        self._slots = [
            _Slot(self, key, spec, index) for index, (key, spec) in enumerate(self._specs.items())
        ]
        self._pool = not self._slots
        self._phase = _Phase.IDLE
        self._stop_reason = None
        self._force = False
        self._next_start = 0
        self._stop_cursor = -1
        self._live = 0
        self._ready = False
        self._failures = []
        self._fatal = None
        self._cancelled = None
        self._timed = set()
        self._deferred = []
        self._wake_at = _INF
        self._park_scope = None
        self._parked = False
        self._shield = False
        self._task = None
        self._nursery = None
        self._nursery_start_soon = _not_running
        self._spawn_soon = _not_running
        self._parent_slot = None

    # -- the supervising task ---------------------------------------------------------------

    async def _supervise(self, task_status: trio.TaskStatus[Conductor]) -> None:
        self._task = trio.lowlevel.current_task()
        # Players are spawned under this snapshot, whichever task spawns them.
        self._spawn_soon = partial(contextvars.copy_context().run, self._nursery_start_soon)
        self._phase = _Phase.STARTING
        if self._prestopped and self._runs == 1:
            self._begin_stop(self._prestop)
        parent = self._parent_slot
        if parent is not None:
            # Subscribe to the parent's soft phase: its stop request becomes ours.
            parent.child = self
            parent.stop_token()._add_listener(self._on_parent_stop)
        self._start_next()
        reported = False
        while True:
            if self._deferred:
                self._stop_deferred()
            if self._ready and not reported:
                reported = True
                task_status.started(self)
            if self._phase == _Phase.DONE:
                break
            await self._park()
            if self._wake_at <= trio.current_time():
                self._fire_timers()
        if not reported and self._fatal is None and self._cancelled is None and not self._failures:
            task_status.started(self)  # a stop cut the start short: nursery.start returns

    def _stop_deferred(self) -> None:
        """Stop the players whose stop waited for their first step (see :meth:`_stop_slot`)."""
        deferred, self._deferred = self._deferred, []
        now = trio.current_time()
        for slot in deferred:
            if slot.alive:
                self._stop_slot(slot, now)

    async def _park(self) -> None:
        """Sleep until woken by :meth:`_wake` or until the earliest timer."""
        try:
            with trio.CancelScope(deadline=self._wake_at, shield=self._shield) as scope:
                self._park_scope = scope
                self._parked = True
                await trio.lowlevel.wait_task_rescheduled(self._abort_park)
        except trio.Cancelled as exc:  # our enclosing scope was cancelled: hard stop
            self._parked = False
            if self._cancelled is None:
                self._cancelled = exc
            self._hard_stop_all("the conductor was cancelled")
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt and friends
            self._parked = False
            if self._fatal is None:
                self._fatal = exc
            self._hard_stop_all(f"the conductor got {type(exc).__name__}")
        finally:
            self._park_scope = None

    def _abort_park(self, _: object) -> trio.lowlevel.Abort:
        self._parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake(self) -> None:
        if self._parked and self._task is not None:
            self._parked = False
            trio.lowlevel.reschedule(self._task)

    def _set_timer(self, slot: _Slot, when: float) -> None:
        slot.timer = when
        self._timed.add(slot)
        if when < self._wake_at:
            self._wake_at = when
            if self._park_scope is not None:
                self._park_scope.deadline = when

    def _fire_timers(self) -> None:
        now = trio.current_time()
        for slot in list(self._timed):
            if slot.timer > now:
                continue
            if not slot.hard:
                self._hard_cancel(slot, now)
            else:
                slot.timer = _INF
                self._timed.discard(slot)
                self._report_straggler(slot)
        self._wake_at = min((slot.timer for slot in self._timed), default=_INF)

    # -- starting ---------------------------------------------------------------------------

    def _start_next(self) -> None:
        """Spawn the next declared player, or report the conductor ready when all started."""
        if self._phase != _Phase.STARTING:
            return
        if self._next_start < len(self._slots):
            slot = self._slots[self._next_start]
            self._next_start += 1
            self._spawn(slot)
            return
        self._phase = _Phase.RUNNING
        self._ready = True
        if self._live == 0 and not self._pool:
            self._phase = _Phase.DONE
        self._wake()

    def _spawn(self, slot: _Slot) -> None:
        timeout = slot.spec.start_timeout
        if timeout is not None:
            slot.scope.deadline = trio.current_time() + timeout
        slot.alive = True
        self._live += 1
        self._spawn_soon(self._play, slot, name=slot.path)

    async def _play(self, slot: _Slot) -> None:
        """The task of one player: run it in its scope and report how it ended."""
        _current_owner.set(slot)
        slot.begun = True
        if slot.stop_pending:
            self._deferred.append(slot)
            self._wake()
        spec = slot.spec
        try:
            with slot.scope:
                if spec.takes_task_status:
                    await spec.fn(*spec.args, task_status=slot)
                else:
                    self._on_started(slot, None)
                    await spec.fn(*spec.args)
        except BaseException as exc:  # noqa: BLE001 - every outcome is reported, none lost
            self._on_exit(slot, exc)
        else:
            self._on_exit(slot, None)

    def _on_started(self, slot: _Slot, value: object) -> None:
        if slot.started_flag:
            msg = f"player {slot.path!r} called task_status.started() twice"
            raise RuntimeError(msg)
        slot.started_flag = True
        slot.value = value
        if slot.spec.start_timeout is not None:
            slot.scope.deadline = _INF
        slot.started_at = trio.current_time()
        if slot.state is _S.STARTING:
            move(slot, _S.RUNNING)
        if logger.isEnabledFor(_INFO):
            logger.info("player %s started", slot.path, extra={"path": slot.path})
        if self._phase == _Phase.STARTING and slot.index == self._next_start - 1:
            self._start_next()

    # -- exits and failures -----------------------------------------------------------------

    def _on_exit(self, slot: _Slot, exc: BaseException | None) -> None:
        slot.alive = False
        self._live -= 1
        if slot.timer != _INF:
            slot.timer = _INF
            self._timed.discard(slot)
        failure, fatal = self._classify(slot, exc)
        if failure is not None:
            self._on_failure(slot, failure)
        else:
            move(slot, _S.DONE)
            if logger.isEnabledFor(_INFO):
                logger.info("player %s stopped", slot.path, extra={"path": slot.path})
            if fatal is not None:
                if self._fatal is None:
                    self._fatal = fatal
                self._hard_stop_all(f"player {slot.path!r} raised {type(fatal).__name__}")
            elif slot.spec.significant and self._phase < _Phase.STOPPING:
                self._begin_stop(f"significant player {slot.path!r} finished")
        if self._phase == _Phase.STOPPING and not self._parallel:
            self._stop_next()
        if self._live == 0 and (
            self._phase == _Phase.STOPPING or (self._phase == _Phase.RUNNING and not self._pool)
        ):
            self._phase = _Phase.DONE
            self._wake()

    def _classify(
        self, slot: _Slot, exc: BaseException | None
    ) -> tuple[Exception | None, BaseException | None]:
        """Sort a player's outcome into (failure, fatal); our own cancellation is neither."""
        failure: Exception | None = None
        fatal: BaseException | None = None
        if exc is None:
            if not slot.started_flag and slot.spec.takes_task_status and not slot.stop_requested:
                if slot.scope.cancelled_caught:
                    failure = StartTimeout(slot.path, slot.spec.start_timeout or 0.0)
                else:
                    failure = RuntimeError(
                        f"player {slot.path!r} returned without calling task_status.started()"
                    )
        elif isinstance(exc, Exception):
            failure = exc
        elif isinstance(exc, BaseExceptionGroup):
            group = cast("BaseExceptionGroup[BaseException]", exc)
            rest = group.split(trio.Cancelled)[1]
            if isinstance(rest, ExceptionGroup):
                failure = cast("ExceptionGroup[Exception]", rest)
            else:
                fatal = rest
        elif not isinstance(exc, trio.Cancelled):
            fatal = exc
        if slot.straggler:
            timeout = StopTimeout(slot.path, self._grace_of(slot))
            timeout.__cause__ = failure
            failure = timeout
        return failure, fatal

    def _on_failure(self, slot: _Slot, failure: Exception) -> None:
        move(slot, _S.FAILED)
        slot.last_error = failure
        self._failures.append((slot.path, failure))
        if logger.isEnabledFor(logging.ERROR):
            logger.error(
                "player %s failed: %r",
                slot.path,
                failure,
                exc_info=failure,
                extra={"path": slot.path},
            )
        if self._phase == _Phase.STARTING and not slot.started_flag:
            self._begin_stop(f"player {slot.path!r} failed to start")
        else:
            self._begin_stop(f"player {slot.path!r} failed")

    def _error(self) -> ConductorError:
        leaves: list[Exception] = []
        paths: dict[int, str] = {}
        for path, exc in self._failures:
            if not isinstance(exc, ConductorError):
                _add_note(exc, path_note(path))
                paths[id(exc)] = path
            leaves.append(exc)
        names = ", ".join(path for path, _ in self._failures)
        return ConductorError(f"conductor {self._path!r} failed: {names}", leaves, paths=paths)

    # -- stopping ---------------------------------------------------------------------------

    def _on_parent_stop(self, reason: str | None) -> None:
        if self._running:
            self._begin_stop(reason)

    def _begin_stop(self, reason: str | None, *, force: bool = False) -> None:
        if self._phase >= _Phase.STOPPING:
            if force and self._phase == _Phase.STOPPING and not self._force:
                self._force = True
                self._hard_stop_all(reason or "stop forced")
            return
        self._phase = _Phase.STOPPING
        self._stop_reason = reason
        self._force = force
        for slot in self._slots[self._next_start :]:
            if slot.state is _S.STARTING:
                move(slot, _S.DONE)  # never started: nothing to stop
        for hook in self._stop_hooks:
            hook(reason)
        if self._parallel or force:
            now = trio.current_time()
            for slot in reversed(self._slots):
                if slot.alive:
                    self._stop_slot(slot, now)
        else:
            self._stop_cursor = self._next_start - 1
            self._stop_next()
        if self._live == 0:
            self._phase = _Phase.DONE
            self._wake()

    def _stop_next(self) -> None:
        """Stop the latest-started player still alive; the others wait for it to be gone."""
        slots = self._slots
        cursor = self._stop_cursor
        while cursor >= 0:
            slot = slots[cursor]
            if slot.alive:
                if not slot.stop_requested:
                    self._stop_slot(slot, trio.current_time())
                break
            cursor -= 1
        self._stop_cursor = cursor

    def _stop_slot(self, slot: _Slot, now: float) -> None:
        """Begin the stop of one player: its soft phase if it subscribed, else a hard cancel."""
        if not slot.begun and not self._force:
            # Its task has not taken its first step, so it could not yet have asked for its
            # token: decide once it has (see _play).
            slot.stop_pending = True
            slot.stop_requested = True
            return
        slot.stop_requested = True
        if slot.state is not _S.STOPPING:
            move(slot, _S.STOPPING)
        token = slot.token
        if token is not None and not self._force and not slot.hard:
            grace = self._grace_of(slot)
            deadline = now + grace
            if logger.isEnabledFor(_INFO):
                logger.info(
                    "player %s stopping, with %g s to finish",
                    slot.path,
                    grace,
                    extra={"path": slot.path},
                )
            token._request(self._stop_reason, deadline)
            if deadline < _INF:
                self._set_timer(slot, deadline)
        else:
            self._hard_cancel(slot, now)

    def _hard_cancel(self, slot: _Slot, now: float) -> None:
        if slot.hard:
            return
        slot.hard = True
        slot.stop_requested = True
        if slot.state is _S.STARTING or slot.state is _S.RUNNING:
            move(slot, _S.STOPPING)
        reason = self._stop_reason
        slot.scope.cancel(
            f"conductor {self._path!r} stopped player {slot.path!r}"
            + (f": {reason}" if reason else "")
        )
        if slot.token is not None:  # after the cancel, so that a waiter wakes up cancelled
            slot.token._request(reason, now)
        if slot.child is None:
            grace = self._grace_of(slot)
            if grace < _INF:
                self._set_timer(slot, now + grace)
        elif slot.timer != _INF:
            slot.timer = _INF
            self._timed.discard(slot)

    def _hard_stop_all(self, reason: str) -> None:
        """Cancel every player at once (forced stop, outer cancellation, KeyboardInterrupt)."""
        self._shield = True
        if self._phase < _Phase.STOPPING:
            self._phase = _Phase.STOPPING
            self._stop_reason = reason
            for slot in self._slots[self._next_start :]:
                if slot.state is _S.STARTING:
                    move(slot, _S.DONE)
            for hook in self._stop_hooks:
                hook(reason)
        self._force = True
        now = trio.current_time()
        for slot in reversed(self._slots):
            if slot.alive:
                self._hard_cancel(slot, now)
        if self._live == 0:
            self._phase = _Phase.DONE
        self._wake()

    def _grace_of(self, slot: _Slot) -> float:
        grace = slot.spec.grace
        if grace is not None:
            return grace
        if slot.child is not None:
            return slot.child._stop_budget()
        return self._grace

    def _stop_budget(self) -> float:
        """The longest an orderly stop of this run can take: the soft windows, added up."""
        graces = [self._grace_of(slot) for slot in self._slots if slot.alive]
        if not graces:
            return 0.0
        return max(graces) if self._parallel else sum(graces)

    def _report_straggler(self, slot: _Slot) -> None:
        slot.straggler = True
        stuck = self._where_stuck(slot)
        logger.warning(
            "player %s is still running %g s after it was cancelled; stuck at:\n%s",
            slot.path,
            self._grace_of(slot),
            "\n".join(stuck) or "  (no await frames: blocking code?)",
            extra={"path": slot.path},
        )

    def _task_of(self, slot: _Slot) -> trio.lowlevel.Task | None:
        if self._nursery is None:
            return None
        for task in self._nursery.child_tasks:
            if task.name == slot.path:
                return task
        return None

    def _where_stuck(self, slot: _Slot) -> list[str]:
        task = self._task_of(slot)
        return where_stuck(task) if task is not None else []

    def _running_players(self) -> list[tuple[str, list[str]]]:
        """Every player still running in this tree, with where it is stuck (for the runner)."""
        found: list[tuple[str, list[str]]] = []
        for slot in self._slots:
            if not slot.alive:
                continue
            if slot.child is not None and slot.child._running:
                found.extend(slot.child._running_players())
            else:
                found.append((slot.path, self._where_stuck(slot)))
        return found


@asynccontextmanager
async def open_conductor(
    players: Mapping[str, Callable[..., Awaitable[object]] | PlayerSpec] | None = None,
    *,
    name: str = "conductor",
    grace: float = 5.0,
    stop_order: Literal["sequential", "parallel"] = "sequential",
) -> AsyncGenerator[Conductor, None]:
    """Run players around a block: started (ready) before it, stopped gracefully after it.

    If a player fails while the block runs, the block is cancelled and the failure is raised
    as a :class:`ConductorError`. An exception from the block stops the players gracefully
    and propagates as it is; if the players failed too, both are raised together in a
    :class:`BaseExceptionGroup`. It takes the same arguments as :class:`Conductor`.

    Example::

        async with orchestra.open_conductor({"db": db_pool, "cache": cache}) as conductor:
            await serve_requests()
    """
    conductor = Conductor(players, name=name, grace=grace, stop_order=stop_order)
    block = _Block(conductor)
    start_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(block.supervise)
        except BaseException as exc:  # noqa: BLE001 - raised below, outside the nursery's group
            start_error = exc
        else:
            try:
                with block.body:
                    yield conductor
            except BaseException as exc:  # noqa: BLE001 - raised by raise_outcome(), after the stop
                block.body_error = exc
                reason = f"the open_conductor block raised {type(exc).__name__}"
                conductor.stop(reason, force=not isinstance(exc, Exception))
            else:
                conductor.stop("the open_conductor block exited")
    if start_error is not None:
        raise start_error
    block.raise_outcome()


@final
class _Block:
    """The state of one ``open_conductor`` block: the body's scope and both outcomes."""

    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor
        self.body = trio.CancelScope()
        self.body_error: BaseException | None = None
        self.failure: BaseException | None = None

    async def supervise(self, *, task_status: trio.TaskStatus[Conductor]) -> None:
        """Run the conductor; a failure after the start cancels the body instead of the nursery."""
        started = False

        def report(conductor: Conductor) -> None:
            nonlocal started
            started = True
            task_status.started(conductor)

        try:
            await self.conductor(task_status=_CallbackStatus(report))
        except BaseException as exc:
            if not started or isinstance(exc, trio.Cancelled):
                raise  # a start failure (nursery.start raises it) or the outer cancellation
            self.failure = exc
            self.body.cancel("a player of the conductor failed")

    def raise_outcome(self) -> None:
        """Raise what the block should: the failure, the body's error, or both together."""
        failure, body_error = self.failure, self.body_error
        if body_error is not None and not isinstance(body_error, Exception):
            raise body_error  # KeyboardInterrupt, SystemExit, the outer cancellation
        if failure is not None and body_error is not None:
            msg = "the open_conductor block and its players failed"
            raise BaseExceptionGroup(msg, [body_error, failure])
        if failure is not None:
            raise failure
        if body_error is not None:
            raise body_error


@final
class _CallbackStatus:
    """A ``task_status`` that calls a function: lets a wrapper see when the start ends."""

    def __init__(self, callback: Callable[[Conductor], object]) -> None:
        self._callback = callback

    def started(self, value: Conductor | None = None) -> None:
        if value is not None:
            self._callback(value)
