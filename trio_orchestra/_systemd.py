"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING, sent by the runner.

Why this module: under ``Type=notify`` systemd knows a service is up only when it says so, and
with ``WatchdogSec=`` restarts it when it stops saying so. The protocol is a datagram of
``KEY=value`` lines on the AF_UNIX socket named by ``NOTIFY_SOCKET`` (a path, or ``@name`` for
an abstract socket), so it needs no library. With no ``NOTIFY_SOCKET`` nothing here runs.
The watchdog runs on Trio's clock, so a blocked event loop stops it, which is the point.
"""

from __future__ import annotations

import collections
import os
import socket
from collections.abc import Mapping
from typing import final

import trio

from ._logging import library_logger

__all__ = ["SystemdNotifier"]

logger = library_logger()


@final
class SystemdNotifier:
    """Sends notifications to the service manager's socket, from a task of its own.

    :meth:`send` and :meth:`status` are synchronous (they are called from event hooks): they
    queue the message and wake the sender, which never blocks the event loop and never loses
    a message to a full socket queue (the kernel keeps only a few datagrams for a slow reader:
    the sender waits for room instead). ``STATUS=`` lines are coalesced: a burst of state
    changes sends only the latest one. A failed send is logged once, never raised.
    """

    def __init__(self, address: str, watchdog_interval: float | None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_interval
        self._outbox: collections.deque[str] = collections.deque()
        self._status: str | None = None
        self._wake = trio.Event()
        self._closing = False
        self._done = trio.Event()
        self._running = False
        self._connected = False
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """The notifier that ``NOTIFY_SOCKET`` asks for, or ``None`` when it is unset.

        The watchdog interval is half of ``WATCHDOG_USEC``, when that is set and
        ``WATCHDOG_PID`` is unset or this process's pid (as ``sd_watchdog_enabled`` does).
        """
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        if not name:
            return None
        if name.startswith("@"):
            address = "\0" + name[1:]  # an abstract socket: no file, a leading NUL byte
        elif name.startswith("/"):
            address = name
        else:
            logger.warning("NOTIFY_SOCKET=%r is not a socket path or @name; not notifying", name)
            return None
        return cls(address, _watchdog_interval(env))

    def send(self, *lines: str) -> None:
        """Queue one datagram of ``KEY=value`` *lines*."""
        self._outbox.append("\n".join(lines))
        self._wake.set()

    def status(self, text: str) -> None:
        """Queue a short human ``STATUS=`` line (one line: newlines become spaces)."""
        self._status = "STATUS=" + " ".join(text.split())
        self._wake.set()

    async def run(self) -> None:
        """Send what is queued, and ``WATCHDOG=1`` every interval, until :meth:`close`."""
        self._running = True
        try:
            with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                async with trio.open_nursery() as nursery:
                    if self.watchdog_interval is not None:
                        nursery.start_soon(self._watchdog, self.watchdog_interval)
                    while True:
                        await self._wake.wait()
                        self._wake = trio.Event()
                        await self._flush(sock)
                        if self._closing:
                            break
                    nursery.cancel_scope.cancel()
        finally:
            self._done.set()

    async def close(self) -> None:
        """Send what is still queued, then end :meth:`run` (at once if it never ran)."""
        self._closing = True
        self._wake.set()
        if self._running:
            await self._done.wait()

    async def _watchdog(self, interval: float) -> None:
        # On Trio's clock: a blocked event loop stops the pings, which is the point.
        while True:
            self.send("WATCHDOG=1")
            await trio.sleep(interval)

    async def _flush(self, sock: trio.socket.SocketType) -> None:
        while self._outbox or self._status is not None:
            if self._outbox:
                message = self._outbox.popleft()
            else:
                message, self._status = self._status or "", None
            try:
                if not self._connected:
                    # Connected, a datagram socket waits for room in the peer's queue; not
                    # connected, poll says "writable" while sendto fails: a busy loop.
                    await sock.connect(self.address)
                    self._connected = True
                await sock.send(message.encode(errors="replace"))
            except Exception as exc:  # noqa: BLE001 - a notification never takes the service down
                if not self._warned:
                    self._warned = True
                    logger.warning("cannot notify systemd through NOTIFY_SOCKET: %s", exc)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is another process's (we were started by it)
    try:
        microseconds = int(usec)
    except ValueError:
        return None
    return microseconds / 2e6 if microseconds > 0 else None
