"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING, sent by the runner.

Why this module: under ``Type=notify`` systemd knows a service is up only when it says so, and
with ``WatchdogSec=`` restarts it when it stops saying so. The protocol is a datagram of
``KEY=value`` lines on the AF_UNIX socket named by ``NOTIFY_SOCKET`` (a path, or ``@name`` for
an abstract socket), so it needs no library. With no ``NOTIFY_SOCKET`` nothing here runs.
The watchdog runs on Trio's clock, so a blocked event loop stops it, which is the point.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import NoReturn, final

import trio

__all__ = ["SystemdNotifier"]

logger = logging.getLogger("trio_orchestra")


@final
class SystemdNotifier:
    """Sends notifications to the service manager's socket; never raises for a failed send."""

    def __init__(self, address: str, watchdog_interval: float | None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_interval
        self._socket: socket.socket | None = None
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
        """Send one datagram of ``KEY=value`` *lines*; a failure is logged once, not raised."""
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)  # noqa: FBT003 - the socket API's own flag
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot notify systemd through NOTIFY_SOCKET: %s", exc)

    def status(self, text: str) -> None:
        """Send a short human ``STATUS=`` line (one line: newlines become spaces)."""
        self.send("STATUS=" + " ".join(text.split()))

    async def watchdog(self) -> NoReturn:
        """Send ``WATCHDOG=1`` every interval, on Trio's clock, until cancelled."""
        interval = self.watchdog_interval
        if interval is None:
            await trio.sleep_forever()
        while True:
            self.send("WATCHDOG=1")
            await trio.sleep(interval)

    def close(self) -> None:
        """Close the socket (sending again reopens it)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


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
