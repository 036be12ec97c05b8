"""A subprocess player: ``run_process(command)`` supervises a child process like a task.

Why this module: worker processes (one per core, a sidecar, a legacy daemon) need what tasks
get from a conductor: a clean start, a graceful stop, and a failure when they die unasked.
The soft phase is SIGTERM, the hard phase SIGKILL, as systemd and Kubernetes do it. The child
runs in a session of its own, so a terminal's Ctrl-C reaches only the runner, which turns it
into that graceful stop instead of killing the child behind the conductor's back.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from ._stop import StopToken, current_path, stop_or_never

__all__ = ["run_process"]

logger = logging.getLogger("trio_orchestra")

#: After the process exits, how long its pipes may stay open (held by a grandchild) before
#: the forwarding of their lines is given up.
_DRAIN_SECONDS = 1.0
_CHUNK = 65536
#: How many stderr lines a CalledProcessError keeps, as its ``stderr``.
_STDERR_TAIL = 20
#: The exits that mean "stopped as asked" after our SIGTERM: 0, the shell convention
#: 128 + SIGTERM, and death by the signal itself.
_ORDERLY_AFTER_SIGTERM = frozenset({0, 128 + signal.SIGTERM, -signal.SIGTERM})
#: systemd's notification variables address the runner alone: a child that speaks sd_notify
#: (a daemon, another trio_orchestra program) would otherwise report READY=1 or STOPPING=1
#: to systemd as if it were the service.
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

Command = (
    str
    | bytes
    | os.PathLike[str]
    | os.PathLike[bytes]
    | Sequence[str | bytes | os.PathLike[str] | os.PathLike[bytes]]
)


def _describe(command: Command) -> str:
    if isinstance(command, (str, bytes, os.PathLike)):
        return os.fsdecode(command)
    return shlex.join(os.fsdecode(part) for part in command)


async def _forward(
    stream: trio.abc.ReceiveStream,
    level: int,
    path: str,
    name: str,
    tail: collections.deque[str] | None,
) -> None:
    """Log each line of *stream* at *level*, with the player's path in the record."""
    pending = b""
    while True:
        chunk = await stream.receive_some(_CHUNK)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            _log_line(line, level, path, name, tail)
        if len(pending) > _CHUNK:  # a huge line without an end: log it in pieces
            _log_line(pending, level, path, name, tail)
            pending = b""
    if pending:
        _log_line(pending, level, path, name, tail)


def _log_line(
    raw: bytes, level: int, path: str, name: str, tail: collections.deque[str] | None
) -> None:
    line = raw.rstrip(b"\r").decode(errors="replace")
    if tail is not None:
        tail.append(line)
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s: %s", path, name, line, extra={"path": path, "stream": name})


def _child_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options to spawn with: without systemd's variables, unless ``env`` was given."""
    if options.get("env") is not None or not any(name in os.environ for name in _SYSTEMD_VARIABLES):
        return options
    env = {name: value for name, value in os.environ.items() if name not in _SYSTEMD_VARIABLES}
    return {**options, "env": env}


def _leads_a_group(process: trio.Process) -> bool:
    """Whether the child leads a process group of its own (checked before it is reaped)."""
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:  # pragma: no cover - not reaped yet, so it cannot be gone
        return False


def _kill(process: trio.Process, *, group: bool) -> None:
    """SIGKILL the child, or its whole process group when it leads one of its own.

    The group's id stays reserved while any member lives, even after the child itself has
    exited and been reaped, so this also reaches the grandchildren it left behind.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        elif process.returncode is None:
            process.kill()


async def _supervise(
    process: trio.Process,
    path: str,
    stop: StopToken,
    *,
    forward: tuple[bool, bool],
    task_status: trio.TaskStatus[trio.Process],
) -> None:
    """Forward the pipes, report started, and wait for the process: SIGTERM on a stop.

    Raises ``CalledProcessError`` for an exit that is not orderly (see ``run_process``).
    """
    tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
    terminated = False
    group = _leads_a_group(process)
    try:
        async with trio.open_nursery() as pipes:
            if process.stdout is not None and forward[0]:
                pipes.start_soon(_forward, process.stdout, logging.INFO, path, "stdout", None)
            if process.stderr is not None and forward[1]:
                pipes.start_soon(_forward, process.stderr, logging.WARNING, path, "stderr", tail)
            task_status.started(process)
            with stop.soft_scope():
                await process.wait()
            if process.returncode is None:
                terminated = True
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                await process.wait()
            # A grandchild may hold the pipes open: forward what is left, for a while.
            pipes.cancel_scope.deadline = trio.current_time() + _DRAIN_SECONDS
    finally:
        # Cancelled (the hard phase, or a failure around us): kill it. Exited: kill what it
        # left behind in its group, so that no grandchild outlives it (KillMode=mixed).
        _kill(process, group=group)
        if process.returncode is None:
            with trio.CancelScope(shield=True):
                await process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                await trio.aclose_forcefully(pipe)
    code = process.returncode
    assert code is not None  # noqa: S101 - waited for above
    if code != 0 and not (terminated and code in _ORDERLY_AFTER_SIGTERM):
        raise subprocess.CalledProcessError(code, process.args, stderr="\n".join(tail) or None)


def run_process(command: Command, **options: Any) -> Callable[..., Awaitable[None]]:  # noqa: ANN401 - popen options
    """Return a player that runs *command* as a child process, supervised.

    * It is started once the process is spawned (so ``start_timeout`` applies to spawning);
      its started value is the :class:`trio.Process`. A command that cannot be run (not
      found, not executable) fails the start with an :class:`OSError` naming the player.
    * The child runs in a session of its own (``start_new_session=True`` unless you pass it),
      so a Ctrl-C in the terminal reaches only the runner, which stops the tree gracefully;
      its stdin is ``/dev/null`` unless you pass ``stdin=``.
    * A stop sends SIGTERM to the child, then waits for it within the player's grace; the hard
      phase sends SIGKILL to its whole process group, and so does the child's exit, whatever
      its cause, to what it left in its group (like systemd's ``KillMode=mixed``): no
      grandchild outlives it.
    * After our SIGTERM, exit status 0, 143 or death by SIGTERM is an orderly stop. Any other
      non-zero status then, and any non-zero status nobody asked for, fails the player with
      :class:`subprocess.CalledProcessError` (``returncode``, ``cmd``, and the last lines of
      stderr as ``stderr``). An exit with status 0 nobody asked for is the player returning.
    * Unless you redirect them (``stdout=`` / ``stderr=``), each line the child writes to
      stdout is logged at INFO and each line to stderr at WARNING, on the ``trio_orchestra``
      logger, with the player's path in the message and as the record's ``path`` attribute.
    * The child inherits the environment without systemd's ``NOTIFY_SOCKET``,
      ``WATCHDOG_USEC`` and ``WATCHDOG_PID``, which speak for the service: a child that
      notifies systemd itself would otherwise report the service ready or stopping. Pass
      ``env=`` to give the child exactly the environment you choose.

    With ``restart=Restart.ON_FAILURE`` this supervises worker processes; run one per core.

    Args:
        command: the program and its arguments, as for :func:`trio.run_process` (a string
            needs ``shell=True``).
        **options: passed to :func:`trio.lowlevel.open_process` (``cwd``, ``env``, ...).

    Example::

        workers = {
            f"worker-{n}": orchestra.PlayerSpec(
                orchestra.run_process([sys.executable, "-m", "myapp.worker"]),
                restart=orchestra.Restart.ON_FAILURE,
            )
            for n in range(os.cpu_count() or 1)
        }
    """
    shell = bool(options.get("shell", False))
    if isinstance(command, (str, bytes)) and not shell:
        msg = (
            f"run_process({command!r}): a command string needs shell=True;"
            " pass a list of arguments instead"
        )
        raise TypeError(msg)
    if "check" in options or "capture_stdout" in options or "capture_stderr" in options:
        msg = "run_process: check and capture options belong to trio.run_process, not here"
        raise TypeError(msg)
    described = _describe(command)
    forward = ("stdout" not in options, "stderr" not in options)
    options.setdefault("start_new_session", True)
    options.setdefault("stdin", subprocess.DEVNULL)  # the terminal's input is not the child's
    for name, forwarded in zip(("stdout", "stderr"), forward, strict=True):
        if forwarded:
            options[name] = subprocess.PIPE

    async def run_process(
        *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
    ) -> None:
        stop = stop_or_never()  # subscribed before spawning: a stop comes as SIGTERM
        path = current_path("run_process")
        try:
            process = await trio.lowlevel.open_process(command, **_child_options(options))
        except OSError as exc:
            msg = f"player {path!r} cannot run {described!r}: {exc.strerror or exc}"
            raise type(exc)(exc.errno, msg) from exc
        await _supervise(process, path, stop, forward=forward, task_status=task_status)

    run_process.__qualname__ = f"run_process({described})"
    return run_process
