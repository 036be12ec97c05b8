"""A player a test can steer, in the spirit of suture's FailableService.

Why this module: testing a supervision tree means making its players misbehave on cue: fail now,
return now, fail to start, hang when stopped, ignore the soft stop. A :class:`ScriptedPlayer`
does each of those when told, or run by run from a script given up front ("fail after 1 s,
twice, then run"), counts its runs and records when each started, all on Trio's clock, so tests
under ``autojump_clock`` stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import final

import attrs
import trio

from trio_orchestra._stop import current_stop

__all__ = ["Fail", "Finish", "ScriptedPlayer"]

_END = object()  # the script has no more steps


def _check_after(_instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{attribute.name} must be a number of seconds, not {value!r}"
        raise TypeError(msg)
    if not value >= 0:  # also NaN
        msg = f"{attribute.name} must be 0 seconds or more, not {value!r}"
        raise ValueError(msg)


@final
@attrs.frozen
class Fail:
    """A step of a :class:`ScriptedPlayer`'s script: the run fails *after* seconds once ready.

    It raises *error*, or when that is ``None`` a fresh ``ValueError`` naming the run.

    Example::

        flaky = ScriptedPlayer(script=[Fail(after=1), Fail(after=1)])  # then runs until stopped
    """

    after: float = attrs.field(default=0.0, validator=_check_after)
    error: BaseException | None = None


@final
@attrs.frozen
class Finish:
    """A step of a :class:`ScriptedPlayer`'s script: the run returns *after* seconds once ready.

    Example::

        batch = ScriptedPlayer(script=[Finish(after=3)])
    """

    after: float = attrs.field(default=0.0, validator=_check_after)


@final
class ScriptedPlayer:
    """A player whose every run does what the test says.

    Use it as the player (``PlayerSpec(player, restart=...)``): each run becomes ready after
    ``ready_after`` seconds, or fails to start with ``fail_at_start``, then waits for a
    command. While it runs, :meth:`fail` makes it raise, :meth:`finish` makes it return. When it
    is stopped it subscribes to the soft phase and returns at once, unless told to
    ``ignore_soft_stop`` (it waits for the hard cancel), ``hang_on_stop`` (it shields itself
    for that many seconds after the cancel: a straggler) or ``fail_on_stop`` (it raises that).

    The options hold for every later run until changed.

    A *script* says what the runs do on their own, one step per run that becomes ready:
    :class:`Fail` or :class:`Finish` after some seconds. It is read lazily, so
    ``itertools.repeat(Fail())`` fails every run; the runs after a finite script wait for
    commands. A command that comes first wins over the step, and so does a stop the run
    heeds (its soft phase, unless ``ignore_soft_stop``, or its hard cancel). A run that is
    stopped or restarted early has used its step all the same: the next run takes the next.

    Attributes:
        runs: how many runs have begun.
        started_times: the :func:`trio.current_time` at which each run became ready.
        stop_reasons: the stop reason each stopped run saw (``None`` when not subscribed).

    Example::

        player = ScriptedPlayer()
        async with background(Conductor({"p": PlayerSpec(player, restart=ON_FAILURE)})) as run:
            await player.wait_runs(1)
            player.fail(ValueError("boom"))
            await player.wait_runs(2)  # restarted after its backoff

        flaky = ScriptedPlayer(script=[Fail(after=1), Fail(after=1)])  # then runs until stopped
    """

    def __init__(  # noqa: PLR0913 - keyword-only options, each documented
        self,
        *,
        ready_after: float = 0.0,
        fail_at_start: BaseException | None = None,
        ignore_soft_stop: bool = False,
        hang_on_stop: float = 0.0,
        fail_on_stop: BaseException | None = None,
        script: Iterable[Fail | Finish] = (),
    ) -> None:
        self.ready_after = ready_after
        self.fail_at_start = fail_at_start
        self.ignore_soft_stop = ignore_soft_stop
        self.hang_on_stop = hang_on_stop
        self.fail_on_stop = fail_on_stop
        self._script: Iterator[object] = iter(script)  # what the caller gave: checked in use
        self.runs: int = 0
        self.started_times: list[float] = []
        self.stop_reasons: list[str | None] = []
        self._command: tuple[str, BaseException | None] | None = None
        self._wake = trio.Event()
        self._runs_changed = trio.Event()

    def __repr__(self) -> str:
        return f"<ScriptedPlayer runs={self.runs}>"

    def fail(self, error: BaseException) -> None:
        """Make the current run raise *error* (at its next step)."""
        self._send(("fail", error))

    def finish(self) -> None:
        """Make the current run return normally."""
        self._send(("finish", None))

    async def wait_runs(self, count: int) -> None:
        """Wait until *count* runs have become ready (return at once, checkpointed, if so)."""
        while len(self.started_times) < count:
            await self._runs_changed.wait()
        await trio.lowlevel.checkpoint()

    def _send(self, command: tuple[str, BaseException | None]) -> None:
        self._command = command
        self._wake.set()

    def _ready(self) -> None:
        self.started_times.append(trio.current_time())
        changed, self._runs_changed = self._runs_changed, trio.Event()
        changed.set()

    async def __call__(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """One run of the player."""
        stop = current_stop()
        self.runs += 1
        self._command = None
        self._wake = trio.Event()
        await trio.sleep(self.ready_after)
        if self.fail_at_start is not None:
            raise self.fail_at_start
        task_status.started()
        self._ready()
        try:
            with trio.CancelScope() as soft:
                stop._add_listener(lambda _reason: None if self.ignore_soft_stop else soft.cancel())
                await self._wait_for_command()
            if soft.cancelled_caught:
                self.stop_reasons.append(stop.reason)
                await self._stopping()
                return
        except trio.Cancelled:
            self.stop_reasons.append(stop.reason)
            await self._stopping()
            raise
        error = self._failure()
        if error is not None:
            raise error

    async def _wait_for_command(self) -> None:
        """Wait for a command, or for the time of this run's step of the script."""
        step = next(self._script, _END)
        if step is _END:
            await self._wake.wait()
            return
        if not isinstance(step, (Fail, Finish)):
            msg = f"a step of a ScriptedPlayer's script is a Fail or a Finish, not {step!r}"
            raise TypeError(msg)
        with trio.move_on_after(step.after):
            await self._wake.wait()
        if self._command is None:  # the step's time came first
            if isinstance(step, Finish):
                self._command = ("finish", None)
            elif step.error is None:
                self._command = ("fail", ValueError(f"scripted failure of run {self.runs}"))
            else:  # raised afresh: a reused error must not pile up the tracebacks of each run
                self._command = ("fail", step.error.with_traceback(None))

    def _failure(self) -> BaseException | None:
        """The error that the last command asks this run to raise, if any."""
        command = self._command
        return command[1] if command is not None and command[0] == "fail" else None

    async def _stopping(self) -> None:
        if self.hang_on_stop > 0:
            with trio.CancelScope(shield=True):
                await trio.sleep(self.hang_on_stop if math.isfinite(self.hang_on_stop) else 1e9)
        if self.fail_on_stop is not None:
            raise self.fail_on_stop
