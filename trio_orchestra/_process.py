"""A subprocess player: ``run_process(command)`` supervises a child process like a task.

Why this module: worker processes (one per core, a sidecar, a legacy daemon) need what tasks
get from a conductor: a clean start, a graceful stop, and a failure when they die unasked.
The soft phase is SIGTERM, the hard phase SIGKILL, as systemd and Kubernetes do it. The child
runs in a session of its own, so a terminal's Ctrl-C reaches only the runner, which turns it
into that graceful stop instead of killing the child behind the conductor's back.

Readiness: a spawned child is not yet a serving one. With ``ready_port``, ``ready_line`` or
``ready_notify`` the player reports started only when the child answers on its port, prints
its line, or sends systemd's ``READY=1`` on a socket of its own; until then the child's exit
is a start failure, and a stop is an ordinary stop.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Protocol, cast, final

import attrs
import trio

from ._checks import MAX_PORT
from ._errors import add_note
from ._stop import StopToken, current_path, in_own_task, stop_or_never

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
#: ``ready_port`` polls: the first retry after this many seconds, each next one after twice
#: as long, up to the maximum. A refused connection on loopback costs some microseconds, and
#: in a tree that starts in order every late answer delays the players after this one.
_POLL_FIRST = 0.05
_POLL_MAX = 0.5
#: How long one connection attempt may take before it counts as "not yet" (a dropped SYN).
_CONNECT_TIMEOUT = 2.0
#: The largest notification datagram read whole (systemd's own limit is lower).
_NOTIFY_MAX = 65536
#: Where ``ready_port=PORT`` connects: a sidecar bound to 127.0.0.1 or to every interface
#: answers there, and the check never leaves the machine.
_LOOPBACK = "127.0.0.1"

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


@attrs.frozen
class _Readiness:
    """What the player waits for before it reports started: at most one of the three."""

    address: tuple[str, int] | None = None
    pattern: re.Pattern[str] | None = None
    notify: bool = False

    @property
    def missing(self) -> str:
        """What did not happen, for the message of an exit before it was ready."""
        if self.address is not None:
            host, port = self.address
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            return f"{where} accepted no connection"
        if self.pattern is not None:
            return f"no line matched {self.pattern.pattern!r}"
        return "it sent no READY=1"


class _Waiter(Protocol):
    """One run's source of readiness: a port, a line, or a notification."""

    async def wait(self) -> None:
        """Return once the child is ready."""
        ...

    async def after_exit(self) -> bool:
        """Whether the child, which has exited, was ready by then (what it left is read)."""
        ...


@final
class _PortWaiter:
    """Ready once a TCP connection to one of *addresses* succeeds."""

    __slots__ = ("addresses",)

    def __init__(self, addresses: AddressInfo) -> None:
        self.addresses = addresses

    async def wait(self) -> None:
        """Poll, backing off, on Trio's clock."""
        delay = _POLL_FIRST
        while not await _accepts(self.addresses):
            await trio.sleep(delay)
            delay = min(2 * delay, _POLL_MAX)

    async def after_exit(self) -> bool:
        """An exited child serves nothing."""
        await trio.lowlevel.checkpoint()
        return False


@final
class _LineWatch:
    """Ready at the first forwarded line that *pattern* finds a match in."""

    __slots__ = ("_ended", "_open", "event", "pattern")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.event = trio.Event()
        self._open = 0
        self._ended = trio.Event()

    def opened(self) -> None:
        """One more stream is read for the line."""
        self._open += 1

    def see(self, line: str) -> None:
        """Look at one line."""
        if not self.event.is_set() and self.pattern.search(line) is not None:
            self.event.set()

    def ended(self) -> None:
        """One of the streams was read to its end."""
        self._open -= 1
        if self._open == 0:
            self._ended.set()

    async def wait(self) -> None:
        """Wait for the line."""
        await self.event.wait()

    async def after_exit(self) -> bool:
        """Read what the child wrote before it exited: its line may be in a pipe still."""
        with trio.move_on_after(_DRAIN_SECONDS):  # a grandchild may hold the pipes open
            await self._ended.wait()
        return self.event.is_set()


@final
class _Sink:
    """Where the lines of one of the child's streams go: the log, a tail, a ready-line watch."""

    __slots__ = ("level", "name", "path", "tail", "watch")

    def __init__(
        self,
        path: str,
        name: str,
        level: int,
        *,
        tail: collections.deque[str] | None = None,
        watch: _LineWatch | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self.level = level
        self.tail = tail
        self.watch = watch
        if watch is not None:
            watch.opened()

    def line(self, raw: bytes) -> None:
        """Take one line, without its newline."""
        line = raw.rstrip(b"\r").decode(errors="replace")
        if self.tail is not None:
            self.tail.append(line)
        if logger.isEnabledFor(self.level):
            path = self.path
            extra = {"path": path, "stream": self.name}
            logger.log(self.level, "%s %s: %s", path, self.name, line, extra=extra)
        if self.watch is not None:
            self.watch.see(line)  # after logging: once started, the line that did it is logged

    def end(self) -> None:
        """The stream was read to its end."""
        if self.watch is not None:
            self.watch.ended()


async def _forward(stream: trio.abc.ReceiveStream, sink: _Sink) -> None:
    """Log each line of *stream* at its level, with the player's path in the record."""
    pending = b""
    while True:
        chunk = await stream.receive_some(_CHUNK)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            sink.line(line)
        if len(pending) > _CHUNK:  # a huge line without an end: log it in pieces
            sink.line(pending)
            pending = b""
    if pending:
        sink.line(pending)
    sink.end()


def _child_options(options: dict[str, Any], notify_socket: str | None) -> dict[str, Any]:
    """The options to spawn with: without systemd's variables, unless ``env`` was given.

    With *notify_socket*, the child's ``NOTIFY_SOCKET`` is that one (the player's own).
    """
    env: dict[str, str] | None = options.get("env")
    if env is None:
        if notify_socket is None and not any(name in os.environ for name in _SYSTEMD_VARIABLES):
            return options
        env = {name: value for name, value in os.environ.items() if name not in _SYSTEMD_VARIABLES}
    if notify_socket is not None:
        env = {**env, "NOTIFY_SOCKET": notify_socket}
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


def _exit_status(code: int) -> str:
    """How the child ended, in words: "exited with status 3", "was killed by SIGKILL"."""
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


AddressInfo = list[tuple[Any, Any, int, str, Any]]


async def _resolve(address: tuple[str, int], path: str) -> AddressInfo:
    """The addresses to try for ``ready_port``; a host that does not resolve fails the start."""
    host, port = address
    try:
        return await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        msg = f"player {path!r} cannot resolve the ready_port host {host!r}: {exc.strerror or exc}"
        raise socket.gaierror(exc.errno, msg) from exc


async def _accepts(addresses: AddressInfo) -> bool:
    """Whether one of *addresses* accepts a TCP connection now (closed again at once)."""
    for family, kind, proto, _, sockaddr in addresses:
        with trio.move_on_after(_CONNECT_TIMEOUT):
            try:
                with trio.socket.socket(family, kind, proto) as sock:
                    await sock.connect(sockaddr)
            except OSError:  # refused (nobody listens yet), unreachable, ...: not yet
                continue
            return True
    return False


@final
class _NotifyWaiter:
    """Ready when the child sends ``READY=1`` to its own ``NOTIFY_SOCKET`` (sd_notify)."""

    __slots__ = ("address", "event", "path", "scope", "sock")

    def __init__(self, sock: socket.socket, address: str, path: str) -> None:
        self.sock = sock
        self.address = address
        self.path = path
        self.event = trio.Event()
        self.scope = trio.CancelScope()  # cancelled once the child has exited

    async def read(self) -> None:
        """Read the child's datagrams for as long as it runs, not only until it is ready.

        A sender that waits for room in a full queue (as our own runner does) must never
        block on a reader that went away.
        """
        with self.scope:
            while True:
                await trio.lowlevel.wait_readable(self.sock)
                self._drain()

    def _drain(self) -> None:
        """Act on every datagram queued: ``READY=1`` sets the event, ``STATUS=`` is logged.

        The rest (``WATCHDOG=1``, ``STOPPING=1``, ...) is for a service manager, and ignored:
        nothing is relayed to the real one.
        """
        while True:
            try:
                datagram = self.sock.recv(_NOTIFY_MAX)
            except (BlockingIOError, InterruptedError):
                return
            for line in datagram.decode(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key == "READY" and value == "1":
                    self.event.set()
                elif key == "STATUS" and logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s status: %s", self.path, value, extra={"path": self.path})

    async def wait(self) -> None:
        """Wait for ``READY=1``."""
        await self.event.wait()

    async def after_exit(self) -> bool:
        """Read what the child sent before it exited: ``READY=1`` may be queued still."""
        await trio.lowlevel.checkpoint()
        self._drain()
        return self.event.is_set()


@contextlib.asynccontextmanager
async def _notify_socket(path: str) -> AsyncGenerator[_NotifyWaiter, None]:
    """A datagram socket of the player's own, in a private directory removed afterwards."""
    await trio.lowlevel.checkpoint()
    directory = tempfile.mkdtemp(prefix="trio-orchestra-")  # mode 0700: ours alone
    try:
        address = os.path.join(directory, "notify")  # noqa: PTH118 - a str for the env
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # noqa: FBT003 - the stdlib's signature
            try:
                sock.bind(address)
            except OSError as exc:  # e.g. a TMPDIR too long for a socket's address
                msg = f"player {path!r} cannot make its NOTIFY_SOCKET {address!r}: {exc}"
                raise OSError(exc.errno, msg) from exc
            yield _NotifyWaiter(sock, address, path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _until_ready(process: trio.Process, waiter: _Waiter) -> bool:
    """Wait until the child is ready (``True``), or has exited before it was (``False``)."""
    ready = False
    async with trio.open_nursery() as race:

        async def wait_then_end_the_race() -> None:
            nonlocal ready
            await waiter.wait()
            ready = True
            race.cancel_scope.cancel()

        race.start_soon(wait_then_end_the_race)
        await process.wait()
        if await waiter.after_exit():  # cancelled if the waiter is ready meanwhile
            ready = True
        race.cancel_scope.cancel()
    return ready


@attrs.frozen
class _Settings:
    """How one ``run_process`` player handles its child, fixed when the factory is called."""

    forward: tuple[bool, bool]  # whether stdout / stderr are ours to log
    levels: tuple[int, int]
    readiness: _Readiness | None


def _read_output(  # noqa: PLR0913 - the pipes and where their lines go
    pipes: trio.Nursery,
    process: trio.Process,
    path: str,
    settings: _Settings,
    *,
    tail: collections.deque[str],
    watch: _LineWatch | None,
) -> None:
    """Forward the child's stdout and stderr, those not redirected, to the log."""
    out, err = settings.forward
    if process.stdout is not None and out:
        sink = _Sink(path, "stdout", settings.levels[0], watch=watch)
        pipes.start_soon(_forward, process.stdout, sink)
    if process.stderr is not None and err:
        sink = _Sink(path, "stderr", settings.levels[1], tail=tail, watch=watch)
        pipes.start_soon(_forward, process.stderr, sink)


async def _supervise(  # noqa: PLR0913 - the one place that decides the child's fate
    process: trio.Process,
    path: str,
    stop: StopToken,
    settings: _Settings,
    *,
    waiter: _Waiter | None,
    own: bool,
    task_status: trio.TaskStatus[trio.Process],
) -> None:
    """Forward the pipes, wait until ready, report started, and wait for the process.

    A stop (SIGTERM, then SIGKILL) may come at any time, also while it is not ready yet.
    Raises ``CalledProcessError`` for an exit that is not orderly (see ``run_process``),
    and for any exit before it is ready that nobody asked for.
    """
    tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
    watch = waiter if isinstance(waiter, _LineWatch) else None
    notifier = waiter if isinstance(waiter, _NotifyWaiter) else None
    terminated = False
    ready = False
    group = _leads_a_group(process)
    try:
        async with trio.open_nursery() as pipes:
            _read_output(pipes, process, path, settings, tail=tail, watch=watch)
            if notifier is not None:
                pipes.start_soon(notifier.read)
            with stop.soft_scope():
                if waiter is None or await _until_ready(process, waiter):
                    ready = True
                    task_status.started(process)
                    await process.wait()
            if not ready and stop.requested and not own:
                # Run in a player's nursery: that player is stopping, and its nursery.start
                # must return (with the process, being stopped) rather than fail.
                ready = True
                task_status.started(process)
            if process.returncode is None:
                terminated = True
                await _terminate(process)
            if notifier is not None:
                notifier.scope.cancel()
            # A grandchild may hold the pipes open: forward what is left, for a while.
            pipes.cancel_scope.deadline = trio.current_time() + _DRAIN_SECONDS
    finally:
        # Cancelled (the hard phase, a start timeout, a failure around us): kill it. Exited:
        # kill what it left behind in its group, so that no grandchild outlives it
        # (KillMode=mixed).
        _kill(process, group=group)
        if process.returncode is None:
            with trio.CancelScope(shield=True):
                await process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                await trio.aclose_forcefully(pipe)
    error = _exit_error(
        process,
        path,
        settings.readiness,
        tail,
        ready=ready or stop.requested,
        terminated=terminated,
    )
    if error is not None:
        raise error


async def _terminate(process: trio.Process) -> None:
    """Send SIGTERM to the child and wait for it to exit (the soft phase)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    await process.wait()


def _exit_error(  # noqa: PLR0913 - the exit and what it means
    process: trio.Process,
    path: str,
    readiness: _Readiness | None,
    tail: collections.deque[str],
    *,
    ready: bool,
    terminated: bool,
) -> subprocess.CalledProcessError | None:
    """The failure that the child's exit is, if any (see ``run_process``)."""
    code = process.returncode
    assert code is not None  # noqa: S101 - waited for
    stderr = "\n".join(tail) or None
    if not ready:  # nobody asked it to stop: an exit before it is ready fails the start
        kind = _ExitBeforeReady if code == 0 else subprocess.CalledProcessError
        error = kind(code, process.args, stderr=stderr)
        missing = readiness.missing if readiness is not None else "?"
        add_note(error, f"player {path!r} {_exit_status(code)} before it was ready ({missing})")
        return error
    if code == 0 or (terminated and code in _ORDERLY_AFTER_SIGTERM):
        return None
    return subprocess.CalledProcessError(code, process.args, stderr=stderr)


class _ExitBeforeReady(subprocess.CalledProcessError):
    """A ``CalledProcessError`` for a child that exited with 0 before it was ready.

    Its own message: the standard one would say "returned non-zero exit status 0".
    """

    def __str__(self) -> str:
        return f"Command {self.cmd!r} exited with status 0 before it was ready"


def _check_level(value: object, what: str, where: str) -> int:
    """A logging level: an int (not a bool), zero or more."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{where}: {what} must be a logging level (an int), not {type(value).__name__}"
        raise TypeError(msg)
    if value < 0:
        msg = f"{where}: {what} must be a logging level of zero or more, not {value}"
        raise ValueError(msg)
    return value


def _check_port(value: object, where: str) -> tuple[str, int]:
    """``ready_port``: a port number (on 127.0.0.1), or a ``(host, port)`` tuple."""
    kind = _kind(value)
    host: object = _LOOPBACK
    port: object = value
    if isinstance(value, tuple):
        parts = cast("tuple[object, ...]", value)
        host, port = parts if len(parts) == 2 else (None, None)  # noqa: PLR2004 - a pair
    if isinstance(port, bool) or not isinstance(port, int) or not isinstance(host, str):
        msg = f"{where}: ready_port must be a port number or a (host, port) tuple, not {kind}"
        raise TypeError(msg)
    if not host:
        msg = f"{where}: the ready_port host must not be empty"
        raise ValueError(msg)
    if not 1 <= port <= MAX_PORT:
        msg = f"{where}: ready_port must be a port from 1 to {MAX_PORT}, not {port}"
        raise ValueError(msg)
    return host, port


def _kind(value: object) -> str:
    """The type of *value* in a message; a tuple's as the types of its parts."""
    if isinstance(value, tuple):
        parts = cast("tuple[object, ...]", value)
        return "(" + ", ".join(type(part).__name__ for part in parts) + ")"
    return type(value).__name__


def _check_pattern(value: object, where: str) -> re.Pattern[str]:
    """``ready_line``: a str pattern, compiled here so that a bad one fails at once."""
    if isinstance(value, re.Pattern):
        pattern: re.Pattern[Any] = value  # pyright: ignore[reportUnknownVariableType]
        if isinstance(pattern.pattern, str):
            return pattern
        msg = f"{where}: ready_line must be a str pattern (lines are decoded), not a bytes one"
        raise TypeError(msg)
    if not isinstance(value, str):
        msg = f"{where}: ready_line must be a str or a compiled re.Pattern, not {_kind(value)}"
        raise TypeError(msg)
    try:
        return re.compile(value)
    except re.error as exc:
        msg = f"{where}: ready_line {value!r} is not a valid regular expression: {exc}"
        raise ValueError(msg) from exc


def _check_readiness(
    where: str,
    ready_port: object,
    ready_line: object,
    ready_notify: object,
    forward: tuple[bool, bool],
) -> _Readiness | None:
    """The readiness that the ``ready_*`` options ask for, checked; ``None`` for "spawned"."""
    if not isinstance(ready_notify, bool):
        msg = f"{where}: ready_notify must be a bool, not {type(ready_notify).__name__}"
        raise TypeError(msg)
    given = [
        name
        for name, value in (
            ("ready_port", ready_port is not None),
            ("ready_line", ready_line is not None),
            ("ready_notify", ready_notify),
        )
        if value
    ]
    if len(given) > 1:
        msg = (
            f"{where}: give at most one of ready_port, ready_line and ready_notify,"
            f" not {' and '.join(given)}"
        )
        raise ValueError(msg)
    if ready_port is not None:
        return _Readiness(address=_check_port(ready_port, where))
    if ready_line is not None:
        pattern = _check_pattern(ready_line, where)
        if not any(forward):
            msg = (
                f"{where}: ready_line reads the lines the child writes,"
                " so stdout= and stderr= cannot both redirect them"
            )
            raise ValueError(msg)
        return _Readiness(pattern=pattern)
    if ready_notify:
        return _Readiness(notify=True)
    return None


def run_process(  # noqa: PLR0913 - keyword-only options, each documented
    command: Command,
    *,
    ready_port: int | tuple[str, int] | None = None,
    ready_line: str | re.Pattern[str] | None = None,
    ready_notify: bool = False,
    stdout_level: int = logging.INFO,
    stderr_level: int = logging.WARNING,
    **options: Any,  # noqa: ANN401 - popen options
) -> Callable[..., Awaitable[None]]:
    """Return a player that runs *command* as a child process, supervised.

    * It is started once the process is spawned or, with one of the ``ready_*`` options
      below, once the child *serves*; its started value is the :class:`trio.Process`. A
      ``start_timeout`` bounds the whole wait. A command that cannot be run (not found, not
      executable) fails the start with an :class:`OSError` naming the player.
    * ``ready_port=8000``: started once a TCP connection to ``127.0.0.1:8000`` succeeds
      (``ready_port=(host, port)`` for another address). The port is tried at the spawn,
      then after 0.05 s and at intervals doubling up to 0.5 s, on Trio's clock; a refused
      connection means "not yet", and a host that does not resolve fails the start before
      the child is spawned. The connection that succeeds is closed at once: the child sees
      one connection that sends nothing.
    * ``ready_line=r"regex"`` (a str, or a compiled ``re.Pattern``): started once a
      line the child writes to stdout *or* stderr contains a match
      (``pattern.search(line)``: anchor it with ``^`` to match from the start). The line is
      logged as every other. Only the streams you do not redirect are read. A child whose
      output is a pipe may buffer it (Python does, unless run with ``-u``): a ready line
      stuck in its buffer comes late, or never.
    * ``ready_notify=True``: the child gets a ``NOTIFY_SOCKET`` of its own (an AF_UNIX
      datagram socket in a private directory, removed afterwards), and the player is
      started when the child sends ``READY=1``, as under systemd's ``Type=notify``. Its
      ``STATUS=`` lines are logged at DEBUG; nothing is relayed to the real service manager.
    * Until it is ready, the child's exit, whatever its status, fails the start with
      :class:`subprocess.CalledProcessError` (``returncode``, ``cmd``, ``stderr``), with a
      note naming the player, how the child ended and what it did not do; in a conductor's
      start, the rollback applies. A stop while it is not ready yet stops the child as any
      stop does (below), and is no failure.
    * The child runs in a session of its own (``start_new_session=True`` unless you pass it),
      so a Ctrl-C in the terminal reaches only the runner, which stops the tree gracefully;
      its stdin is ``/dev/null`` unless you pass ``stdin=``.
    * A stop sends SIGTERM to the child, then waits for it within the player's grace; the hard
      phase (and a ``start_timeout`` that expires) sends SIGKILL to its whole process group,
      and so does the child's exit, whatever its cause, to what it left in its group (like
      systemd's ``KillMode=mixed``): no grandchild outlives it.
    * After our SIGTERM, exit status 0, 143 or death by SIGTERM is an orderly stop. Any other
      non-zero status then, and any non-zero status nobody asked for, fails the player with
      :class:`subprocess.CalledProcessError` (``returncode``, ``cmd``, and the last lines of
      stderr as ``stderr``). Once it is ready, an exit with status 0 nobody asked for is the
      player returning.
    * Unless you redirect them (``stdout=`` / ``stderr=``), each line the child writes to
      stdout is logged at ``stdout_level`` and each line to stderr at ``stderr_level``, on
      the ``trio_orchestra`` logger, with the player's path in the message and as the
      record's ``path`` attribute.
    * The child inherits the environment without systemd's ``NOTIFY_SOCKET``,
      ``WATCHDOG_USEC`` and ``WATCHDOG_PID``, which speak for the service: a child that
      notifies systemd itself would otherwise report the service ready or stopping. Pass
      ``env=`` to give the child exactly the environment you choose (with ``ready_notify``,
      its own ``NOTIFY_SOCKET`` is added to it).

    With ``restart=Restart.ON_FAILURE`` this supervises worker processes; run one per core.

    Args:
        command: the program and its arguments, as for :func:`trio.run_process` (a string
            needs ``shell=True``).
        ready_port: the port (on 127.0.0.1), or the ``(host, port)``, that the child accepts
            connections on once it is ready.
        ready_line: a regular expression found in the line the child writes once it is ready.
        ready_notify: whether the child says ``READY=1`` by systemd's notify protocol.
        stdout_level: the logging level of the child's lines of stdout.
        stderr_level: the logging level of the child's lines of stderr.
        **options: passed to :func:`trio.lowlevel.open_process` (``cwd``, ``env``, ...).

    Raises:
        TypeError: an option of the wrong type, a command string without ``shell=True``, or
            the ``check`` and ``capture_*`` options of :func:`trio.run_process`.
        ValueError: more than one ``ready_*`` option, a port out of range, a regular
            expression that does not compile, ``ready_line`` with both streams redirected,
            or a negative level. Each is raised by this call, before anything runs.

    Example::

        conductor = orchestra.Conductor(
            {
                # Started once it accepts connections on 127.0.0.1:8000; its access log, on
                # stderr, is not a warning.
                "api": orchestra.PlayerSpec(
                    orchestra.run_process(
                        ["./api-server", "--port", "8000"],
                        ready_port=8000,
                        stderr_level=logging.INFO,
                    ),
                    start_timeout=30,
                    restart=orchestra.Restart.ON_FAILURE,
                ),
                "web": web_server,  # declared after it: starts once the API serves
            }
        )

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
    where = f"run_process({described!r})"
    forward = ("stdout" not in options, "stderr" not in options)
    settings = _Settings(
        forward=forward,
        levels=(
            _check_level(stdout_level, "stdout_level", where),
            _check_level(stderr_level, "stderr_level", where),
        ),
        readiness=_check_readiness(where, ready_port, ready_line, ready_notify, forward),
    )
    options.setdefault("start_new_session", True)
    options.setdefault("stdin", subprocess.DEVNULL)  # the terminal's input is not the child's
    for name, forwarded in zip(("stdout", "stderr"), forward, strict=True):
        if forwarded:
            options[name] = subprocess.PIPE

    async def run_process(
        *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
    ) -> None:
        stop = stop_or_never()  # subscribed before spawning: a stop comes as SIGTERM
        own = in_own_task()
        path = current_path("run_process")
        readiness = settings.readiness
        waiter: _Waiter | None = None
        if readiness is not None and readiness.address is not None:
            waiter = _PortWaiter(await _resolve(readiness.address, path))
        elif readiness is not None and readiness.pattern is not None:
            waiter = _LineWatch(readiness.pattern)
        notifying = readiness is not None and readiness.notify
        async with _notify_socket(path) if notifying else contextlib.nullcontext() as notifier:
            spawn = _child_options(options, notifier.address if notifier else None)
            try:
                process = await trio.lowlevel.open_process(command, **spawn)
            except OSError as exc:
                msg = f"player {path!r} cannot run {described!r}: {exc.strerror or exc}"
                raise type(exc)(exc.errno, msg) from exc
            await _supervise(
                process,
                path,
                stop,
                settings,
                waiter=notifier or waiter,
                own=own,
                task_status=task_status,
            )

    run_process.__qualname__ = f"run_process({described})"
    return run_process
