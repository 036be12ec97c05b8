"""The conductor: runs named players in one nursery, starts them in order, stops them in reverse.

The order itself (a line, or a dependency graph from ``PlayerSpec(after=...)``) lives in
:mod:`trio_orchestra._ordering`, which hands this module *waves*: who may start, or stop, next.
This module drives them and owns every state change.

Theory of operation
-------------------
One run of a :class:`Conductor` is one Trio nursery. Each player is one task in it, wrapped by
:meth:`Conductor._play`, inside one cancel scope of its own; the player's slot object
(:class:`_Slot`) doubles as its ``task_status``, so readiness costs no hidden nursery.

The *supervising task* is the nursery's body. It parks without polling and wakes only to report
``started()``, to fire a timer (a soft phase that ran out, a straggler, a restart after its
backoff, the tree's stop deadline, the end of a drain), or to return. Player events are handled
in the player's own task as they happen: a player that becomes started spawns the ones its start
wave frees; a player that exits during a stop requests the stop of those its stop wave frees; a
player that fails is restarted from its own task. So the ordered start and the reverse-order
stop each cost one scheduler round per step of the order and no extra task.
Players are spawned under a context snapshot taken when the run began, so one player's context
variables never leak into its next sibling.

Timers need no task either: the supervising task parks in one cancel scope whose deadline is the
earliest pending timer, moved earlier when a new timer comes sooner. A stale deadline costs one
spurious wake-up; an idle conductor never wakes.

A restart at once (no backoff delay) runs the player again in its own task, inside the same
cancel scope, after one checkpoint and with fresh context variables: entering a cancel scope and
spawning a task cost more than the rest of a restart together.

Supervision follows Erlang/OTP: a failure that the player's :class:`Restart` policy accepts is
handled (logged, kept as ``last_error``) and restarted, alone (``one_for_one``) or with its
siblings (``one_for_all``, ``rest_for_one``: a *group restart*, :class:`_Group`), within the
restart intensity; anything else stops the conductor and is reported in its
:class:`ConductorError`. Every state change of a player goes through
:func:`trio_orchestra._lifecycle.move`, and only this module calls it.
"""

from __future__ import annotations

import contextvars
import logging
import math
import random
import sys
import types
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Literal, cast, final

import trio

from . import _events as events
from ._checks import check_time, check_type
from ._diagnostics import runs_on, where_stuck
from ._errors import (
    ConductorError,
    PlayerHung,
    StartTimeout,
    StopTimeout,
    TooManyRestarts,
    UpdateError,
    add_note,
    path_note,
)
from ._handoff import Closable, close_all
from ._lifecycle import PlayerState, move
from ._liveness import Watch, begin_run, no_pulse
from ._logging import library_logger
from ._ordering import (
    Graph,
    Line,
    Order,
    StartWave,
    StopWave,
    check_names,
    longest_path,
    resolve,
    topological,
)
from ._spec import PlayerSpec, as_spec
from ._status import ConductorStatistics, PlayerStatus
from ._stop import StopToken, current_owner, supervisors
from ._stoptimes import StopTimes
from ._supervision import STRATEGIES, Restart, RestartWindow, Strategy
from ._update import Plan, Step, plan

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = ["Conductor"]

logger = library_logger()

_INFO = logging.INFO
_S = PlayerState
_INF = math.inf
_NEVER = Restart.NEVER
_ALWAYS = Restart.ALWAYS
_EMPTY: Mapping[str, PlayerStatus] = types.MappingProxyType({})
#: States in which a player is not ready; a done player is (it has nothing left to serve).
_NOT_READY = frozenset({_S.STARTING, _S.STOPPING, _S.BACKOFF, _S.FAILED})
#: States of a nested conductor's player in which the nested run tells its readiness.
_FOLLOWS_ITS_TREE = frozenset({_S.STARTING, _S.RUNNING, _S.STOPPING})


class _Phase:
    """The phases of one conductor run (plain ints: compared on hot paths)."""

    IDLE: int = 0
    STARTING: int = 1
    RUNNING: int = 2
    STOPPING: int = 3
    DONE: int = 4


_PHASE_STATE = {
    _Phase.IDLE: _S.STARTING,
    _Phase.STARTING: _S.STARTING,
    _Phase.RUNNING: _S.RUNNING,
    _Phase.STOPPING: _S.STOPPING,
    _Phase.DONE: _S.DONE,
}


def _both(
    first: Callable[[events.Event], object], second: Callable[[events.Event], object]
) -> Callable[[events.Event], object]:
    """One event hook that calls *first*, then *second*, even when *first* raised."""

    def hook(event: events.Event) -> None:
        try:
            first(event)
        finally:
            second(event)

    return hook


def _not_running(*_args: object, **_kwargs: object) -> None:
    """What spawning a player means outside a run: a bug."""
    msg = "a player was spawned outside a conductor run; this is a bug in trio_orchestra"
    raise RuntimeError(msg)


def _check_callable_or_none(value: object, what: str) -> None:
    if value is not None and not callable(value):
        msg = f"{what} must be callable, not {type(value).__name__}"
        raise TypeError(msg)


def _check_nested_once(specs: Mapping[str, PlayerSpec], where: str) -> None:
    """Refuse a tree in which one Conductor object would run in two places at once."""
    seen: dict[int, str] = {}

    def visit(players: Mapping[str, PlayerSpec], prefix: str) -> None:
        for key, spec in players.items():
            inner = spec.fn
            if not isinstance(inner, Conductor):
                continue
            path = f"{prefix}{key}"
            first = seen.setdefault(id(inner), path)
            if first != path:
                msg = (
                    f"{where}: the same Conductor object is nested as {first!r} and as"
                    f" {path!r}; a conductor has one live run, so give each place its own"
                )
                raise ValueError(msg)
            visit(inner._specs, f"{path}/")

    visit(specs, "")


def _declare(
    players: object, path: str
) -> tuple[dict[str, PlayerSpec], dict[str, tuple[str, ...]] | None, frozenset[str]]:
    """Check a declaration of players whole: its specs, resolved edges and explicit names.

    The constructor's check, and :meth:`Conductor.update`'s before it changes anything.
    """
    where = f"conductor {path!r}"
    check_type(players, Mapping, f"{where}: players", "a mapping of name to player")
    specs: dict[str, PlayerSpec] = {}
    for key, value in cast("Mapping[object, object]", players).items():
        name = _check_name(key, f"{where}: player name")
        specs[name] = as_spec(value, f"player {path}/{name}")
    _check_nested_once(specs, where)
    edges = resolve({key: spec.after for key, spec in specs.items()}, path)
    explicit = frozenset(key for key, spec in specs.items() if spec.after is not None)
    return specs, edges, explicit


def _check_count(value: int | None, what: str) -> None:
    """A count option (``None`` allowed): an int, 0 or more."""
    if value is None:
        return
    check_type(value, int, what, "an int or None")
    if isinstance(value, bool) or value < 0:
        msg = f"{what} must be a whole number, 0 or more, not {value!r}"
        raise ValueError(msg)


def _check_name(name: object, what: str) -> str:
    check_type(name, str, what, "a str")
    text = cast("str", name)
    if not text or "/" in text:
        msg = f"{what} {text!r} must be non-empty and contain no '/'"
        raise ValueError(msg)
    return text


@final
class _Waiter:
    """A caller of ``add`` or ``restart`` waiting for the player to start (or fail to)."""

    __slots__ = ("done", "drop", "error", "value")

    def __init__(self, *, drop: bool) -> None:
        self.drop = drop  # take the player out of the tree if it ends before it starts
        self.done = trio.Event()
        self.error: BaseException | None = None
        self.value: object = None


class _Flag:
    """A boolean attribute of a slot, kept as one bit of its ``_flags``.

    Eight rarely set flags in one int save 56 bytes per player.
    """

    __slots__ = ("_bit",)

    def __init__(self, bit: int) -> None:
        self._bit = bit

    def __get__(self, slot: _Slot, owner: object = None) -> bool:
        return bool(slot._flags & self._bit)

    def __set__(self, slot: _Slot, value: bool) -> None:  # noqa: FBT001 - a descriptor's
        if value:
            slot._flags |= self._bit
        else:
            slot._flags &= ~self._bit


# again, hard, stop_pending, straggler, cut_off, hung: renewed with each run
_RUN_FLAGS = 0b11_0000_1111


@final
class _Slot:
    """One player of one conductor run: its spec, its state, its cancel scope, its token.

    It is also the player's ``task_status`` (:meth:`started`) and what :func:`current_stop`
    finds in the player's context (:meth:`stop_token`). The fields set in :meth:`renew`
    describe the current run of the player and are renewed before a restart.
    """

    __slots__ = (
        "_flags",
        "alive",
        "backoff_step",
        "begun",
        "conductor",
        "last_error",
        "name",
        "order",
        "restarts",
        "scope",
        "spec",
        "started_at",
        "started_flag",
        "state",
        "stop_reason",
        "stop_requested",
        "timer",
        "token",
        "tree",
        "value",
        "waiter",
    )

    again = _Flag(0b0000_0001)  # its task runs it again at once (see Conductor._play)
    hard = _Flag(0b0000_0010)  # hard-cancelled
    stop_pending = _Flag(0b0000_0100)  # a stop waits for its first step
    straggler = _Flag(0b0000_1000)  # still running its grace after its hard cancel
    in_sequence = _Flag(0b0001_0000)  # being started in a start sequence
    manual_restart = _Flag(0b0010_0000)  # restart() is stopping it
    removing = _Flag(0b0100_0000)  # remove() is stopping it
    removed = _Flag(0b1000_0000)  # out of the tree
    cut_off = _Flag(0b1_0000_0000)  # subscribed, and hard-cancelled before it returned
    hung = _Flag(0b10_0000_0000)  # found silent for its liveness

    def __init__(self, conductor: Conductor, name: str, spec: PlayerSpec, order: int) -> None:
        self.conductor = conductor
        self.name = name
        self.spec = spec
        self.order = order
        self.state = _S.STARTING
        self.restarts = 0
        self.backoff_step = 0
        self.last_error: BaseException | None = None
        self.started_at: float | None = None
        self.tree: Conductor | None = None  # the nested conductor it runs (or last ran)
        self.waiter: _Waiter | None = None
        self.timer = _INF
        self.alive = False
        self._flags = 0
        self.scope = trio.CancelScope()
        self.token: StopToken | None = None
        self.begun = False
        self.started_flag = False
        self.stop_requested = False
        self.stop_reason: str | None = None
        self.value: object = None  # what its run passed to started()

    def renew(self, *, keep_scope: bool = False) -> None:
        """Forget the previous run of this player, before it is started again."""
        if not keep_scope:
            self.scope = trio.CancelScope()
        self.token = None
        self.begun = False
        self.started_flag = False
        self.stop_requested = False
        self.stop_reason = None
        self._flags &= ~_RUN_FLAGS

    @property
    def child(self) -> Conductor | None:
        """The nested conductor this player is running now, if it is one."""
        tree = self.tree
        if tree is not None and tree._running and tree._parent_slot is self:
            return tree
        return None

    @property
    def path(self) -> str:
        """Its full path, e.g. ``app/db/pool`` (made when asked: most players never are)."""
        return f"{self.conductor._path}/{self.name}"

    @property
    def liveness(self) -> float:
        """Seconds it may go without a heartbeat once started (infinite: no liveness)."""
        liveness = self.spec.liveness
        return _INF if liveness is None else liveness

    @property
    def watched(self) -> bool:
        """Whether its silence counts now: it runs, and no stop was asked of it."""
        return self.state is _S.RUNNING and not self.stop_requested and not self.hung

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
                token._request(self.stop_reason, trio.current_time())
        return token


@final
class _Group:
    """A group restart in progress (``one_for_all``, ``rest_for_one``).

    Its members are stopped in reverse start order (each once what is after it is gone), then,
    after the failed player's backoff, started again in start order with readiness (each once
    what it is after is started), except ``NEVER`` members (OTP temporary children), which
    stay done.
    """

    __slots__ = (
        "delay",
        "failed",
        "members",
        "phase",
        "reach",
        "start_wave",
        "started",
        "stop_wave",
    )

    STOPPING = 0
    BACKOFF = 1
    STARTING = 2

    def __init__(self, failed: _Slot, members: set[_Slot], delay: float) -> None:
        self.failed = failed
        self.members = members
        self.delay = delay
        self.phase = _Group.STOPPING
        self.started: set[_Slot] = set()  # members started again (or passed over: NEVER)
        self.reach: set[_Slot] = set()  # the failed players and everything after them
        self.stop_wave: StopWave[_Slot] | None = None
        self.start_wave: StartWave[_Slot] | None = None


@final
class Conductor:
    """Run named players under supervision, with ordered start and a two-phase stop.

    Args:
        players: a mapping from name to an async callable or a :class:`PlayerSpec`. Names are
            non-empty, unique and contain no ``/``. Players start in this order and stop in
            reverse, unless they name what they are after (``PlayerSpec(after=...)``): then
            each starts once what it is after is started, and stops once everything after it
            is gone. An empty mapping makes a pool that runs until it is stopped.
        name: this conductor's path element when it is the root (default ``"conductor"``);
            nested, its path element is its key in its parent's mapping.
        grace: default seconds of soft phase for players that subscribed with
            :func:`current_stop` (default 5).
        stop_order: ``"sequential"`` (default: one player after another, in reverse start
            order) or ``"parallel"`` (all at once).
        strategy: what a restart restarts (OTP): ``"one_for_one"`` (default) the failed player
            alone; ``"one_for_all"`` every player; ``"rest_for_one"`` the failed player and
            those started after it. The others are stopped in reverse order first.
        max_restarts: restarts allowed within *period*, over all players (default 5); the
            failure that would need one more fails the conductor, which escalates to its
            parent. ``max_restarts=3`` means four runs of a player that always fails.
        period: the sliding window of the restart intensity, in seconds (default 60). With
            the default backoff, a player that fails at once is given up after about 30 s.
        random: the source of backoff jitter (default: a fresh :class:`random.Random`); pass
            a seeded one to make delays reproducible.
        on_event: called with each :mod:`trio_orchestra.events` event of this conductor and,
            unless they have their own, of the conductors nested in it.
        min_ready: the conductor counts as ready (for ``/readyz`` and
            :attr:`PlayerStatus.ready`) while at least this many of its players are ready
            (default ``None``: all of them). A pool of workers with ``min_ready=1`` stays
            ready while one worker restarts. Players with ``ready_required=False`` are not
            counted.

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
    _by_name: dict[str, _Slot]
    _next_order: int
    _pool: bool
    _phase: int
    _stop_reason: str | None
    _force: bool
    _order: Order[_Slot]
    _starting: StartWave[_Slot] | None
    _stopping: StopWave[_Slot] | None
    _deadline: float
    _within: float | None
    _drain_end: float
    _draining: str | None
    _watch: Watch[_Slot]
    _clock: Callable[[], float]
    _live: int
    _ready: bool
    _failures: list[tuple[str, Exception]]
    _fatal: BaseException | None
    _cancelled: BaseException | None
    _error: ConductorError | None
    _escalated: bool
    _timed: set[_Slot]
    _deferred: list[_Slot]
    _group: _Group | None
    _group_pending: list[tuple[_Slot, float]]
    _updating: bool
    _next_specs: dict[_Slot, PlayerSpec]
    _kept: dict[_Slot, dict[str, Sequence[Closable]]]
    _window: RestartWindow
    _restarts: int
    _started_at: float | None
    _wake_at: float
    _park_scope: trio.CancelScope | None
    _parked_until: float
    _parked: bool
    _shield: bool
    _task: trio.lowlevel.Task | None
    _nursery: trio.Nursery | None
    _nursery_start_soon: Callable[..., object]
    _spawn_soon: Callable[..., object]
    _context: contextvars.Context
    _exiting: _Slot | None
    _parent_slot: _Slot | None
    _hook: Callable[[events.Event], object] | None

    def __init__(  # noqa: PLR0913 - keyword-only options, each documented
        self,
        players: Mapping[str, Callable[..., Awaitable[object]] | PlayerSpec] | None = None,
        *,
        name: str = "conductor",
        grace: float = 5.0,
        stop_order: Literal["sequential", "parallel"] = "sequential",
        strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = "one_for_one",
        max_restarts: int = 5,
        period: float = 60.0,
        random: random.Random | None = None,
        on_event: Callable[[events.Event], object] | None = None,
        min_ready: int | None = None,
    ) -> None:
        name = _check_name(name, "Conductor name")
        where = f"conductor {name!r}"
        check_time(grace, "grace", where)
        if stop_order not in {"sequential", "parallel"}:
            msg = f"{where}: stop_order must be 'sequential' or 'parallel', not {stop_order!r}"
            raise ValueError(msg)
        if strategy not in STRATEGIES:
            msg = (
                f"{where}: strategy must be 'one_for_one', 'one_for_all' or 'rest_for_one',"
                f" not {strategy!r}"
            )
            raise ValueError(msg)
        check_type(max_restarts, int, f"{where}: max_restarts", "an int")
        _check_count(max_restarts, f"{where}: max_restarts")
        check_time(period, "period", where)
        if period == 0:
            msg = f"{where}: period must be more than 0 seconds"
            raise ValueError(msg)
        if random is not None:
            check_type(random, _random_type, f"{where}: random", "a random.Random")
        _check_callable_or_none(on_event, f"{where}: on_event")
        _check_count(min_ready, f"{where}: min_ready")
        specs, self._edges, self._explicit = _declare({} if players is None else players, name)
        self._name = name
        self._grace = float(grace)
        self._parallel = stop_order == "parallel"
        self._strategy: Strategy = strategy
        self._max_restarts = max_restarts
        self._period = float(period)
        self._random = random if random is not None else _random_type()
        self._on_event = on_event
        self._min_ready = min_ready
        self._specs = specs
        self._runs = 0
        self._running = False
        self._prestop: str | None = None
        self._prestopped = False
        self._stop_hooks: list[Callable[[str | None], object]] = []
        # The runner's own listener (systemd STATUS lines): sees every event of the tree,
        # whatever on_event hooks the conductors have. Set on the root; nested ones inherit it.
        self._observer: Callable[[events.Event], object] | None = None
        # The stop times of the tree (trio_orchestra_stop_seconds), once a TreeCollector
        # asked for them; kept across runs, since a histogram only ever counts up.
        self._stops: StopTimes | None = None
        # The Trio run of its current (or last) run: a TreeCollector in another thread reads
        # the tree through it.
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._path = name
        self._update_lock = trio.Lock()
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
    def strategy(self) -> Literal["one_for_one", "one_for_all", "rest_for_one"]:
        """``"one_for_one"``, ``"one_for_all"`` or ``"rest_for_one"``."""
        return self._strategy

    @property
    def max_restarts(self) -> int:
        """Restarts allowed within :attr:`period`."""
        return self._max_restarts

    @property
    def period(self) -> float:
        """The window of the restart intensity, in seconds."""
        return self._period

    @property
    def players(self) -> Mapping[str, PlayerSpec]:
        """The declared players, as specs, in start order."""
        return types.MappingProxyType(self._specs)

    def __repr__(self) -> str:
        return f"<Conductor {self._path!r} with {len(self._specs)} players>"

    def _options(self) -> dict[str, object]:
        """The keyword options it was built with (to build a variant of it)."""
        return {
            "name": self._name,
            "grace": self._grace,
            "stop_order": self.stop_order,
            "strategy": self._strategy,
            "max_restarts": self._max_restarts,
            "period": self._period,
            "random": self._random,
            "on_event": self._on_event,
            "min_ready": self._min_ready,
        }

    def _same_options(self, other: Conductor) -> bool:
        """Whether *other* was built with the same options (each has its own jitter source)."""
        mine, theirs = self._options(), other._options()
        del mine["random"], theirs["random"]
        return mine == theirs

    def stop(
        self, reason: str | None = None, *, force: bool = False, within: float | None = None
    ) -> None:
        """Request a graceful stop; return at once (the run returns when all have stopped).

        Players stop in reverse start order (each once everything after it is gone), each
        with its soft phase if it subscribed. The first call's *reason* wins and later calls
        do nothing, except that ``force=True`` skips what is left of the soft phases and
        hard-cancels every player at once (the runner's second Ctrl-C), and that *within*
        may bring the deadline earlier.

        With *within* (seconds), the whole tree has one deadline: no soft phase anywhere in
        it ends later than *within* seconds from now, players stopped later get what is left,
        and whatever still runs at the deadline is hard-cancelled (stragglers are still
        waited for and reported). A later call may only bring the deadline earlier.

        A call before the conductor runs makes its next run start nothing; a call after it
        returned does nothing.

        Example::

            conductor.stop("deploy")
            conductor.stop("deploy", within=25)  # the Kubernetes grace period, less a margin
        """
        if within is not None:
            check_time(within, "within", f"conductor {self._path!r}: stop()")
        if not self._running:
            if self._runs == 0 and not self._prestopped:
                self._prestopped = True
                self._prestop = reason
            return
        if within is not None:
            deadline = trio.current_time() + within
            if deadline < self._deadline:
                self._within = within
                self._tighten(deadline)
        self._begin_stop(reason, force=force)

    async def add(self, name: str, player: Callable[..., Awaitable[object]] | PlayerSpec) -> object:
        """Start one more player in the running conductor; return once it is started.

        By default (``after=None`` in its spec) it is after the latest player of the tree, so
        it is stopped before every player that was there. A spec with ``after=`` names
        players of this conductor that are running (or have finished): it is after those.
        A failure to start raises here, to the caller, and the player is not added. Returns
        the value it passed to ``task_status.started()`` (``None`` for a plain player).

        Raises:
            RuntimeError: the conductor is not running, or is stopping.
            ValueError: the name is empty, has a ``/``, or is taken; or its ``after`` names
                a player that this conductor does not have, or that is not running.

        Example::

            await conductor.add("worker-3", orchestra.PlayerSpec(worker, queue))
            await conductor.add("report", orchestra.PlayerSpec(report, after=("db",)))
        """
        self._check_controllable("add a player")
        name = _check_name(name, f"conductor {self._path!r}: player name")
        if name in self._by_name:
            msg = f"conductor {self._path!r} already has a player named {name!r}"
            raise ValueError(msg)
        spec = as_spec(player, f"player {self._path}/{name}")
        after = self._placement(name, spec)
        slot = _Slot(self, name, spec, self._next_order)
        self._next_order += 1
        if spec.after is not None and isinstance(self._order, Line):
            self._order = Graph[_Slot].of(self._slots, None)  # a line that gains a named edge
        self._order.add(slot, after, explicit=spec.after is not None)
        self._slots.append(slot)
        self._by_name[name] = slot
        waiter = slot.waiter = _Waiter(drop=True)
        self._emit_started(slot)
        self._spawn(slot)
        return await self._wait_started(slot, waiter)

    async def remove(self, name: str) -> None:
        """Stop one player gracefully, without restarting it, and take it out of the tree.

        An error it raises while being removed is raised here, to the caller, not into the
        tree; so is the :class:`StopTimeout` of a player that outlived its hard cancel (the
        tree keeps running). A player that is not running (done, failed, in backoff) is just
        taken out. What was after it is now after what it was after.

        Raises:
            RuntimeError: the conductor is not running, or is stopping, or is restarting a
                group of players; or the player is already being added, removed or restarted.
            LookupError: it has no player of that name.
            ValueError: a player that is running (or waits to restart) names it in its
                ``after=``; nothing is stopped. (The default order of a line, ``after=None``,
                is no such requirement: a player of a line can always be removed.)

        Example::

            await conductor.remove("worker-3")
        """
        slot = self._controlled(name, "remove a player")
        requirers = [
            other.name
            for other in self._order.requirers(slot)
            if other.alive or other.state is _S.BACKOFF
        ]
        if requirers:
            names = ", ".join(repr(other) for other in requirers)
            msg = (
                f"cannot remove player {slot.path!r}: {names} of conductor {self._path!r}"
                f" {'is' if len(requirers) == 1 else 'are'} after it; remove"
                f" {'it' if len(requirers) == 1 else 'them'} first"
            )
            raise ValueError(msg)
        error = await self._take_out(slot, "removed from its conductor")
        if error is not None:
            raise error

    async def _take_out(self, slot: _Slot, reason: str) -> BaseException | None:
        """Stop a player gracefully and take it out of the tree; return what it raised."""
        if not slot.alive:
            self._drop(slot)
            await trio.lowlevel.checkpoint()
            return None
        waiter = slot.waiter = _Waiter(drop=True)
        slot.removing = True
        if not slot.stop_requested:
            self._stop_slot(slot, trio.current_time(), reason)
        await waiter.done.wait()
        return waiter.error

    async def update(
        self, players: Mapping[str, Callable[..., Awaitable[object]] | PlayerSpec]
    ) -> None:
        """Change the running conductor to a new declaration of its players, as one transaction.

        *players* has the constructor's form, and is checked whole before anything changes.
        Players whose spec is equal (the same callable, equal arguments and options) are left
        alone; missing names are removed (dependents first); new names are added and changed
        players restarted with their new spec, one at a time, in the new dependency order,
        each started (ready) before the next change begins. A nested conductor replaced by a
        conductor with the same options (and a spec equal but for the conductor) is updated
        with the new one's players, recursively, instead of restarted. The new declaration is
        then this conductor's: a later fresh run starts from it.

        If a new or changed player fails to start, the update stops there: that player gets
        its old spec back (its old run is started again; a new player is left out), the
        changes made before it stay, the ones after it are not made, the declaration stays the
        old one, and :class:`UpdateError` is raised here, naming the player and holding the
        cause. The tree keeps running. Nothing is counted as a restart.

        An update while another one runs waits for it, then applies its own declaration;
        ``add``, ``remove`` and ``restart`` are refused while an update runs.

        Raises:
            UpdateError: a new or changed player failed to start.
            TypeError, ValueError: the new declaration is invalid (as for the constructor);
                nothing changed.
            RuntimeError: the conductor is not running, or is stopping, or is restarting a
                group of players; or a player is being added, removed or restarted.

        Example::

            await conductor.update({"db": db, "web": orchestra.PlayerSpec(web, grace=10)})
        """
        specs, edges, explicit = _declare(players, self._path)
        async with self._update_lock:
            self._check_controllable("update")
            self._check_free("update")
            steps = self._plan(specs, edges)
            self._updating = True
            try:
                await self._carry_out(steps, specs, edges, explicit)
            finally:
                self._updating = False
                self._next_specs.clear()
                self._maybe_done()

    def _check_free(self, what: str) -> None:
        """Refuse if a group restart, or a call on one player, is in progress."""
        if self._group is not None:
            msg = (
                f"cannot {what}: conductor {self._path!r} is restarting a group of players;"
                " try again once it is done"
            )
            raise RuntimeError(msg)
        for slot in self._slots:
            if slot.waiter is not None or slot.removing or slot.manual_restart:
                msg = (
                    f"cannot {what}: player {slot.path!r} is being added, removed or restarted;"
                    " try again once it is done"
                )
                raise RuntimeError(msg)

    def _plan(self, specs: dict[str, PlayerSpec], edges: dict[str, tuple[str, ...]] | None) -> Plan:
        """The update from the players running now to *specs* (see :mod:`._update`)."""
        live = [slot for slot in self._slots if not slot.removed]
        order = self._order
        start_order = [slot.name for slot in (order.topo if isinstance(order, Graph) else live)]
        new_order = list(specs) if edges is None else topological(edges)

        def nested(name: str, spec: PlayerSpec) -> bool:
            child = self._by_name[name].child
            fn = spec.fn
            return child is not None and isinstance(fn, Conductor) and fn._same_options(child)

        running = {slot.name: slot.spec for slot in live}
        return plan(running, start_order, specs, new_order, nested)

    async def _carry_out(
        self,
        steps: Plan,
        specs: dict[str, PlayerSpec],
        edges: dict[str, tuple[str, ...]] | None,
        explicit: frozenset[str],
    ) -> None:
        """Make the changes of *steps*, in order; then the declaration is *specs*."""
        self._announce(steps, "updating", events.Updating)
        for name in steps.removed:
            error = await self._take_out(self._by_name[name], "removed by an update")
            if error is not None:
                logger.warning(
                    "player %s/%s raised while the update removed it: %r",
                    self._path,
                    name,
                    error,
                    extra={"path": f"{self._path}/{name}"},
                )
        self._rearrange(specs, edges, explicit)
        done = 0
        try:
            for step in steps.steps:
                await self._take_step(step)
                done += 1
        except UpdateError as error:
            for later in steps.steps[done:]:
                slot = self._by_name.get(later.name)
                if later.kind == "add" and slot is not None and not slot.alive:
                    self._drop(slot)  # a new player that was never started
            self._update_failed(error)
            raise
        self._specs, self._edges, self._explicit = specs, edges, explicit
        self._announce(steps, "updated", events.Updated)

    def _announce(
        self, steps: Plan, verb: str, event: type[events.Updating | events.Updated]
    ) -> None:
        """Log and tell the beginning or the end of an update, with what it changes."""
        if logger.isEnabledFor(_INFO):
            message = "conductor %s %s: %s"
            logger.info(message, self._path, verb, steps.summary(), extra={"path": self._path})
        if self._hook is not None:
            now = trio.current_time()
            change = {"added": steps.added, "removed": steps.removed, "changed": steps.changed}
            self._emit(event(path=self._path, time=now, **change))

    def _rearrange(
        self,
        specs: dict[str, PlayerSpec],
        edges: dict[str, tuple[str, ...]] | None,
        explicit: frozenset[str],
    ) -> None:
        """Put the players in the new declaration's order, with a slot for each new one.

        The new ones are not started yet, and the changed ones keep their running spec until
        their step: only their places change. No wave walks the order during an update.
        """
        slots: list[_Slot] = []
        for order, (name, spec) in enumerate(specs.items()):
            slot = self._by_name.get(name)
            if slot is None:
                slot = self._by_name[name] = _Slot(self, name, spec, order)
            slot.order = order
            slots.append(slot)
        self._slots[:] = slots  # the same list: a Line is a view of it
        self._next_order = len(slots)
        self._order = (
            Line(self._slots) if edges is None else Graph[_Slot].of(slots, edges, explicit)
        )

    async def _take_step(self, step: Step) -> None:
        """Start a new player, restart a changed one, or update a nested conductor."""
        if self._phase >= _Phase.STOPPING:
            path = f"{self._path}/{step.name}"
            raise UpdateError(path, RuntimeError(f"conductor {self._path!r} began to stop"))
        slot = self._by_name[step.name]
        if step.kind == "update":  # both are conductors: see _plan
            child, new = cast("Conductor", slot.child), cast("Conductor", step.spec.fn)
            await child.update(new.players)
            slot.spec = step.spec  # a fresh run of it starts from the new declaration
            return
        old = slot.spec
        if step.kind == "add":
            waiter = slot.waiter = _Waiter(drop=True)
            self._emit_started(slot)
            self._spawn(slot)
        else:
            waiter = self._replace(slot, step.spec)
        try:
            await self._wait_started(slot, waiter)
        except Exception as exc:
            if step.kind == "change":
                await self._put_back(slot, old)
            raise UpdateError(slot.path, exc) from exc

    def _replace(self, slot: _Slot, spec: PlayerSpec) -> _Waiter:
        """Restart *slot* with *spec*: its old run stops gracefully first, if it runs."""
        waiter = slot.waiter = _Waiter(drop=False)
        if slot.alive:
            self._next_specs[slot] = spec  # taken when the old run has ended: see _exit
            slot.manual_restart = True
            if not slot.stop_requested:
                self._stop_slot(slot, trio.current_time(), "its spec changed in an update")
        else:
            self._cancel_backoff(slot)
            slot.spec = spec
            self._respawn(slot, count=False)
        return waiter

    async def _put_back(self, slot: _Slot, old: PlayerSpec) -> None:
        """A changed player failed to start: start its old spec again (once, best effort)."""
        self._next_specs.pop(slot, None)
        slot.spec = old
        if slot.alive or self._phase >= _Phase.STOPPING:
            return  # its old run outlived its stop (a straggler), or the tree is stopping
        waiter = slot.waiter = _Waiter(drop=False)
        self._respawn(slot, count=False)
        try:
            await self._wait_started(slot, waiter)
        except Exception as exc:  # noqa: BLE001 - logged: the update's own error is raised
            logger.error(  # noqa: TRY400 - its traceback was logged when it failed
                "player %s failed to start again with its old spec: %r",
                slot.path,
                exc,
                extra={"path": slot.path},
            )

    def _update_failed(self, error: UpdateError) -> None:
        logger.error(
            "conductor %s: %s; the changes before it were made, the later ones were not",
            self._path,
            error,
            extra={"path": self._path},
        )
        if self._hook is not None:
            self._emit(
                events.UpdateFailed(
                    path=self._path, time=trio.current_time(), player=error.path, error=error.cause
                )
            )

    async def restart(self, name: str) -> object:
        """Stop one player gracefully and start it again; return once it is started again.

        An error it raises while being stopped is logged, not reported. A failure to start
        raises here, to the caller, and leaves it ``FAILED``. Returns the value it passed to
        ``task_status.started()``.

        Raises:
            RuntimeError: the conductor is not running, or is stopping, or is restarting a
                group of players; or the player is already being added, removed or restarted.
            LookupError: it has no player of that name.

        Example::

            await conductor.restart("cache")
        """
        slot = self._controlled(name, "restart a player")
        waiter = slot.waiter = _Waiter(drop=False)
        if slot.alive:
            slot.manual_restart = True
            if not slot.stop_requested:
                self._stop_slot(slot, trio.current_time(), "restart requested")
        else:
            self._cancel_backoff(slot)
            self._respawn(slot, count=True)
        return await self._wait_started(slot, waiter)

    def status(self) -> PlayerStatus:
        """Return a snapshot of the tree: this conductor, its players, nested conductors' too.

        Works at any time: before a run (every player ``STARTING``), during it, and after it
        returned (final states). A removed player leaves the tree.

        Example::

            tree = conductor.status()
            tree.children["db"].state  # PlayerState.RUNNING
        """
        slots = [slot for slot in self._slots if not slot.removed]
        nodes = [self._node(slot) for slot in slots]
        state = _PHASE_STATE[self._phase]
        if state is _S.DONE and (self._failures or self._fatal is not None):
            state = _S.FAILED
        not_ready = self._not_ready(state, slots, nodes)
        if self._draining is not None and state is _S.RUNNING:
            not_ready = (f"{self._path} is draining before its stop: {self._draining}",)
        return PlayerStatus(
            path=self._path,
            state=state,
            restarts=0,
            last_error=self._error,
            started_at=self._started_at,
            stop_budget=self._status_budget(),
            not_ready=not_ready,
            children=types.MappingProxyType(
                {slot.name: node for slot, node in zip(slots, nodes, strict=True)}
            ),
        )

    def stop_budget(self, *, within: float | None = None) -> float:
        """Return the longest an orderly stop of the declared tree can take, in seconds.

        A player is stopped once everything after it is gone, so the budget is the longest
        path of grace periods through the dependencies: for a line (no ``after=``), their
        sum; for players that depend on nothing, the largest. A nested conductor counts its
        own budget, unless its spec sets a grace; with ``stop_order="parallel"``, the
        largest grace. With *within* (what you give ``stop(within=)`` or
        ``run(stop_within=)``), no more than that. Size what waits for your program from
        it, plus a margin for the hard phase: systemd's ``TimeoutStopSec=``, Kubernetes'
        ``terminationGracePeriodSeconds``.

        Example::

            conductor = orchestra.Conductor(
                {"db": db, "web": orchestra.PlayerSpec(web, grace=30)}, grace=5
            )
            assert conductor.stop_budget() == 35
            assert conductor.stop_budget(within=20) == 20
        """
        if within is not None:
            check_time(within, "within", f"conductor {self._path!r}: stop_budget()")
        specs = self._specs

        def grace(name: str) -> float:
            spec = specs[name]
            if spec.grace is not None:
                return spec.grace
            if isinstance(spec.fn, Conductor):
                return spec.fn.stop_budget()
            return self._grace

        if self._parallel:
            budget = max(map(grace, specs), default=0.0)
        else:
            budget = longest_path(list(specs), self._edges, grace)
        return budget if within is None else min(budget, within)

    def statistics(self) -> ConductorStatistics:
        """Return counts of this conductor's players by state, and of its restarts.

        Example::

            conductor.statistics().running
        """
        counts = dict.fromkeys(_S, 0)
        players = 0
        for slot in self._slots:
            if not slot.removed:
                players += 1
                counts[slot.state] += 1
        return ConductorStatistics(
            players=players,
            starting=counts[_S.STARTING],
            running=counts[_S.RUNNING],
            stopping=counts[_S.STOPPING],
            backoff=counts[_S.BACKOFF],
            done=counts[_S.DONE],
            failed=counts[_S.FAILED],
            restarts=self._restarts,
            recent_restarts=self._window.recent(trio.current_time()) if self._running else 0,
        )

    async def __call__(
        self, *, task_status: trio.TaskStatus[Conductor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the players: start them in order, supervise them, return when all are done.

        Reports ``task_status.started(self)`` once every player is started.

        Raises:
            ConductorError: a player failed (to start, while running, or while stopping),
                or exceeded the restart intensity.
            RuntimeError: this conductor is already running.
        """
        if self._running:
            msg = f"conductor {self._path!r} is already running; a Conductor has one live run"
            raise RuntimeError(msg)
        owner = current_owner()
        parent = owner if isinstance(owner, _Slot) and owner.child is None else None
        self._trio_token = trio.lowlevel.current_trio_token()
        self._running = True
        self._runs += 1
        self._path = parent.path if parent is not None else self._name
        self._reset()
        self._parent_slot = parent
        self._choose_hook(parent)
        if parent is not None and parent.conductor._stops is not None:
            self._stops = parent.conductor._stops  # the tree's stop times are the root's
        escaped: BaseException | None = None
        task = trio.lowlevel.current_task()
        supervisors[task] = self
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._nursery_start_soon = nursery.start_soon
                await self._supervise(task_status)
        except BaseException as exc:  # noqa: BLE001 - only cancellation gets here: see below
            escaped = exc
        finally:
            del supervisors[task]
            for slot in list(self._kept):
                self._close_kept(slot)
            if parent is not None:
                self._observer = None  # the parent's runner's, for this run only
            self._running = False
            self._nursery = None
            self._task = None
            self._spawn_soon = _not_running
        if self._fatal is not None:
            raise self._fatal
        if self._failures:
            self._error = self._make_error()
            raise self._error
        if escaped is not None:
            raise escaped
        if self._cancelled is not None:
            raise self._cancelled

    # -- run state --------------------------------------------------------------------------

    def _choose_hook(self, parent: _Slot | None) -> None:
        """This run's event hook: our on_event, else the parent's; plus the runner's observer."""
        if parent is not None:
            self._observer = parent.conductor._observer
            if self._hook is None:
                self._hook = parent.conductor._hook  # with the observer in it, if any
            elif self._observer is not None:
                self._hook = _both(self._hook, self._observer)
        elif self._observer is not None:
            own = self._hook
            self._hook = self._observer if own is None else _both(own, self._observer)

    def _reset(self) -> None:
        """Forget the previous run: a new run starts fresh from the declared players."""
        self._slots = [
            _Slot(self, key, spec, order) for order, (key, spec) in enumerate(self._specs.items())
        ]
        self._by_name = {slot.name: slot for slot in self._slots}
        self._next_order = len(self._slots)
        self._pool = not self._slots
        self._phase = _Phase.IDLE
        self._stop_reason = None
        self._force = False
        edges = self._edges
        self._order = (
            Line(self._slots)
            if edges is None
            else Graph[_Slot].of(self._slots, edges, self._explicit)
        )
        self._starting = None
        self._stopping = None
        self._deadline = _INF
        self._within = None
        self._drain_end = _INF
        self._draining = None
        self._watch = Watch()
        self._clock = _no_clock
        self._live = 0
        self._ready = False
        self._failures = []
        self._fatal = None
        self._cancelled = None
        self._error = None
        self._escalated = False
        self._timed = set()
        self._deferred = []
        self._group = None
        self._group_pending = []
        self._updating = False
        self._next_specs = {}
        self._kept = {}
        self._window = RestartWindow(self._max_restarts, self._period)
        self._restarts = 0
        self._started_at = None
        self._wake_at = _INF
        self._park_scope = None
        self._parked_until = _INF
        self._parked = False
        self._shield = False
        self._task = None
        self._nursery = None
        self._nursery_start_soon = _not_running
        self._spawn_soon = _not_running
        self._context = contextvars.Context()
        self._exiting = None
        self._parent_slot = None
        self._hook = self._on_event

    def _check_controllable(self, what: str) -> None:
        if not self._running or self._phase < _Phase.RUNNING:
            msg = f"cannot {what}: conductor {self._path!r} is not running (started)"
            raise RuntimeError(msg)
        if self._phase >= _Phase.STOPPING:
            msg = f"cannot {what}: conductor {self._path!r} is stopping"
            raise RuntimeError(msg)
        if self._updating:
            msg = f"cannot {what}: conductor {self._path!r} is updating; try again once it is done"
            raise RuntimeError(msg)

    def _controlled(self, name: str, what: str) -> _Slot:
        """The player *name*, if a control call may take it now; else a clear error."""
        self._check_controllable(what)
        slot = self._by_name.get(name)
        if slot is None:
            msg = f"conductor {self._path!r} has no player named {name!r}"
            raise LookupError(msg)
        if slot.waiter is not None or slot.manual_restart or slot.removing:
            msg = (
                f"cannot {what}: player {slot.path!r} is already being added, removed or restarted"
            )
            raise RuntimeError(msg)
        if self._group is not None:
            msg = (
                f"cannot {what}: conductor {self._path!r} is restarting a group of players"
                f" ({self._strategy}); try again once it is done"
            )
            raise RuntimeError(msg)
        return slot

    def _drop(self, slot: _Slot) -> None:
        """Take a player out of the tree (it has exited)."""
        self._cancel_backoff(slot)
        slot.removed = True
        self._watch.forget(slot)
        self._close_kept(slot)
        if self._by_name.get(slot.name) is slot:
            del self._by_name[slot.name]
        if self._phase < _Phase.STOPPING:  # no stop wave walks the order now
            self._slots.remove(slot)
            self._order.remove(slot)
        self._maybe_done()

    def _node(self, slot: _Slot) -> PlayerStatus:
        tree = slot.tree
        state = slot.state
        children = _EMPTY
        budget = None
        not_ready: tuple[str, ...] = (
            (f"{slot.path} is {state.value}",) if state in _NOT_READY else ()
        )
        if tree is not None:
            inner = tree.status()
            children = inner.children
            budget = inner.stop_budget
            if slot.child is tree and state in _FOLLOWS_ITS_TREE:
                not_ready = inner.not_ready  # which of its players keep it from being ready
        elif isinstance(slot.spec.fn, Conductor):
            budget = slot.spec.fn.stop_budget()
        return PlayerStatus(
            path=slot.path,
            state=state,
            restarts=slot.restarts,
            last_error=slot.last_error,
            started_at=slot.started_at,
            started_value=slot.value,
            cut_off=slot.cut_off,
            after=tuple(dep.name for dep in self._order.after(slot)),
            stop_budget=budget,
            liveness=slot.spec.liveness,
            last_heartbeat=self._watch.last_heartbeat(slot),
            not_ready=not_ready,
            children=children,
        )

    def _status_budget(self) -> float:
        """The stop budget a status shows: of the run (within its deadline), else declared."""
        if not self._running:
            return self.stop_budget()
        budget = self._stop_budget()
        if self._deadline < _INF:
            budget = min(budget, max(0.0, self._deadline - trio.current_time()))
        return budget

    def _placement(self, name: str, spec: PlayerSpec) -> tuple[_Slot, ...]:
        """The players a player added now is after; a clear error if it cannot be placed."""
        if spec.after is None:
            return tuple(self._slots[-1:])  # after the latest player, as in a line
        where = self._path
        check_names(name, spec.after, self._by_name, where)
        found: list[_Slot] = []
        for other in spec.after:
            dep = self._by_name[other]
            if dep.state is not _S.RUNNING and dep.state is not _S.DONE:
                msg = (
                    f"{where}: player {name!r} is after {other!r}, which is not running"
                    f" ({dep.state.value}); add it once {other!r} runs"
                )
                raise ValueError(msg)
            found.append(dep)
        return tuple(found)

    def _not_ready(
        self, state: PlayerState, slots: list[_Slot], nodes: list[PlayerStatus]
    ) -> tuple[str, ...]:
        """Why this conductor is not ready, from its players' nodes: nothing when it is."""
        reasons: list[str] = []
        waiting: list[str] = []  # declared players not spawned yet: named only if alone
        counted = ready = 0
        for slot, node in zip(slots, nodes, strict=True):
            if not slot.spec.ready_required:
                continue
            counted += 1
            if node.ready:
                ready += 1
            elif node.state is _S.STARTING and not slot.alive:
                waiting.extend(node.not_ready)
            else:
                reasons.extend(node.not_ready)
        if state is not _S.RUNNING:
            return tuple(reasons or waiting[:1] or [f"{self._path} is {state.value}"])
        reasons.extend(waiting)
        least = self._min_ready
        if least is None:
            return tuple(reasons)
        if ready >= least:
            return ()
        quorum = f"{self._path} has {ready} of {counted} players ready, fewer than {least}"
        return (quorum, *reasons)

    # -- events -----------------------------------------------------------------------------

    def _emit(self, event: events.Event) -> None:
        hook = self._hook
        if hook is None:
            return
        try:
            hook(event)
        except Exception:
            logger.exception("the on_event hook of conductor %s raised", self._path)

    def _emit_started(self, slot: _Slot) -> None:
        if self._hook is not None:
            self._emit(events.Started(path=slot.path, time=trio.current_time()))

    # -- the supervising task ---------------------------------------------------------------

    async def _supervise(self, task_status: trio.TaskStatus[Conductor]) -> None:
        self._task = trio.lowlevel.current_task()
        # Players are spawned under this snapshot, whichever task spawns them.
        self._context = contextvars.copy_context()
        no_pulse(self._context)  # a conductor inside a player: its players are not that player
        self._clock = trio.lowlevel.current_clock().current_time
        self._spawn_soon = partial(self._context.run, self._nursery_start_soon)
        self._started_at = trio.current_time()
        self._phase = _Phase.STARTING
        if self._prestopped and self._runs == 1:
            self._begin_stop(self._prestop)
        parent = self._parent_slot
        if parent is not None:
            # Subscribe to the parent's soft phase: its stop request becomes ours.
            parent.tree = self
            parent.stop_token()._add_listener(self._on_parent_stop)
        if self._phase == _Phase.STARTING:
            wave = self._starting = self._order.start(self._slots)
            self._start_more(wave.first)
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
                # First let the tasks woken together with us run: a player that is only
                # waiting for its turn in a busy scheduler is no straggler.
                await trio.lowlevel.cancel_shielded_checkpoint()
                self._fire_timers()
        if not reported and self._fatal is None and self._cancelled is None and not self._failures:
            task_status.started(self)  # a stop cut the start short: nursery.start returns

    def _stop_deferred(self) -> None:
        """Stop the players whose stop waited for their first step (see :meth:`_stop_slot`)."""
        deferred, self._deferred = self._deferred, []
        now = trio.current_time()
        for slot in deferred:
            if slot.alive and slot.stop_pending:  # not a later run of the same player
                slot.stop_pending = False
                self._stop_slot(slot, now, slot.stop_reason)

    async def _park(self) -> None:
        """Sleep until woken by :meth:`_wake` or until the earliest timer."""
        try:
            with trio.CancelScope(deadline=self._wake_at, shield=self._shield) as scope:
                self._park_scope = scope
                self._parked_until = self._wake_at
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
            self._arm(when)

    def _arm(self, when: float) -> None:
        """The next timer is at *when*: bring the park's deadline to it, if that is earlier.

        A later one leaves the park's deadline as it is, stale: setting a cancel scope's
        deadline costs more than the rest of a player's start, and a line of ``task_status``
        players sets and clears a slow-start timer for each. The stale deadline costs at most
        one spurious wake-up, after which the task parks until ``_wake_at``; and the end of the
        conductor's start wakes it anyway, so an idle tree parks with no deadline at all.
        """
        self._wake_at = when
        if when < self._parked_until and self._park_scope is not None:
            self._park_scope.deadline = when
            self._parked_until = when

    def _clear_timer(self, slot: _Slot) -> None:
        if slot.timer != _INF:
            slot.timer = _INF
            timed = self._timed
            timed.discard(slot)
            if not timed:
                self._wake_at = self._own_timer()

    def _own_timer(self) -> float:
        """The conductor's own next timer: a drain's end, the stop deadline, a liveness check."""
        if self._phase == _Phase.STOPPING:
            at = _INF if self._force else self._deadline
        else:
            at = self._drain_end
        check = self._watch.check_at
        if check < at:
            return check
        return at

    def _fire_timers(self) -> None:
        now = trio.current_time()
        for slot in sorted(self._timed, key=_by_order):
            if slot.timer > now or slot not in self._timed:
                continue
            self._clear_timer(slot)
            if slot.state is _S.BACKOFF:
                group = self._group
                if group is None:
                    self._respawn(slot, count=False)
                elif group.failed is slot and group.phase == _Group.BACKOFF:
                    self._group_begin_start(group)
            elif slot.state is _S.STARTING:
                if slot.alive and not slot.started_flag:
                    self._warn_slow_start(slot)
            elif slot.state is _S.STOPPING and slot.alive:
                if slot.hard:
                    self._report_straggler(slot)
                else:
                    self._hard_cancel(slot, now)
        # After the players' timers: the straggler timers that the stop deadline's hard
        # cancels set now must wait for the cancelled tasks to run, as any hard cancel's do.
        self._fire_own_timer(now)
        earliest = min((slot.timer for slot in self._timed), default=_INF)
        self._wake_at = min(earliest, self._own_timer())

    def _fire_own_timer(self, now: float) -> None:
        if self._watch.check_at <= now:
            for slot, silent in self._watch.check(now):
                self._found_hung(slot, now, silent)
        if self._drain_end <= now:
            self._drain_end = _INF
            self._begin_stop(self._draining)
        elif self._phase == _Phase.STOPPING and not self._force and self._deadline <= now:
            self._deadline_passed()

    def _maybe_done(self) -> None:
        """End the run when nothing is left to run, start or restart."""
        if self._live or self._phase == _Phase.DONE:
            return
        if self._phase == _Phase.STOPPING or (
            self._phase == _Phase.RUNNING
            and not self._pool
            and not self._timed
            and self._group is None
            and not self._updating  # between two steps, no player may be running
        ):
            self._phase = _Phase.DONE
            self._wake()

    # -- starting ---------------------------------------------------------------------------

    def _start_more(self, slots: Sequence[_Slot]) -> None:
        """Spawn the declared players free to start now; report ready once all are started."""
        if self._phase != _Phase.STARTING:
            return
        for slot in slots:
            slot.in_sequence = True
            self._emit_started(slot)
            self._spawn(slot)
        wave = self._starting
        if wave is None or wave.left:
            return
        self._starting = None
        self._phase = _Phase.RUNNING
        self._ready = True
        pending, self._group_pending = self._group_pending, []
        for failed, delay in pending:  # group restarts that waited for the start to finish
            self._begin_group(failed, delay)
        self._maybe_done()
        self._wake()

    def _spawn(self, slot: _Slot) -> None:
        self._watch_start(slot)
        slot.alive = True
        self._live += 1
        # The task's name is the player's name: unique in this nursery, and no new string.
        self._spawn_soon(self._play, slot, name=slot.name)

    def _respawn(self, slot: _Slot, *, count: bool) -> None:
        """Start a player again (a restart): in its own task if it is ending now, else anew."""
        if count:
            slot.restarts += 1
            self._restarts += 1
        move(slot, _S.STARTING)
        in_place = slot is self._exiting and not slot.scope.cancel_called
        slot.renew(keep_scope=in_place)
        self._emit_started(slot)
        if not in_place:
            self._spawn(slot)
            return
        self._watch_start(slot)
        slot.alive = True
        self._live += 1
        slot.again = True

    def _watch_start(self, slot: _Slot) -> None:
        """Bound the start of a ``task_status`` player: its start_timeout, or a warning."""
        spec = slot.spec
        if not spec.takes_task_status:
            return
        if spec.start_timeout is not None:
            slot.scope.deadline = trio.current_time() + spec.start_timeout
        elif type(spec.fn) is not Conductor:  # a nested one warns of its own players
            self._set_timer(slot, trio.current_time() + SLOW_START_WARNING)

    def _warn_slow_start(self, slot: _Slot) -> None:
        logger.warning(
            "player %s has not called task_status.started() %g s after it was started;"
            " it is still starting and keeps the tree from being ready (give it a"
            " start_timeout to make this a failure); stuck at:\n%s",
            slot.path,
            SLOW_START_WARNING,
            "\n".join(self._where_stuck(slot)) or "  (no await frames)",
            extra={"path": slot.path},
        )

    async def _play(self, slot: _Slot) -> None:
        """The task of one player: its runs, in its cancel scope, each reported as it ends.

        A run that ends with a restart at once (no backoff delay, its scope not cancelled) is
        followed by the next run in this same task: no new task, no new cancel scope, which
        makes a restart cheaper than spawning a task. Each run still starts with fresh context
        variables (the run's snapshot), after a checkpoint, as a newly spawned task would.
        """
        with slot.scope:
            while True:
                slot.begun = True
                if slot.stop_pending:
                    self._deferred.append(slot)
                    self._wake()
                # As few locals as can be: this frame lives as long as the player.
                outcome: BaseException | None = None
                if slot.spec.liveness is not None:
                    self._begin_pulse(slot)
                try:
                    if slot.spec.takes_task_status:
                        await slot.spec.fn(*slot.spec.args, task_status=slot)
                    else:
                        self._on_started(slot, None)
                        await slot.spec.fn(*slot.spec.args)
                except BaseException as exc:  # noqa: BLE001 - every outcome is reported
                    outcome = exc
                # Outside the except block: the next player's Cancelled, raised while we stop
                # it, must not chain onto ours (a chain of N contexts makes a stop quadratic).
                self._on_exit(slot, outcome)
                # The exception's traceback holds this frame: keeping it in a local would make
                # a cycle (frame -> exception -> traceback -> frame) that holds the player's
                # task, coroutine, frames and slot (~40 objects) until the cyclic GC finds it.
                del outcome
                if not slot.again:
                    return
                slot.again = False
                trio.lowlevel.current_task().context = self._context.copy()
                await trio.lowlevel.cancel_shielded_checkpoint()

    def _begin_pulse(self, slot: _Slot) -> None:
        """In the task of a player with a liveness, as a run begins: its heartbeats' pulse.

        A method of its own: a deeper expression in :meth:`_play` would deepen its frame's
        stack, which lives as long as the player (8 bytes a player, liveness or not).
        """
        self._watch.record(slot, begin_run(self._clock))

    def _on_started(self, slot: _Slot, value: object) -> None:
        if slot.started_flag:
            msg = f"player {slot.path!r} called task_status.started() twice"
            raise RuntimeError(msg)
        slot.started_flag = True
        slot.value = value
        if slot.spec.start_timeout is not None:
            slot.scope.deadline = _INF
        elif slot.timer != _INF and (not slot.stop_requested or slot.stop_pending):
            self._clear_timer(slot)  # its slow-start warning (not the end of a soft phase)
        now = slot.started_at = trio.current_time()
        if slot.state is _S.STARTING:
            move(slot, _S.RUNNING)
        if slot.spec.liveness is not None or self._kept:
            self._watch_started(slot, now)
        if logger.isEnabledFor(_INFO):
            logger.info("player %s started", slot.path, extra={"path": slot.path})
        if self._hook is not None:
            self._emit(events.Ready(path=slot.path, time=now))
        waiter = slot.waiter
        if waiter is not None:
            slot.waiter = None
            waiter.value = value
            waiter.done.set()
        if slot.in_sequence:
            slot.in_sequence = False
            self._started_in_wave(slot)

    def _watch_started(self, slot: _Slot, now: float) -> None:
        """A run of a player with a liveness, or with sockets kept for it, is started."""
        if slot.spec.liveness is not None and self._watch.started(slot, now):
            self._arm_check()
        self._close_kept(slot)  # what its last run kept and this one did not claim

    def _started_in_wave(self, slot: _Slot) -> None:
        """A player of a start wave is started: start what was waiting for it."""
        group = self._group
        if group is not None and group.start_wave is not None and slot in group.members:
            self._group_start(group, group.start_wave.started(slot))
        elif self._starting is not None:
            self._start_more(self._starting.started(slot))

    async def _wait_started(self, slot: _Slot, waiter: _Waiter) -> object:
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        del slot
        return waiter.value

    # -- exits, failures and restarts -------------------------------------------------------

    def _on_exit(self, slot: _Slot, exc: BaseException | None) -> None:
        failure, fatal = self._classify(slot, exc)
        # Forget the exception before acting on it. Acting may stop the previous player, and
        # trio captures that player's Cancelled with a traceback whose frames link back
        # through this call stack: a frame here still holding our exception would chain each
        # stopped player's objects to the next one's until the last was gone.
        del exc
        if self._stops is not None:
            self._stops.ended(slot)
        self._exiting = slot
        try:
            self._exit(slot, failure, fatal)
        finally:
            self._exiting = None

    def _exit(self, slot: _Slot, failure: Exception | None, fatal: BaseException | None) -> None:
        """Act on the end of a run of a player, as sorted by :meth:`_classify`."""
        slot.alive = False
        self._live -= 1
        self._clear_timer(slot)
        if fatal is not None:
            self._end(slot, None)
            if self._fatal is None:
                self._fatal = fatal
            self._hard_stop_all(f"player {slot.path!r} raised {type(fatal).__name__}")
        elif slot.manual_restart and self._phase < _Phase.STOPPING and not slot.straggler:
            slot.manual_restart = False
            self._end(slot, failure, note="while being stopped for a restart")
            spec = self._next_specs.pop(slot, None)  # an update's new spec for it
            if spec is not None:
                slot.spec = spec
            self._respawn(slot, count=spec is None)
        elif slot.waiter is not None and (
            slot.removing or slot.manual_restart or not slot.started_flag
        ):
            self._answer_waiter(slot, failure)
        elif (
            (group := self._group) is not None
            and slot in group.members
            and group.phase == _Group.STOPPING
            and slot.stop_requested
            and slot is not group.failed
            and not slot.hung  # found hung first: its own failure, for its own policy
        ):
            # A straggler's StopTimeout is reported, whatever stopped it.
            note = "while being stopped for a group restart"
            self._end(slot, failure, report=slot.straggler, note=note)
            if slot.straggler:
                self._fail(f"player {slot.path!r} outlived its hard cancel")
        elif self._phase >= _Phase.STOPPING:
            self._end_while_stopping(slot, failure)
        elif self._wants_restart(slot, failed=failure is not None):
            self._restart(slot, failure)
        else:
            self._end_for_good(slot, failure)
        self._after_exit(slot)
        self._maybe_done()

    def _after_exit(self, slot: _Slot) -> None:
        """What any end of a run lets go on: its kept sockets closed, the stop in progress.

        The sockets it kept are closed unless it runs again (see :mod:`._handoff`); whoever it
        was, the stop in progress may now go on to what it was after.
        """
        if self._kept and slot.state is not _S.STARTING and not self._will_run_again(slot):
            self._close_kept(slot)
        if self._phase == _Phase.STOPPING:
            if self._stopping is not None:
                self._stop_these(self._stopping.gone(slot), self._stop_reason)
        elif (group := self._group) is not None and group.stop_wave is not None:
            self._group_stop(group, group.stop_wave.gone(slot))

    def _end_while_stopping(self, slot: _Slot, failure: Exception | None) -> None:
        """A player ended during the conductor's stop: a failure now is reported, and fails us."""
        self._end(slot, failure, report=True)
        if failure is not None:
            self._escalate()

    def _end_for_good(self, slot: _Slot, failure: Exception | None) -> None:
        """End a player that is not restarted; its failure, or significant return, stops all."""
        self._end(slot, failure, report=True)
        if failure is not None:
            started = slot.started_flag or not slot.in_sequence
            why = "failed" if started else "failed to start"
            self._fail(f"player {slot.path!r} {why}")
        elif slot.spec.significant:
            self._begin_stop(f"significant player {slot.path!r} finished")

    def _classify(
        self, slot: _Slot, exc: BaseException | None
    ) -> tuple[Exception | None, BaseException | None]:
        """Sort a player's outcome into (failure, fatal); our own cancellation is neither."""
        failure: Exception | None = None
        fatal: BaseException | None = None
        if isinstance(exc, trio.Cancelled) and slot.scope.cancel_called:
            exc = None  # our own cancellation (a stop, or the start timeout): a clean end
        if exc is None:
            if not slot.started_flag and slot.spec.takes_task_status and not slot.stop_requested:
                if slot.scope.cancel_called and not slot.hard:
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
        if (slot.straggler or slot.hung) and fatal is None:
            failure = self._how_it_was_stopped(slot, failure)
        return failure, fatal

    def _how_it_was_stopped(self, slot: _Slot, failure: Exception | None) -> Exception:
        """The failure of a straggler (:class:`StopTimeout`) or a hung player (:class:`PlayerHung`).

        What it raised itself is kept: as the cause of a straggler's, and in a note and as the
        context of a hung player's (it is hung first, whatever happened while it was stopped).
        """
        if slot.straggler:
            timeout = StopTimeout(slot.path, self._grace_of(slot))
            timeout.__cause__ = failure
            if not slot.hung:
                return timeout
            failure = timeout
        hung = PlayerHung(slot.path, slot.liveness)
        if failure is not None:
            hung.__context__ = failure
            add_note(
                hung, f"while it was being stopped it raised {type(failure).__name__}: {failure}"
            )
        return hung

    def _end(
        self,
        slot: _Slot,
        failure: Exception | None,
        *,
        report: bool = False,
        note: str | None = None,
    ) -> None:
        """Record how a run of a player ended: DONE, or FAILED (reported or only logged)."""
        now = trio.current_time()
        if failure is None:
            self._end_clean(slot, now)
            return
        move(slot, _S.FAILED)
        slot.last_error = failure
        if report:
            self._failures.append((slot.path, failure))
        self._log_failure(slot, failure, f" {note}" if note else "", handled=not report)
        if self._hook is not None:
            self._emit(events.Failed(path=slot.path, time=now, error=failure, handled=not report))

    def _log_failure(self, slot: _Slot, failure: Exception, how: str, *, handled: bool) -> None:
        """Log a failure: reported, at ERROR with its traceback; handled, in one WARNING line.

        A handled failure (restarted, raised to a caller) is routine in a supervised tree: its
        traceback goes to DEBUG, so a crash loop is one line per restart, not a page.
        """
        path = slot.path
        if not handled:
            if logger.isEnabledFor(logging.ERROR):
                message = "player %s failed%s: %r"
                logger.error(message, path, how, failure, exc_info=failure, extra={"path": path})
            return
        if logger.isEnabledFor(logging.WARNING):
            logger.warning("player %s failed%s: %r", path, how, failure, extra={"path": path})
        if logger.isEnabledFor(logging.DEBUG):
            message = "the traceback of that failure of player %s:"
            logger.debug(message, path, exc_info=failure, extra={"path": path})

    def _end_clean(self, slot: _Slot, now: float) -> None:
        """A run ended with no failure: it finished by itself, or stopped (maybe cut off)."""
        move(slot, _S.DONE)
        if not slot.stop_requested:
            if logger.isEnabledFor(_INFO):
                logger.info("player %s finished", slot.path, extra={"path": slot.path})
            if self._hook is not None:
                self._emit(events.Finished(path=slot.path, time=now))
            return
        cut_off = slot.hard and slot.token is not None and slot.tree is None
        if cut_off:
            self._log_cut_off(slot, now)
        elif logger.isEnabledFor(_INFO):
            logger.info("player %s stopped", slot.path, extra={"path": slot.path})
        if self._hook is not None:
            self._emit(events.Stopped(path=slot.path, time=now, cut_off=cut_off))

    def _log_cut_off(self, slot: _Slot, now: float) -> None:
        """A subscribed player was hard-cancelled in its soft phase: its work was cut off."""
        slot.cut_off = True
        token = slot.token
        late = now - token.deadline if token is not None else 0.0
        if self._force and self._deadline <= now:
            how = "at the stop deadline"
        elif self._force:
            how = "when its conductor was hard-stopped"
        else:
            how = f"at the end of its {self._grace_of(slot):g} s grace"
        logger.warning(
            "player %s was cut off %s: it had not returned, and ended %g s after its cancel",
            slot.path,
            how,
            late,
            extra={"path": slot.path},
        )

    def _answer_waiter(self, slot: _Slot, failure: Exception | None) -> None:
        """An added, removed or restarted player ended: tell its caller, not the tree."""
        waiter = slot.waiter
        slot.waiter = None
        removing, slot.removing = slot.removing, False
        slot.manual_restart = False
        # Whatever it raised, also a straggler's StopTimeout, goes to the caller alone.
        self._end(slot, failure, note="(raised to the caller)")
        if waiter is None:
            return
        if failure is None and not removing:
            failure = RuntimeError(
                f"conductor {self._path!r} stopped before player {slot.path!r} was started"
            )
        waiter.error = failure
        waiter.done.set()
        if waiter.drop:
            self._drop(slot)

    def _wants_restart(self, slot: _Slot, *, failed: bool) -> bool:
        policy = slot.spec.restart
        if policy is _NEVER:
            return False
        if slot.in_sequence and not slot.started_flag and self._phase == _Phase.STARTING:
            return False  # a start failure in the conductor's own start: roll back
        return policy is _ALWAYS or failed

    def _restart(self, slot: _Slot, failure: Exception | None) -> None:
        """Restart a player that ended, as its policy asks, within the restart intensity."""
        now = trio.current_time()
        if not self._window.allow(now):
            self._exceeded(slot, failure, now)
            return
        if failure is None:
            move(slot, _S.DONE)
        else:
            move(slot, _S.FAILED)
            slot.last_error = failure
            self._log_failure(slot, failure, " and will be restarted", handled=True)
            if self._hook is not None:
                self._emit(events.Failed(path=slot.path, time=now, error=failure, handled=True))
        delay = self._backoff_delay(slot, now)
        if self._strategy == "one_for_one":
            self._schedule(slot, delay, now)
            return
        self._log_restart(slot, delay, now, slot.restarts + 1)
        if self._phase == _Phase.STARTING:
            # The group restart waits for the conductor's start to finish (it is already
            # counted toward the intensity); meanwhile the player waits, as in a backoff.
            move(slot, _S.BACKOFF)
            self._group_pending.append((slot, delay))
        else:
            self._begin_group(slot, delay)

    def _exceeded(self, slot: _Slot, failure: Exception | None, now: float) -> None:
        max_restarts, period = self._max_restarts, self._period
        if failure is None:
            failure = TooManyRestarts(slot.path, max_restarts, period)
        else:
            add_note(
                failure,
                f"the restart limit was exceeded: more than {max_restarts} restarts"
                f" within {period:g} s",
            )
        if self._hook is not None:
            self._emit(
                events.RestartLimitExceeded(
                    path=slot.path, time=now, max_restarts=max_restarts, period=period
                )
            )
        self._end(slot, failure, report=True)
        self._fail(f"player {slot.path!r} exceeded the restart limit")

    def _backoff_delay(self, slot: _Slot, now: float) -> float:
        backoff = slot.spec.backoff
        if backoff is None:
            return 0.0
        started = slot.started_at  # this run's start, if it started: a failed start never resets
        if slot.started_flag and started is not None and now - started >= backoff.reset_after:
            slot.backoff_step = 0
        step = slot.backoff_step
        if backoff.nominal(step) < backoff.maximum:
            slot.backoff_step = step + 1
        return backoff.delay(step, self._random)

    def _schedule(self, slot: _Slot, delay: float, now: float) -> None:
        """Restart one player after *delay* (one_for_one)."""
        slot.restarts += 1
        self._restarts += 1
        self._log_restart(slot, delay, now, slot.restarts)
        if delay > 0:
            move(slot, _S.BACKOFF)
            self._set_timer(slot, now + delay)
        else:
            self._respawn(slot, count=False)

    def _log_restart(self, slot: _Slot, delay: float, now: float, restarts: int) -> None:
        if logger.isEnabledFor(_INFO):
            logger.info(
                "player %s restarting in %g s (restart %d)",
                slot.path,
                round(delay, 2),  # a jittered delay has many digits: 8.6 s, not 8.59974 s
                restarts,
                extra={"path": slot.path},
            )
        if self._hook is not None:
            self._emit(events.Restarting(path=slot.path, time=now, delay=delay, restarts=restarts))

    def _cancel_backoff(self, slot: _Slot) -> None:
        if slot.state is _S.BACKOFF:
            self._clear_timer(slot)
            move(slot, _S.DONE)

    # -- group restarts (one_for_all, rest_for_one) -----------------------------------------

    def _begin_group(self, failed: _Slot, delay: float) -> None:
        """Restart *failed* with its siblings: stop them, dependents first, then start again."""
        if self._phase >= _Phase.STOPPING:
            return
        reach = self._slots if self._strategy == "one_for_all" else self._order.closure(failed)
        members = {  # a player under add/remove/restart belongs to its caller, not the group
            slot for slot in reach if slot.alive and slot.waiter is None and not slot.manual_restart
        }
        members.add(failed)
        group = self._group
        if group is None:
            group = self._group = _Group(failed, members, delay)
        else:  # a failure during a group restart: one bigger group, stopped again
            if group.failed is not failed:
                self._clear_timer(group.failed)  # the backoff is now the new failure's
            if self._strategy == "rest_for_one":
                # A member that is not after the new failure, and is already started again,
                # keeps running (OTP's rest_for_one_other_child_fails_restart).
                after_it = set(reach)
                group.members = {
                    slot for slot in group.members if slot in after_it or slot not in group.started
                }
            group.members |= members
            group.failed = failed
            group.delay = delay
            group.phase = _Group.STOPPING
            group.started.clear()
            group.start_wave = None
        # The wave also holds the players of its reach that are gone (of every failure that
        # joined the group): the order passes through them (see trio_orchestra._ordering).
        group.reach.update(reach)
        scope = group.members.union(slot for slot in group.reach if not slot.alive)
        group.stop_wave = self._order.stop(scope)
        self._group_stop(group, group.stop_wave.first)

    def _group_stop(self, group: _Group, slots: Sequence[_Slot]) -> None:
        """Stop the members free to stop; once all are gone, wait the backoff, or start."""
        if group.phase != _Group.STOPPING:
            return
        now = trio.current_time()
        members = group.members
        for slot in slots:
            if slot in members and slot.alive and not slot.stop_requested:
                reason = f"restarting with player {group.failed.path!r} ({self._strategy})"
                self._stop_slot(slot, now, reason)
        if any(slot.alive for slot in members):
            return
        group.stop_wave = None
        if group.delay > 0:
            group.phase = _Group.BACKOFF
            for slot in members:
                if slot.state is not _S.BACKOFF and (
                    slot.spec.restart is not _NEVER or slot is group.failed
                ):
                    move(slot, _S.BACKOFF)
            self._set_timer(group.failed, now + group.delay)
            return
        self._group_begin_start(group)

    def _group_begin_start(self, group: _Group) -> None:
        group.phase = _Group.STARTING
        wave = group.start_wave = self._order.start(sorted(group.members, key=_by_order))
        self._group_start(group, wave.first)

    def _group_start(self, group: _Group, slots: Sequence[_Slot]) -> None:
        """Start the members free to start; end the group restart once all are started."""
        wave = group.start_wave
        if wave is None:
            return
        todo = list(slots)
        for slot in todo:  # grows while it is walked: the members passed over free others
            group.started.add(slot)
            if slot.spec.restart is _NEVER and slot is not group.failed:
                todo.extend(wave.started(slot))  # OTP temporary child: not started again
                continue
            self._respawn(slot, count=True)
            slot.in_sequence = True
        if not wave.left and self._group is group:
            self._group = None
            self._maybe_done()

    # -- stopping ---------------------------------------------------------------------------

    def _on_parent_stop(self, reason: str | None) -> None:
        """Our parent asked us to stop: by the deadline it gave us (its token's), at the latest."""
        if not self._running:
            return
        parent = self._parent_slot
        if parent is not None and parent.token is not None:
            self._tighten(parent.token.deadline)
        self._begin_stop(reason)

    def _tighten(self, deadline: float) -> None:
        """Bring the tree's stop deadline to *deadline*, if that is earlier.

        Players in their soft phase now see the earlier deadline on their token, and nested
        conductors pass it on to theirs; at the deadline, whatever still runs is hard-cancelled.
        """
        if not deadline < self._deadline:
            return
        self._deadline = deadline
        if self._phase != _Phase.STOPPING or self._force:
            return
        if deadline < self._wake_at:
            self._arm(deadline)
        for slot in self._slots:
            if slot.alive and slot.stop_requested and not slot.hard:
                child = slot.child
                if child is not None:
                    child._tighten(deadline)
                token = slot.token
                if token is not None:
                    token._request(token.reason, deadline)  # deadlines only come earlier

    def _deadline_passed(self) -> None:
        """The tree's stop deadline: hard-cancel everything that still runs."""
        alive = [slot for slot in self._slots if slot.alive]
        if self._within is not None and alive:
            logger.warning(
                "conductor %s: the stop deadline (within %g s) has passed; hard-cancelling"
                " what still runs: %s",
                self._path,
                self._within,
                ", ".join(slot.name for slot in alive),
                extra={"path": self._path},
            )
        self._force = True
        self._stop_all_at_once(None, hard=True)

    def _drain(self, seconds: float, reason: str | None, within: float | None) -> None:
        """Stay up, and not ready, for *seconds*, then stop (the runner's drain).

        *within* is the whole stop's deadline, drain included. A stop requested meanwhile
        ends the drain at once; a tree that is not running (still starting) is stopped now.
        """
        now = trio.current_time()
        if not self._running or self._phase != _Phase.RUNNING or self._draining is not None:
            if self._running and self._draining is None:
                self._draining = reason or "stop requested"  # asked, if too late to drain
            self.stop(reason, within=within)
            return
        if within is not None:
            self._within = within
            self._deadline = now + within
        self._draining = reason or "stop requested"
        if self._hook is not None:
            until = now + seconds
            self._emit(events.Draining(path=self._path, time=now, reason=reason, until=until))
        if logger.isEnabledFor(_INFO):
            logger.info(
                "conductor %s draining for %g s before it stops: %s",
                self._path,
                seconds,
                self._draining,
                extra={"path": self._path},
            )
        self._drain_end = now + seconds
        if self._drain_end < self._wake_at:
            self._arm(self._drain_end)

    def _fail(self, reason: str) -> None:
        """Stop because of a failure that will be reported, and tell the parent at once."""
        self._begin_stop(reason)
        self._escalate()

    def _escalate(self) -> None:
        """Tell the parent conductor, once per run, that this run will raise.

        The parent hears of it the moment this run decides to fail, not once every player here
        has stopped: the players that depend on this conductor must not keep running for its
        whole stop (a web front accepting jobs for a worker pool that gave up).
        """
        parent = self._parent_slot
        if self._escalated or parent is None or parent.child is not self:
            return
        self._escalated = True
        parent.conductor._on_child_failing(parent)

    def _on_child_failing(self, slot: _Slot) -> None:
        """A nested conductor will fail: begin our own stop now if its failure will end us."""
        if (
            self._phase >= _Phase.STOPPING
            or slot.waiter is not None
            or slot.manual_restart
            or slot.removing
            or (self._group is not None and slot in self._group.members)
        ):
            return  # stopping already, or its failure goes to a caller or a group restart
        if self._wants_restart(slot, failed=True) and self._window.would_allow(trio.current_time()):
            return  # it will be restarted: nothing else has to stop
        self._fail(f"player {slot.path!r} failed")

    def _begin_stop(self, reason: str | None, *, force: bool = False) -> None:
        if self._phase >= _Phase.STOPPING:
            if force and self._phase == _Phase.STOPPING and not self._force:
                self._hard_stop_all(reason or "stop forced")
            return
        self._enter_stopping(reason)
        self._force = force
        if self._parallel or force:
            self._stop_all_at_once(reason, hard=False)
        else:
            wave = self._stopping = self._order.stop(None)
            self._stop_these(wave.first, reason)
        self._maybe_done()

    def _enter_stopping(self, reason: str | None) -> None:
        """Move the run to STOPPING: nothing more is started or restarted."""
        self._phase = _Phase.STOPPING
        self._stop_reason = reason
        if self._parent_slot is None and logger.isEnabledFor(_INFO):  # the root says why, once
            logger.info(
                "conductor %s stopping: %s",
                self._path,
                reason or "stop requested",
                extra={"path": self._path},
            )
        self._group = None
        self._group_pending.clear()
        self._starting = None
        self._drain_end = _INF
        if self._deadline < self._wake_at:
            self._arm(self._deadline)
        for slot in self._slots:
            if slot.state is _S.BACKOFF:
                self._cancel_backoff(slot)
            elif slot.state is _S.STARTING and not slot.alive:
                move(slot, _S.DONE)  # never started: nothing to stop
        for slot in list(self._kept):
            self._close_kept(slot)  # nothing runs again now
        for hook in self._stop_hooks:
            hook(reason)

    def _stop_these(self, slots: Sequence[_Slot], reason: str | None) -> None:
        """Stop the players the stop's wave has freed; the others wait for them to be gone."""
        if slots:
            now = trio.current_time()
            for slot in slots:
                if slot.alive and not slot.stop_requested:
                    self._stop_slot(slot, now, reason)

    def _stop_all_at_once(self, reason: str | None, *, hard: bool) -> None:
        """Stop every live player, latest first: the soft phase where it applies, unless *hard*.

        The cancellations are made from this frame, not through a helper per player: trio
        keeps the frames of the stack that cancelled a task (in its Cancelled's traceback)
        until the task is gone, so two helper frames per player would be held for the whole
        stop, a cost that grows with the tree's size.
        """
        now = trio.current_time()
        for slot in reversed(self._slots):
            if slot.alive and (hard or self._ask_to_stop(slot, now, reason)):
                message = self._mark_hard(slot)
                if message is not None:
                    slot.scope.cancel(message)
                    self._after_hard_cancel(slot, now)

    def _stop_slot(self, slot: _Slot, now: float, reason: str | None) -> None:
        """Begin the stop of one player: its soft phase if it subscribed, else a hard cancel."""
        if self._ask_to_stop(slot, now, reason):
            self._hard_cancel(slot, now)

    def _ask_to_stop(self, slot: _Slot, now: float, reason: str | None) -> bool:
        """Begin the soft phase of a player if it has one; tell whether to cancel it now."""
        slot.stop_requested = True
        slot.stop_reason = reason
        if not slot.begun and not self._force:
            # Its task has not taken its first step, so it could not yet have asked for its
            # token: decide once it has (see _play).
            slot.stop_pending = True
            return False
        if slot.state is not _S.STOPPING:
            move(slot, _S.STOPPING)
        token = slot.token
        if token is None or self._force or slot.hard:
            return True
        deadline = now + self._grace_of(slot)
        if deadline > self._deadline:  # the tree's deadline comes first
            deadline = self._deadline
            if deadline <= now:
                return True
        if logger.isEnabledFor(_INFO):
            # Why, when it is not the tree's own stop (said once, by the root): a group
            # restart, a removal, a restart, an update, a hang.
            why = f" ({reason})" if reason and reason != self._stop_reason else ""
            logger.info(
                "player %s stopping%s, with %.3g s to finish",
                slot.path,
                why,
                deadline - now,
                extra={"path": slot.path},
            )
        if self._hook is not None:
            self._emit(events.Stopping(path=slot.path, time=now, reason=reason, deadline=deadline))
        token._request(reason, deadline)
        if self._stops is not None:
            self._stops.soft(slot, now)
        if deadline < _INF:
            self._set_timer(slot, deadline)
        return False

    def _hard_cancel(self, slot: _Slot, now: float) -> None:
        """The hard phase of a player: cancel its scope, with a reason naming it."""
        message = self._mark_hard(slot)
        if message is not None:
            slot.scope.cancel(message)
            self._after_hard_cancel(slot, now)

    def _mark_hard(self, slot: _Slot) -> str | None:
        """Record a player's hard phase; the reason to cancel it with (None: it already was)."""
        if slot.hard:
            return None
        slot.hard = True
        slot.stop_requested = True
        if slot.stop_reason is None:
            slot.stop_reason = self._stop_reason
        if slot.state is _S.STARTING or slot.state is _S.RUNNING:
            move(slot, _S.STOPPING)
        reason = slot.stop_reason
        return f"conductor {self._path!r} stopped player {slot.path!r}" + (
            f": {reason}" if reason else ""
        )

    def _after_hard_cancel(self, slot: _Slot, now: float) -> None:
        """What follows a player's hard cancel: its event, its token, its straggler timer."""
        if self._stops is not None:
            self._stops.hard(slot, now)
        reason = slot.stop_reason
        if self._hook is not None and slot.token is None:
            self._emit(events.Stopping(path=slot.path, time=now, reason=reason, deadline=now))
        if slot.token is not None:  # after the cancel, so that a waiter wakes up cancelled
            slot.token._request(reason, now)
        if slot.child is None:
            grace = self._grace_of(slot)
            if grace < _INF:
                self._set_timer(slot, now + grace)
        else:
            self._clear_timer(slot)

    def _hard_stop_all(self, reason: str) -> None:
        """Cancel every player at once (forced stop, outer cancellation, KeyboardInterrupt)."""
        self._shield = True
        if self._phase < _Phase.STOPPING:
            self._enter_stopping(reason)
        self._force = True
        self._stop_all_at_once(reason, hard=True)
        self._maybe_done()
        self._wake()

    def _grace_of(self, slot: _Slot) -> float:
        grace = slot.spec.grace
        if grace is not None:
            return grace
        if slot.child is not None:
            return slot.child._stop_budget()
        return self._grace

    def _stop_budget(self) -> float:
        """The longest an orderly stop of this run can take, from the players alive now."""
        graces = {slot.name: self._grace_of(slot) for slot in self._slots if slot.alive}
        if self._parallel or not graces:
            return max(graces.values(), default=0.0)
        order = self._order
        if isinstance(order, Line):
            return sum(graces.values())
        edges = {slot.name: tuple(dep.name for dep in order.after(slot)) for slot in self._slots}
        return longest_path(list(edges), edges, lambda name: graces.get(name, 0.0))

    def _record_stops(self) -> StopTimes:
        """Begin recording the stop times of this tree (a :class:`TreeCollector` asks).

        Also in the nested conductors running now; those started later take it from their
        parent when their run begins.
        """
        stops = self._stops
        if stops is None:
            stops = self._stops = StopTimes()
        running: list[Conductor] = [self]
        while running:
            conductor = running.pop()
            conductor._stops = stops
            running.extend(slot.child for slot in conductor._slots if slot.child is not None)
        return stops

    # -- errors and diagnostics -------------------------------------------------------------

    def _make_error(self) -> ConductorError:
        leaves: list[Exception] = []
        paths: dict[int, str] = {}
        for path, exc in self._failures:
            if not isinstance(exc, ConductorError):
                add_note(exc, path_note(path))
                paths[id(exc)] = path
            leaves.append(exc)
        names = ", ".join(path for path, _ in self._failures)
        return ConductorError(f"conductor {self._path!r} failed: {names}", leaves, paths=paths)

    # -- sockets kept between two runs of a server (see _handoff) ----------------------------

    def _claim_kept(self, player: object, key: str) -> Sequence[Closable] | None:
        held = self._kept.get(cast("_Slot", player))
        if held is None:
            return None
        sockets = held.pop(key, None)
        if not held:
            del self._kept[cast("_Slot", player)]
        return sockets

    def _keep(self, player: object, key: str, sockets: Sequence[Closable]) -> bool:
        slot = cast("_Slot", player)
        if self._phase >= _Phase.STOPPING or slot.removing or slot.removed:
            return False
        self._kept.setdefault(slot, {})[key] = sockets
        return True

    def _will_run_again(self, player: object) -> bool:
        """Whether *player*, stopped or ended now, will be started again (or is in backoff)."""
        slot = cast("_Slot", player)
        if self._phase >= _Phase.STOPPING or slot.removing or slot.removed:
            return False
        if slot.manual_restart or slot.state is _S.BACKOFF:
            return True
        group = self._group
        return group is not None and slot in group.members and slot.spec.restart is not _NEVER

    def _close_kept(self, slot: _Slot) -> None:
        for sockets in self._kept.pop(slot, {}).values():
            close_all(sockets)

    def _arm_check(self) -> None:
        """The next liveness check came sooner: wake up for it."""
        at = self._watch.check_at
        if at < self._wake_at:
            self._arm(at)

    def _found_hung(self, slot: _Slot, now: float, silent: float) -> None:
        """A player went *silent* seconds without a heartbeat: say where it is, and stop it.

        While the conductor runs, its stop begins at once and its end is a failure
        (:class:`PlayerHung`) for its restart policy. During the conductor's own stop it is
        stopped in its turn, as the order says, and its failure is reported.
        """
        slot.hung = True
        liveness = slot.liveness
        stuck = self._where_stuck(slot)
        logger.warning(
            "player %s is hung: no heartbeat for %.3g s (its liveness is %g s); stuck at:\n%s",
            slot.path,
            silent,
            liveness,
            "\n".join(stuck) or "  (no await frames: blocking code?)",
            extra={"path": slot.path},
        )
        if self._hook is not None:
            self._emit(
                events.Hung(
                    path=slot.path, time=now, liveness=liveness, silent=silent, where=tuple(stuck)
                )
            )
        if self._phase < _Phase.STOPPING:
            self._stop_slot(slot, now, f"it is hung: no heartbeat for {silent:.3g} s")

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
        if self._hook is not None:
            self._emit(
                events.Straggling(path=slot.path, time=trio.current_time(), where=tuple(stuck))
            )

    def _owner_of(self, task: trio.lowlevel.Task) -> _Slot | None:
        """The player whose task *task* is (a child of this run's nursery), if any."""
        if task.parent_nursery is not self._nursery or self._nursery is None:
            return None
        slot = self._by_name.get(task.name)
        return slot if slot is not None and slot.alive else None

    def _task_of(self, slot: _Slot) -> trio.lowlevel.Task | None:
        if self._nursery is None:
            return None
        for task in self._nursery.child_tasks:
            if task.name == slot.name:
                return task
        return None

    def _blocking(self, stack: set[types.FrameType]) -> str | None:
        """The path of the player whose task runs *stack*, the Trio thread's frames, if any.

        Read from the blocked-loop watchdog's thread while the Trio thread is blocked.
        """
        nursery = self._nursery
        if nursery is None:
            return None
        for task in list(nursery.child_tasks):
            slot = self._by_name.get(task.name)
            if slot is None or not runs_on(task, stack):
                continue
            child = slot.child
            inner = child._blocking(stack) if child is not None else None
            return inner if inner is not None else slot.path
        return None

    def _where_stuck(self, slot: _Slot, running: types.FrameType | None = None) -> list[str]:
        task = self._task_of(slot)
        return where_stuck(task, running=running) if task is not None else []

    def _running_players(
        self, running: types.FrameType | None = None
    ) -> list[tuple[str, list[str]]]:
        """Every player still running in this tree, with where it is stuck (for the runner).

        *running* is the innermost frame of the Trio thread, to name a player that blocks the
        event loop by its live frames (see :func:`where_stuck`).
        """
        found: list[tuple[str, list[str]]] = []
        for slot in self._slots:
            if not slot.alive:
                continue
            if slot.child is not None and slot.child._running:
                found.extend(slot.child._running_players(running))
            else:
                found.append((slot.path, self._where_stuck(slot, running)))
        return found


_random_type = random.Random


#: Seconds after which a ``task_status`` player with no ``start_timeout`` that has not called
#: ``task_status.started()`` is named in a warning (a forgotten ``started()`` hangs silently).
SLOW_START_WARNING = 30.0


def _by_order(slot: _Slot) -> int:
    return slot.order


def _no_clock() -> float:
    return _INF
