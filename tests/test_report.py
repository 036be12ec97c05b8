"""The renderings of the status tree: exact text, for a tree built by hand."""

from __future__ import annotations

import types

from trio_orchestra import PlayerState, PlayerStatus, events
from trio_orchestra._report import (
    event_line,
    one_line,
    page_html,
    readiness,
    status_json,
    tree_text,
)

S = PlayerState


def node(path: str, state: PlayerState, *children: PlayerStatus, **facts: object) -> PlayerStatus:
    """A status node with *children*."""
    below = types.MappingProxyType({child.path.rpartition("/")[2]: child for child in children})
    return PlayerStatus(path=path, state=state, children=below, **facts)  # type: ignore[arg-type]


WAITING = ("app/jobs/worker is backoff",)
TREE = node(
    "app",
    S.RUNNING,
    node("app/db", S.RUNNING, started_at=10.0),
    node(
        "app/jobs",
        S.RUNNING,
        node(
            "app/jobs/worker",
            S.BACKOFF,
            restarts=2,
            last_error=ValueError("bad row"),
            not_ready=WAITING,
        ),
        started_at=12.0,
        not_ready=WAITING,
    ),
    node("app/migrate", S.DONE),
    not_ready=WAITING,
)


def test_the_terminal_view_aligns_one_line_per_player() -> None:
    """Names indented by depth, states aligned, facts only where they say something."""
    assert tree_text(TREE, now=40.0) == (
        "app running, not ready\n"
        "  db        running   up 30 s\n"
        "  jobs      running   up 28 s\n"
        "    worker  backoff   restarts 2  last error: ValueError: bad row\n"
        "  migrate   done"
    )


def test_readiness_is_what_the_conductor_found() -> None:
    """The renderings read the snapshot's reasons (the conductor decides: test_readiness.py)."""
    assert readiness(TREE) == ["app/jobs/worker is backoff"]
    assert readiness(node("app", S.RUNNING)) == []
    assert one_line(TREE) == "app running: 1 running, 1 backoff, 1 done"


def test_each_event_is_one_short_status_line() -> None:
    """The lines systemd's STATUS= shows."""
    lines = [
        event_line(events.Started(path="a", time=0)),
        event_line(events.Ready(path="a", time=0)),
        event_line(events.Stopping(path="a", time=0, reason=None, deadline=5)),
        event_line(events.Stopped(path="a", time=0)),
        event_line(events.Stopped(path="a", time=0, cut_off=True)),
        event_line(events.Finished(path="a", time=0)),
        event_line(events.Failed(path="a", time=0, error=OSError("gone"), handled=True)),
        event_line(events.Restarting(path="a", time=0, delay=0.5, restarts=3)),
        event_line(events.Straggling(path="a", time=0, where=())),
        event_line(events.RestartLimitExceeded(path="a", time=0, max_restarts=5, period=60)),
        event_line(events.Draining(path="a", time=1, reason="received SIGTERM", until=6)),
    ]
    assert lines == [
        "a starting",
        "a running",
        "a stopping: stop requested",
        "a stopped",
        "a stopped, cut off by its hard cancel",
        "a finished",
        "a failed: OSError: gone",
        "a restarting in 0.5 s (restart 3)",
        "a is stuck after its hard cancel",
        "a gave up: more than 5 restarts in 60 s",
        "a draining for 5 s: received SIGTERM",
    ]


GRAPH = node(
    "app",
    S.RUNNING,
    node("app/db", S.RUNNING),
    node("app/cache", S.RUNNING),
    node("app/web", S.RUNNING, after=("db", "cache")),
    stop_budget=12.5,
)


def test_the_renderings_show_the_graph_and_the_stop_budget() -> None:
    """Each node's edges and the conductor's budget: in the view, the JSON and the page."""
    assert tree_text(GRAPH, now=0.0) == (
        "app running, ready, stop budget 12.5 s\n"
        "  db     running\n"
        "  cache  running\n"
        "  web    running   after db, cache"
    )
    assert '"after": [\n        "db",\n        "cache"\n      ]' in status_json(GRAPH, now=0.0)
    assert '"stop_budget": 12.5' in status_json(GRAPH, now=0.0)
    page = page_html(GRAPH, now=0.0)
    assert "restarts 0, after db, cache</span>" in page
    assert "restarts 0, stop budget 12.5 s</span>" in page


def test_the_page_says_ready_or_not_in_its_title_and_heading_and_links_the_routes() -> None:
    """Title and heading agree with the summary; the last error is labelled; routes linked."""
    page = page_html(TREE, now=40.0)
    assert "<title>app: not ready</title>" in page
    assert '<h1>app <span class="readiness not-ready">not ready</span></h1>' in page
    assert '<p id="summary">not ready: app/jobs/worker is backoff</p>' in page
    assert '<span class="label">last error</span> ValueError: bad row' in page
    for route in ("/status", "/metrics", "/tasks", "/readyz", "/livez"):
        assert f'<a href="{route}">{route}</a>' in page
    ready = page_html(GRAPH, now=0.0)
    assert "<title>app: ready</title>" in ready
    assert '<span class="readiness ready">ready</span>' in ready
