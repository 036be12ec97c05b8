"""The status tree rendered for people and programs: JSON, HTML, text, one line.

Why this module: the health endpoint, systemd's ``STATUS=`` and the demo's terminal view all
show the same snapshot (:meth:`Conductor.status`); each rendering is a pure function of that
snapshot and the current time, so it is tested without a server. The metrics are
prometheus-client's rendering of the same snapshot (:mod:`trio_orchestra._metrics`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping, Sequence

from . import _events as events
from ._lifecycle import PlayerState
from ._status import PlayerStatus

__all__ = [
    "describe_error",
    "event_line",
    "heartbeat_age",
    "one_line",
    "page_html",
    "readiness",
    "status_json",
    "tree_text",
]

_S = PlayerState
#: The health endpoint's machine-readable routes, linked from its page.
_ROUTES = ("/status", "/metrics", "/tasks", "/readyz", "/livez")
#: States in which a player has an uptime: it is started and its task still runs.
_UP = frozenset({_S.RUNNING, _S.STOPPING})
_COLORS = {
    _S.STARTING: "#1565c0",
    _S.RUNNING: "#2e7d32",
    _S.STOPPING: "#ef6c00",
    _S.BACKOFF: "#c62828",
    _S.DONE: "#616161",
    _S.FAILED: "#b71c1c",
}


def describe_error(error: BaseException | None) -> str | None:
    """``"ValueError: bad row"``, or ``None``."""
    if error is None:
        return None
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def uptime(node: PlayerStatus, now: float) -> float | None:
    """Seconds since *node* last became started, while it is started; else ``None``."""
    if node.state not in _UP or node.started_at is None:
        return None
    return max(0.0, now - node.started_at)


def heartbeat_age(node: PlayerStatus, now: float) -> float | None:
    """Seconds *node* has gone without a heartbeat, while it runs with a liveness; else ``None``.

    Counted from its last heartbeat, or from its start before its first one.
    """
    if node.liveness is None or node.state is not _S.RUNNING or node.started_at is None:
        return None
    since = node.started_at
    if node.last_heartbeat is not None and node.last_heartbeat > since:
        since = node.last_heartbeat
    return max(0.0, now - since)


def readiness(tree: PlayerStatus) -> list[str]:
    """Why the tree is not ready, or nothing when it is (see :attr:`PlayerStatus.ready`).

    Ready: the root is started, and every player it counts is running or done (a conductor
    with ``min_ready`` counts that many of its players). The reasons name the players
    themselves, not the conductors above them: the one still starting, the one in backoff.
    """
    return list(tree.not_ready)


def _below(tree: PlayerStatus) -> Iterator[PlayerStatus]:
    walk = tree.walk()
    next(walk)  # the root itself
    return walk


def _node_json(node: PlayerStatus, now: float) -> dict[str, object]:
    return {
        "path": node.path,
        "name": node.path.rpartition("/")[2],
        "state": node.state.value,
        "restarts": node.restarts,
        "ready": node.ready,
        "not_ready": list(node.not_ready),
        "last_error": describe_error(node.last_error),
        "uptime": uptime(node, now),
        "cut_off": node.cut_off,
        "after": list(node.after),
        "stop_budget": node.stop_budget,
        "liveness": node.liveness,
        "last_heartbeat_age": heartbeat_age(node, now),
        "children": [_node_json(child, now) for child in node.children.values()],
    }


def status_json(
    tree: PlayerStatus, now: float, *, reload: Mapping[str, object] | None = None
) -> str:
    """The tree as JSON: each node with its path, state, readiness, restarts, last error, ...

    *reload*, the last reload's outcome (``run(..., reload=True)``), is the root's
    ``"last_reload"``.
    """
    root = _node_json(tree, now)
    if reload is not None:
        root["last_reload"] = dict(reload)
    return json.dumps(root, indent=2) + "\n"


def _node_html(node: PlayerStatus, now: float) -> str:
    name = html.escape(node.path.rpartition("/")[2])
    state = node.state.value
    up = uptime(node, now)
    facts = [f"restarts {node.restarts}"]
    if up is not None:
        facts.append(f"up {up:.0f} s")
    if node.after:
        facts.append("after " + ", ".join(node.after))
    if node.stop_budget is not None:
        facts.append(f"stop budget {node.stop_budget:g} s")
    age = heartbeat_age(node, now)
    if age is not None:
        facts.append(f"heartbeat {age:.0f} s ago (liveness {node.liveness:g} s)")
    if node.cut_off:
        facts.append("cut off at its stop")
    error = describe_error(node.last_error)
    error_html = (
        f'<div class="error"><span class="label">last error</span> {html.escape(error)}</div>'
        if error
        else ""
    )
    children = "".join(_node_html(child, now) for child in node.children.values())
    below = f"<ul>{children}</ul>" if children else ""
    return (
        f'<li data-path="{html.escape(node.path)}" data-state="{state}">'
        f'<span class="name">{name}</span> <span class="state {state}">{state}</span>'
        f' <span class="facts">{html.escape(", ".join(facts))}</span>{error_html}{below}</li>'
    )


_LINKS = "".join(f'<a href="{route}">{route}</a>' for route in _ROUTES)


def page_html(tree: PlayerStatus, now: float, *, refresh: float = 2.0) -> str:
    """A small HTML page of the tree that reloads itself every *refresh* seconds."""
    colors = "".join(
        f".state.{state.value}{{background:{color}}}" for state, color in _COLORS.items()
    )
    waiting = readiness(tree)
    summary = "ready" if not waiting else "not ready: " + "; ".join(waiting)
    word = "ready" if not waiting else "not ready"
    title = html.escape(f"{tree.path}: {word}")
    badge = f'<span class="readiness {"ready" if not waiting else "not-ready"}">{word}</span>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh:g}">
<title>{title}</title>
<style>
body{{font:15px/1.5 system-ui,sans-serif;margin:1.5em;color:#212121}}
ul{{list-style:none;padding-left:1.4em;border-left:1px solid #ddd}}
#tree>ul{{border:0;padding:0}}
.name{{font-weight:600}}
.state{{color:#fff;border-radius:4px;padding:0 .5em;font-size:13px}}
.facts{{color:#757575;font-size:13px}}
.error{{color:#b71c1c;font-family:monospace;font-size:13px}}
.error .label{{font-family:system-ui,sans-serif;font-weight:600}}
nav a{{margin-right:1em;color:#1565c0}}
.readiness{{font-size:15px;font-weight:600;border-radius:4px;padding:.1em .6em}}
.readiness.ready{{color:#2e7d32;border:1px solid #2e7d32}}
.readiness.not-ready{{color:#c62828;border:1px solid #c62828}}
{colors}
</style></head>
<body><h1>{html.escape(tree.path)} {badge}</h1>
<p id="summary">{html.escape(summary)}</p>
<div id="tree"><ul>{_node_html(tree, now)}</ul></div>
<nav>{_LINKS}</nav>
</body></html>
"""


def one_line(tree: PlayerStatus) -> str:
    """A compact summary: ``"app running: 5 running, 1 backoff"``."""
    counts: dict[str, int] = {}
    for node in _below(tree):
        if not node.children:
            counts[node.state.value] = counts.get(node.state.value, 0) + 1
    parts = ", ".join(f"{count} {state}" for state, count in counts.items())
    return f"{tree.path} {tree.state.value}: {parts or 'no players'}"


def event_line(event: events.Event) -> str:
    """One short human line for *event*, as systemd's ``STATUS=`` shows it."""
    if isinstance(event, events.Failed):
        what = f"failed: {describe_error(event.error)}"
    elif isinstance(event, events.Restarting):
        what = f"restarting in {round(event.delay, 2):g} s (restart {event.restarts})"
    elif isinstance(event, events.Stopping):
        what = f"stopping: {event.reason or 'stop requested'}"
    elif isinstance(event, events.RestartLimitExceeded):
        what = f"gave up: more than {event.max_restarts} restarts in {event.period:g} s"
    elif isinstance(event, events.Draining):
        what = f"draining for {event.until - event.time:g} s: {event.reason or 'stop requested'}"
    elif isinstance(event, events.Straggling):
        what = "is stuck after its hard cancel"
    elif isinstance(event, events.Hung):
        what = f"is hung: no heartbeat for {event.silent:.3g} s"
    elif isinstance(event, events.Stopped) and event.cut_off:
        what = "stopped, cut off by its hard cancel"
    else:
        what = _EVENT_WORDS.get(type(event), type(event).__name__.lower())
    return f"{event.path} {what}"


_EVENT_WORDS: dict[type[events.Event], str] = {
    events.Started: "starting",
    events.Ready: "running",
    events.Stopped: "stopped",
    events.Finished: "finished",
}


def tree_text(
    tree: PlayerStatus, now: float, where: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The tree as a few aligned lines of text, for a terminal.

    *where* maps a player's path to where it waits (frame lines, as ``where_stuck`` makes
    them): they are shown under its line, for the tree dump (``SIGUSR1``, ``/tasks``).
    """
    waiting = readiness(tree)
    head = f"{tree.path} {tree.state.value}, {'ready' if not waiting else 'not ready'}"
    if tree.stop_budget is not None:
        head += f", stop budget {tree.stop_budget:g} s"
    rows: list[tuple[str, PlayerStatus, int]] = []

    def add(node: PlayerStatus, depth: int) -> None:
        for child in node.children.values():
            rows.append(("  " * depth + child.path.rpartition("/")[2], child, depth))
            add(child, depth + 1)

    add(tree, 1)
    width = max((len(label) for label, _, _ in rows), default=0)
    lines = [head]
    for label, node, depth in rows:
        lines.append(f"{label:<{width}}  {'  '.join(_facts(node, now))}".rstrip())
        if where is not None:
            lines.extend("  " * (depth + 1) + line.lstrip() for line in where.get(node.path, ()))
    return "\n".join(lines)


def _facts(node: PlayerStatus, now: float) -> list[str]:
    """What one line of :func:`tree_text` says of *node* after its name."""
    facts = [f"{node.state.value:<8}"]
    if node.restarts:
        facts.append(f"restarts {node.restarts}")
    up = uptime(node, now)
    if up is not None:
        facts.append(f"up {up:.0f} s")
    if node.after:
        facts.append("after " + ", ".join(node.after))
    age = heartbeat_age(node, now)
    if age is not None:
        facts.append(f"heartbeat {age:.0f} s ago")
    if node.cut_off:
        facts.append("cut off")
    error = describe_error(node.last_error)
    if error is not None:
        facts.append(f"last error: {error}")
    return facts
