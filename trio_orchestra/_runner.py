"""Running a program: signals become a graceful stop, a second one forces, a third one exits.

Why this module: every service needs the same ``main()``: install signal handlers before the
first player starts, turn the first SIGINT/SIGTERM into a graceful stop, let a second one skip
the grace periods, and, as a last resort when something is stuck, exit anyway while saying
where. Go's orchestra swallows the second Ctrl-C; we do not.

The runner also watches from outside the loop, when asked: ``blocked_after`` names the player
that blocks the event loop (:mod:`trio_orchestra._watchdog`), and ``SIGUSR1`` logs the whole tree
with where each player waits.

The handlers are plain :func:`signal.signal` handlers, not :func:`trio.open_signal_receiver`:
the first two signals are passed into Trio with ``run_sync_soon`` (as Trio itself does), while
the third acts in the handler itself, so it works even when the event loop is blocked. For the
same reason ``force_exit_after`` is kept by a thread, not a Trio timer: a player blocking the
loop in sync code (``time.sleep`` in its cleanup) must not escape the last bound. Both name
the players still running by their live frames when one of them is what blocks the loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, TextIO

import attrs
import trio

from ._checks import check_time
from ._conductor import Conductor
from ._errors import ConductorError
from ._health import HealthEndpoint, RegistryClashError
from ._lifecycle import PlayerState
from ._logging import library_logger
from ._reload import Reloader, first_conductor
from ._report import event_line, one_line
from ._spec import PlayerSpec, as_spec, describe
from ._systemd import SystemdNotifier
from ._watchdog import LoopWatchdog, tasks_text

if TYPE_CHECKING:  # an optional extra (health), imported by the health endpoint
    import prometheus_client

__all__ = ["StopPlan", "Watching", "as_conductor", "play_until_signal", "run"]

#: The exit status after a forced exit that left players running (EX_SOFTWARE).
EXIT_STUCK = 70

_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The signal that logs the tree, where the platform has it.
DUMP_SIGNAL: int | None = getattr(signal, "SIGUSR1", None)
#: How long the runner waits, after the tree returned, for systemd's last notifications.
_NOTIFY_CLOSE_SECONDS = 1.0

logger = library_logger()


def as_conductor(
    player: Conductor | PlayerSpec | Callable[..., Awaitable[object]], *, grace: float | None = None
) -> Conductor:
    """Return *player* if it is a conductor, else a one-player conductor named after it."""
    if isinstance(player, Conductor):
        if grace is None or grace == player.grace:
            return player
        options = player._options()
        options["grace"] = grace
        return Conductor(player.players, **options)  # type: ignore[arg-type]
    spec = as_spec(player, "the player to run")
    name = getattr(spec.fn, "__name__", None) or describe(spec.fn)
    name = name.replace("/", "_").strip("<>") or "player"
    if grace is None:
        return Conductor({name: spec}, name=name)
    return Conductor({name: spec}, name=name, grace=grace)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover - every signal we install has a name
        return f"signal {signum}"


@attrs.frozen
class StopPlan:
    """How the runner stops the tree on the first signal: a drain, then one deadline."""

    drain: float | None = None
    stop_within: float | None = None

    @classmethod
    def checked(cls, drain: float | None, stop_within: float | None) -> StopPlan:
        """The plan, or a clear error: times are seconds, and the drain counts inside."""
        check_time(drain, "drain", "the runner", allow_none=True)
        check_time(stop_within, "stop_within", "the runner", allow_none=True)
        if drain is not None and stop_within is not None and drain > stop_within:
            msg = (
                f"the runner: drain ({drain:g} s) must not exceed stop_within"
                f" ({stop_within:g} s), since the drain counts inside the stop's deadline"
            )
            raise ValueError(msg)
        return cls(drain, stop_within)


@attrs.frozen
class Watching:
    """What the runner watches from outside the loop: a blocked loop, and the dump signal."""

    blocked_after: float | None = None
    dump_signal: int | None = DUMP_SIGNAL

    @classmethod
    def checked(
        cls, blocked_after: float | None, dump_signal: int | None, signals: Sequence[int]
    ) -> Watching:
        """The options, or a clear error."""
        check_time(blocked_after, "blocked_after", "the runner", allow_none=True)
        if blocked_after == 0:
            msg = "the runner: blocked_after must be more than 0 seconds, not 0"
            raise ValueError(msg)
        if dump_signal is not None:
            try:
                signal.Signals(dump_signal)
            except ValueError:
                msg = f"the runner: dump_signal {dump_signal!r} is not a signal"
                raise ValueError(msg) from None
            if dump_signal in signals:
                msg = (
                    f"the runner: dump_signal {_signal_name(dump_signal)} is also a stop"
                    " signal; pick another one, or dump_signal=None"
                )
                raise ValueError(msg)
        return cls(blocked_after, dump_signal)


@contextlib.contextmanager
def _dumping(conductor: Conductor, signum: int | None) -> Generator[None, None, None]:
    """While inside, *signum* logs the tree with where each player waits (one WARNING).

    The dump is made in the handler itself, in the Trio thread between two bytecodes of
    whatever runs, so it works when the loop is blocked and names the player blocking it.
    At WARNING, so that it shows with the logging defaults.
    """
    if signum is None:
        yield
        return

    def dump(_signum: int, frame: FrameType | None) -> None:
        try:
            text = tasks_text(conductor, frame)
        except Exception as exc:  # noqa: BLE001 - a dump must never break the program
            text = f"(could not read the tree: {exc!r})"
        del frame
        logger.warning("the tree, on %s:\n%s", _signal_name(signum), text)

    previous = signal.signal(signum, dump)
    try:
        yield
    finally:
        signal.signal(signum, previous)


@contextlib.contextmanager
def _watching_the_loop(
    conductor: Conductor, blocked_after: float | None
) -> Generator[None, None, None]:
    """While inside, a thread names the player that blocks the loop for *blocked_after* s."""
    if blocked_after is None:
        yield
        return
    watchdog = LoopWatchdog(conductor, blocked_after)
    watchdog.start()
    try:
        yield
    finally:
        watchdog.close()


class _SignalCatcher:
    """Counts signals: the first stops gracefully, the second forces, the third calls out.

    With a drain, the first signal drains instead, and a second one during the drain begins
    the stop: the force and the exit come one signal later.
    """

    def __init__(
        self,
        conductor: Conductor,
        signals: Sequence[int],
        on_last: Callable[[str, FrameType | None], object] | None,
        plan: StopPlan,
        on_first: Callable[[str], object] | None = None,
    ) -> None:
        self._conductor = conductor
        self._signals = signals
        self._on_last = on_last
        self._plan = plan
        self._on_first = on_first
        self._token = trio.lowlevel.current_trio_token()
        self._count = 0
        self._shift = 0  # 1 once a signal has cut a drain short

    @contextlib.contextmanager
    def installed(self) -> Generator[None, None, None]:
        previous: dict[int, object] = {}
        try:
            for signum in self._signals:
                previous[signum] = signal.signal(signum, self._handle)
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler runs in the main thread, Trio's: reading the conductor is safe.
        self._count += 1
        if self._count == 2 and self._plan.drain is not None:  # noqa: PLR2004
            conductor = self._conductor
            if conductor._drain_end != math.inf or conductor._draining is None:
                self._shift = 1  # it ends the drain (or the drain has not begun yet)
        count = self._count - self._shift
        name = _signal_name(signum)
        if count >= 3 and self._on_last is not None:  # noqa: PLR2004 - the third signal
            which = "a fourth signal" if self._shift else "a third signal"
            self._on_last(f"{which} ({name})", frame)  # frame: where the loop is now
            return
        del frame
        action = "first" if self._count == 1 else "end drain" if count == 1 else "force"
        # Ignore the error if the run has just finished; the handlers go right after.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._deliver, name, action)

    def _deliver(self, name: str, action: str) -> None:
        plan = self._plan
        if action == "first":
            reason = f"received {name}"
            if self._on_first is not None:
                self._on_first(reason)
            if plan.drain is None:
                self._conductor.stop(reason, within=plan.stop_within)
            else:
                self._conductor._drain(plan.drain, reason, plan.stop_within)
        elif action == "end drain":
            self._conductor.stop(f"received {name} again: the drain is cut short")
        else:
            self._conductor.stop(f"received {name} again: forced stop", force=True)


class _ForceExit:
    """``force_exit_after``: a thread that calls *exit_now* that long after the stop began.

    A thread, so that it holds when the event loop is blocked; its time is the system's
    monotonic clock for the same reason (Trio's clock does not run while the loop is blocked).
    """

    def __init__(self, seconds: float, exit_now: Callable[[str, FrameType | None], object]) -> None:
        self._seconds = seconds
        self._exit_now = exit_now
        self._done = threading.Event()
        self._loop_thread = threading.get_ident()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin counting (the stop began); later calls do nothing."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._wait, name="trio_orchestra force_exit_after", daemon=True
            )
            self._thread.start()

    def cancel(self) -> None:
        """The tree has returned: nothing to force."""
        self._done.set()

    def _wait(self) -> None:
        if self._done.wait(self._seconds):
            return
        running = sys._current_frames().get(self._loop_thread)
        self._exit_now(f"force_exit_after ({self._seconds:g} s)", running)


class _ReadyNotice:
    """The root's ``task_status``: tells systemd READY=1, unless a stop cut the start short."""

    def __init__(self, conductor: Conductor, notifier: SystemdNotifier) -> None:
        self._conductor = conductor
        self._notifier = notifier

    def started(self, value: Conductor | None = None) -> None:
        del value
        tree = self._conductor.status()
        if tree.state is PlayerState.RUNNING:
            self._notifier.send("READY=1", "STATUS=" + one_line(tree))


async def _play(  # noqa: PLR0913 - one place sets up and tears down every operation
    conductor: Conductor,
    signals: Sequence[int],
    *,
    on_last: Callable[[str, FrameType | None], object] | None = None,
    force_exit_after: float | None = None,
    health: HealthEndpoint | None = None,
    plan: StopPlan | None = None,
    watching: Watching | None = None,
    reloader: Reloader | None = None,
) -> None:
    """Run *conductor* under the signal handlers, with the operations asked for."""
    plan = plan or StopPlan()
    watching = watching or Watching()
    notifier = SystemdNotifier.from_environ()
    if on_last is None:
        force_exit_after = None
    force = (
        None
        if force_exit_after is None or on_last is None
        else _ForceExit(force_exit_after, on_last)
    )

    def on_first(reason: str) -> None:
        """The first signal: force_exit_after counts from here, the drain included."""
        if force is not None:
            force.start()
        if notifier is not None and plan.drain is not None:
            notifier.send(f"STATUS=draining for {plan.drain:g} s: {reason}")

    catcher = _SignalCatcher(conductor, signals, on_last, plan, on_first)
    with (
        catcher.installed(),
        _dumping(conductor, watching.dump_signal),
        _watching_the_loop(conductor, watching.blocked_after),
        contextlib.nullcontext() if reloader is None else reloader.on_signal(),
    ):
        if force is None and health is None and notifier is None and reloader is None:
            await conductor()
            return

        await _operated(conductor, notifier, force, health, reloader)


async def _operated(  # noqa: C901 - one place sets up and tears down the tasks beside the tree
    conductor: Conductor,
    notifier: SystemdNotifier | None,
    force: _ForceExit | None,
    health: HealthEndpoint | None,
    reloader: Reloader | None,
) -> None:
    """Run *conductor* beside the operations that need tasks: health, systemd, reloads."""

    def on_stop(reason: str | None) -> None:
        if force is not None:
            force.start()
        if notifier is not None:
            notifier.send("STOPPING=1", "STATUS=stopping: " + (reason or "stop requested"))

    outcome: list[BaseException] = []
    conductor._stop_hooks.append(on_stop)
    if notifier is not None:
        conductor._observer = lambda event: notifier.status(event_line(event))
    try:
        async with trio.open_nursery() as nursery:
            try:
                if health is not None:  # listening before the first player starts
                    await nursery.start(health.serve)
                if reloader is not None:
                    reloader.notifier = notifier
                    nursery.start_soon(reloader.run)
                if notifier is None:
                    await conductor()
                else:
                    nursery.start_soon(notifier.run)
                    await conductor(task_status=_ReadyNotice(conductor, notifier))
            except BaseException as exc:  # noqa: BLE001 - raised below, outside the group
                outcome.append(exc)
            if force is not None:
                force.cancel()
            if notifier is not None:  # tell what is still queued (STOPPING=1), briefly
                with trio.move_on_after(_NOTIFY_CLOSE_SECONDS, shield=True):
                    await notifier.close()
            nursery.cancel_scope.cancel()
    finally:
        conductor._stop_hooks.remove(on_stop)
        conductor._observer = None
    if outcome:
        raise outcome[0]


async def play_until_signal(  # noqa: PLR0913 - keyword-only options, each documented
    player: Conductor | PlayerSpec | Callable[..., Awaitable[object]] | Callable[[], Conductor],
    *signals: int,
    health: str | None = None,
    stop_within: float | None = None,
    drain: float | None = None,
    blocked_after: float | None = None,
    dump_signal: int | None = DUMP_SIGNAL,
    registry: prometheus_client.CollectorRegistry | None = None,
    reload: bool = False,
) -> None:
    """Run *player* until a signal (default SIGINT and SIGTERM) stops it gracefully.

    The handlers are installed before the first player starts and restored once the player
    has returned. The first signal requests a graceful stop whose reason names the signal; a
    second one skips the grace periods and hard-cancels everything. A plain callable (or a
    :class:`PlayerSpec`) is wrapped in a one-player conductor named after it. A stop caused by
    a signal, in which everything stopped in time, returns normally.

    With *stop_within* (seconds), the first signal's stop has one deadline for the whole tree
    (:meth:`Conductor.stop` ``within=``): set it to Kubernetes' ``terminationGracePeriodSeconds``
    or systemd's ``TimeoutStopSec=``, less a margin. With *drain* (seconds), the first signal
    drains first: ``/readyz`` answers 503 and systemd is told ``STATUS=draining``, while every
    player keeps running for *drain* seconds, so that load balancers stop sending traffic;
    then the stop begins. A second signal during the drain begins the stop at once (a third
    forces it; :func:`run` exits at a fourth). The drain counts inside *stop_within*.

    With *blocked_after* (seconds), a thread watches the event loop: when it has not run for
    that long, one warning names the player whose code blocks it and the file:line of the
    blocking call, and a second one says how long it lasted once the loop runs again.
    *dump_signal* (default ``SIGUSR1``; ``None``: none) logs the whole tree at WARNING, each
    player with its state and where it is waiting (``kill -USR1 <pid>``).

    With *reload*, *player* is a factory: a plain function that returns a :class:`Conductor`
    (it reads the configuration, say). It is called once to build the tree, and again on each
    ``SIGHUP``, whose new players the running tree is updated to (:meth:`Conductor.update`):
    what did not change keeps running. systemd is told ``RELOADING=1`` before and ``READY=1``
    after (``Type=notify-reload``). A failed reload is logged, shown in ``/status``, and the
    program goes on as it was.

    With *health* (``"HOST:PORT"``), the health endpoint is served there from before the first
    player starts until the tree has returned (see :doc:`/operations`). Its ``/metrics`` serves
    *registry* (default ``prometheus_client.REGISTRY``, so the application's own metrics are
    there too), on which a :class:`TreeCollector` of the tree is registered meanwhile. When the
    environment
    has ``NOTIFY_SOCKET`` (systemd's ``Type=notify``), systemd is told ``READY=1`` once the tree
    is started, ``STATUS=`` lines as players change state, ``WATCHDOG=1`` every half of
    ``WATCHDOG_USEC``, and ``STOPPING=1`` when a stop begins.

    Raises:
        ConductorError: a player failed.
        ValueError: *health* is not ``HOST:PORT``; a time is negative or NaN; *drain* is
            longer than *stop_within*; *blocked_after* is 0; *dump_signal* is not a signal,
            or is one of *signals*; *registry* is given without *health*; the registry
            already has a tree's metrics (nothing was started).
        ModuleNotFoundError: *health* is given but h11 or prometheus-client (the ``health``
            extra) is not installed.
        OSError: the health endpoint cannot listen (nothing was started).

    Example::

        async def main():
            await orchestra.play_until_signal(conductor, health="127.0.0.1:8080")


        trio.run(main)
    """
    plan = StopPlan.checked(drain, stop_within)
    signals = signals or _DEFAULT_SIGNALS
    watching = Watching.checked(blocked_after, dump_signal, signals)
    conductor, reloader = _target(player, reload=reload)
    endpoint = _endpoint(conductor, health, registry, reloader)
    await _play(
        conductor, signals, health=endpoint, plan=plan, watching=watching, reloader=reloader
    )


def _target(player: object, *, reload: bool) -> tuple[Conductor, Reloader | None]:
    """The root conductor to run, and its reloader when *player* is a factory to reload."""
    if not reload:
        return as_conductor(player), None  # type: ignore[arg-type] # as_conductor checks it
    conductor = first_conductor(player)
    return conductor, Reloader(player, conductor)  # type: ignore[arg-type] # checked


def _endpoint(
    conductor: Conductor,
    health: str | None,
    registry: prometheus_client.CollectorRegistry | None,
    reloader: Reloader | None = None,
) -> HealthEndpoint | None:
    """The health endpoint asked for, if any; a clear error for a registry without one."""
    if health is None:
        if registry is not None:
            msg = (
                "the runner: registry= is what the health endpoint's /metrics serves, and no"
                " health= address was given; give one, or register"
                " orchestra.TreeCollector(conductor) on your registry yourself"
            )
            raise ValueError(msg)
        return None
    return HealthEndpoint(conductor, health, registry, reloader)


def _report_stuck(
    conductor: Conductor, why: str, stream: TextIO, frame: FrameType | None = None
) -> None:
    """Print every player still running and where; *frame*: the Trio thread's innermost now."""
    print(f"trio_orchestra: exiting after {why}; players still running:", file=stream)
    try:
        running = conductor._running_players(frame)
    except Exception as exc:  # noqa: BLE001 - read from another thread: the tree moved
        print(f"  (could not read the tree: {exc!r})", file=stream)
        stream.flush()
        return
    for path, stuck in running:
        print(f"  {path}", file=stream)
        for line in stuck:
            print(f"  {line}", file=stream)
    if not running:
        print("  (none)", file=stream)
    stream.flush()


def _report_failure(error: ConductorError, stream: TextIO) -> None:
    print(f"trio_orchestra: {error.message}", file=stream)
    for path, exc in error.failures.items():
        print(f"  {path}: {type(exc).__name__}: {exc}", file=stream)
    traceback.print_exception(error, file=stream)
    stream.flush()


def run(  # noqa: PLR0913 - keyword-only options, each documented
    player: Conductor | PlayerSpec | Callable[..., Awaitable[object]] | Callable[[], Conductor],
    *,
    signals: Sequence[int] = _DEFAULT_SIGNALS,
    force_exit_after: float | None = None,
    health: str | None = None,
    stop_within: float | None = None,
    drain: float | None = None,
    blocked_after: float | None = None,
    dump_signal: int | None = DUMP_SIGNAL,
    registry: prometheus_client.CollectorRegistry | None = None,
    reload: bool = False,
) -> NoReturn:
    """Run *player* as the program's ``main()``, and exit with its status.

    ``trio.run`` plus :func:`play_until_signal` (with its *health* endpoint and systemd
    notifications), then :func:`sys.exit` with:

    * ``0`` when it stopped cleanly, also after a forced stop that left no failure;
    * ``1`` when a player failed (the failures are printed, by path, on stderr), or when the
      health endpoint could not listen, or found its registry serving a tree already
      (nothing was started);
    * ``70`` at once, on a third signal (a fourth, after a drain cut short) or when
      *force_exit_after* seconds have passed since the first signal: every player still
      running is printed with where it is stuck.

    *stop_within*, *drain*, *blocked_after*, *dump_signal*, *registry* and *reload* are as for
    :func:`play_until_signal`. A bad *health* address, a missing ``health`` extra, or a bad
    time raises at once, before anything runs.

    Example::

        if __name__ == "__main__":
            orchestra.run(
                conductor, drain=5, stop_within=25, force_exit_after=40, health="0.0.0.0:8080"
            )
    """
    plan = StopPlan.checked(drain, stop_within)
    watching = Watching.checked(blocked_after, dump_signal, signals)
    conductor, reloader = _target(player, reload=reload)
    endpoint = _endpoint(conductor, health, registry, reloader)

    def exit_now(why: str, frame: FrameType | None) -> None:
        _report_stuck(conductor, why, sys.stderr, frame)
        os._exit(EXIT_STUCK)

    async def main() -> int:
        try:
            await _play(
                conductor,
                signals,
                on_last=exit_now,
                force_exit_after=force_exit_after,
                health=endpoint,
                plan=plan,
                watching=watching,
                reloader=reloader,
            )
        except ConductorError as error:
            _report_failure(error, sys.stderr)
            return 1
        except OSError as error:  # only the health endpoint's: players' are in the error above
            sys.stderr.write(f"trio_orchestra: {error.strerror or error}\n")
            return 1
        except RegistryClashError as error:
            sys.stderr.write(f"trio_orchestra: {error}\n")
            return 1
        return 0

    sys.exit(trio.run(main))
