"""``python -m trio_orchestra top [URL]``: a live terminal view of a running program's tree.

Why this module: the person who runs a program wants to see its tree move (a player restarting,
a stop going through the graph) in the terminal next to it, without a browser. ``top`` reads
the health endpoint's ``/status`` once a second and draws the tree with rich (the optional
``top`` extra): each player's state in the colour the page uses, restarts, uptime, heartbeat
age, what it is after and its last error. A program that goes away (stopped, restarting) is
said so, with the last tree seen, and ``top`` keeps trying until it answers again. ``q`` or
Ctrl-C quits.

It imports rich: the command line imports this module only once it has checked that rich is
installed. It is a plain loop, not a Trio program: one HTTP GET (the standard library's
:mod:`urllib.request`, never through a proxy) per refresh, then a wait for a key on the
terminal, which is in cbreak mode (keys come one at a time, Ctrl-C still interrupts) while
``top`` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Iterator
from typing import Any

import attrs
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["DEFAULT_URL", "Seen", "main", "render", "status_url"]

#: Where ``top`` looks when no URL is given: the demo's, and the docs' default health address.
DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds an HTTP request may take before ``top`` counts the program as unreachable.
TIMEOUT = 2.0
#: The states' colours, as on the status page (``_report._COLORS``).
STYLES = {
    "starting": "bold #1e88e5",
    "running": "bold #43a047",
    "stopping": "bold #fb8c00",
    "backoff": "bold #e53935",
    "done": "#9e9e9e",
    "failed": "bold #ff1744",
}
_QUIT_KEYS = frozenset(b"qQ")

Node = dict[str, Any]  # one node of /status's JSON


def status_url(url: str) -> str:
    """The ``/status`` URL of the health endpoint at *url* (``http://`` may be left out).

    >>> status_url("127.0.0.1:8080")
    'http://127.0.0.1:8080/status'
    """
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        msg = f"{url!r} is not an http:// URL of a health endpoint"
        raise ValueError(msg)
    path = parts.path.rstrip("/")
    if not path.endswith("/status"):
        path += "/status"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


#: No proxy, whatever the environment says: a health endpoint is asked directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, timeout: float = TIMEOUT) -> Node:
    """GET *url* and return its JSON tree; :class:`OSError` or :class:`ValueError` if not."""
    with _OPENER.open(url, timeout=timeout) as response:
        tree: object = json.load(response)
    if not isinstance(tree, dict) or "path" not in tree or "children" not in tree:
        msg = "the answer is not a status tree"
        raise ValueError(msg)
    return tree  # pyright: ignore[reportUnknownVariableType] - JSON: checked above


def describe_failure(error: BaseException) -> str:
    """A few words on why *url* did not answer: ``connection refused``, ``timed out``, ..."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    reason: object = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the program running?)"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


@attrs.define
class Seen:
    """What ``top`` knows of the program: its last tree, and since when it is unreachable."""

    url: str
    tree: Node | None = None
    seen_at: float | None = None  # wall-clock time of the last answer
    error: str | None = None  # why the last try failed; None when it answered
    down_since: float | None = None
    answers: int = 0

    def answered(self, tree: Node, now: float) -> None:
        """The program answered *tree* at *now*."""
        self.tree, self.seen_at, self.error, self.down_since = tree, now, None, None
        self.answers += 1

    def failed(self, error: str, now: float) -> None:
        """The program did not answer at *now*, for the reason *error*."""
        self.error = error
        if self.down_since is None:
            self.down_since = now


def duration(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``; empty for ``None``."""
    if seconds is None:
        return ""
    whole = int(seconds)
    if whole < 60:  # noqa: PLR2004 - a minute
        return f"{whole} s"
    if whole < 3600:  # noqa: PLR2004 - an hour
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def _rows(node: Node, depth: int = 0) -> Iterator[tuple[int, Node]]:
    yield depth, node
    for child in node["children"]:
        yield from _rows(child, depth + 1)


def render(seen: Seen, now: float, interval: float = 1.0) -> RenderableType:
    """The screen for what *seen* knows at *now* (wall-clock time): head, tree, foot."""
    tree = seen.tree
    head = Text.assemble(("trio-orchestra top ", "bold"), (seen.url, "cyan"))
    if tree is not None:
        ready = not tree["not_ready"]
        head.append("  ")
        stale = seen.error is not None
        head.append(
            f"{tree['path']} {tree['state']}", "" if stale else STYLES.get(tree["state"], "")
        )
        head.append(", ")
        head.append(
            "ready" if ready else "not ready", "" if stale else "green" if ready else "bold red"
        )
        if tree.get("stop_budget") is not None:
            head.append(f", stop budget {tree['stop_budget']:g} s")
    head.append(f"  {_clock(now)}", "dim")
    parts: list[RenderableType] = [head]
    if seen.error is not None:
        since = seen.down_since if seen.down_since is not None else now
        parts.append(Text(f"cannot reach the program: {seen.error}", "bold red"))
        down = (
            f"down since {_clock(since)} ({duration(now - since)}); retrying every {interval:g} s"
        )
        parts.append(Text(down, "red"))
        if seen.seen_at is not None:
            parts.append(Text(f"the tree as last seen at {_clock(seen.seen_at)}:", "dim"))
    if tree is None:
        parts.append(Text("waiting for the first answer ...", "dim"))
    else:
        parts.append(_table(tree, stale=seen.error is not None))
        if tree["not_ready"]:
            parts.append(Text("not ready: " + "; ".join(tree["not_ready"]), "yellow"))
    parts.append(Text("q or Ctrl-C to quit", "dim"))
    return Group(*parts)


def _table(tree: Node, *, stale: bool) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", style="dim" if stale else "")
    table.add_column("player", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("restarts", justify="right")
    table.add_column("uptime", justify="right", no_wrap=True)
    table.add_column("heartbeat", justify="right", no_wrap=True)
    table.add_column("after")
    table.add_column("last error", overflow="fold", ratio=1)
    for depth, node in _rows(tree):
        state = node["state"]
        age = node.get("last_heartbeat_age")
        error = node.get("last_error")
        table.add_row(
            "  " * depth + (node["path"] if depth == 0 else node["name"]),
            Text(state, "dim" if stale else STYLES.get(state, "")),
            str(node["restarts"]) if depth else "",
            duration(node.get("uptime")),
            "" if age is None else f"{duration(age)} ago",
            ", ".join(node.get("after", ())),
            Text(error, "red") if error else "",
        )
    return table


@contextlib.contextmanager
def _keys(stream: Any) -> Generator[Callable[[float], bytes], None, None]:  # noqa: ANN401 - a file
    """Read keys from *stream* one at a time (cbreak mode) while inside, if it is a terminal.

    Yields ``wait(seconds)``: the keys typed within *seconds* (``b""`` if none).
    """
    fd = -1
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fd = stream.fileno()
    if fd < 0 or not os.isatty(fd) or sys.platform == "win32":

        def sleep(seconds: float) -> bytes:
            time.sleep(seconds)
            return b""

        yield sleep
        return
    import termios  # noqa: PLC0415 - POSIX only
    import tty  # noqa: PLC0415

    saved = termios.tcgetattr(fd)

    def wait(seconds: float) -> bytes:
        readable, _, _ = select.select([fd], [], [], seconds)
        return os.read(fd, 32) if readable else b""

    tty.setcbreak(fd)
    try:
        yield wait
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def main(url: str = DEFAULT_URL, *, interval: float = 1.0) -> int:
    """Show the tree at *url* until ``q`` or Ctrl-C; return the exit status (0)."""
    target = status_url(url)
    seen = Seen(url=target.removesuffix("/status"))
    console = Console()
    try:
        with (
            _keys(sys.stdin) as wait,
            Live(console=console, screen=True, auto_refresh=False) as live,
        ):
            while True:
                try:
                    seen.answered(fetch(target), time.time())
                except (OSError, ValueError) as exc:
                    seen.failed(describe_failure(exc), time.time())
                live.update(render(seen, time.time(), interval), refresh=True)
                deadline = time.monotonic() + interval
                while (left := deadline - time.monotonic()) > 0:
                    if _QUIT_KEYS.intersection(wait(left)):
                        return 0
    except KeyboardInterrupt:
        return 0
