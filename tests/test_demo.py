"""The demo stops well (contract s. 5); its /hang and /block show the liveness tools (s. 11)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_orchestra as orchestra
from trio_orchestra import _demo, events
from trio_orchestra._demo import (
    BLOCK_SECONDS,
    BLOCKED_AFTER,
    DEFAULT_CONFIG,
    DRAIN,
    HELLO,
    JOB_SECONDS,
    LIVENESS,
    STOP_WITHIN,
    DemoConfig,
    DemoTree,
    Trouble,
    banner,
    database,
    demo_conductor,
    flaky,
    hello,
    jobs_conductor,
    worker,
    write_config,
)
from trio_orchestra.testing import background


def test_the_tree_is_a_graph_whose_stop_fits_in_the_runners_deadline() -> None:
    """The tree: db and cache depend on nothing; jobs on db; web on both; flaky on nothing.

    Nothing is after flaky, so it is in the first wave of the stop: its token is set in the
    call that begins the stop. The drain and the stop budget fit in ``STOP_WITHIN``.
    """
    conductor = demo_conductor("127.0.0.1:0")
    tree = conductor.status()
    assert {name: node.after for name, node in tree.children.items()} == {
        "db": (),
        "cache": (),
        "jobs": ("db",),
        "web": ("db", "cache"),
        "flaky": (),
    }
    assert not any("flaky" in node.after for node in tree.children.values())
    assert conductor.stop_order == "sequential"
    assert conductor.strategy == "rest_for_one"
    assert conductor.stop_budget() == tree.stop_budget == 8  # web 5 s, then cache 3 s
    assert DRAIN + conductor.stop_budget() <= STOP_WITHIN


async def test_flaky_returns_cleanly_when_stopped_just_before_it_would_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stop a hair before flaky's failure is a clean return, not a failure."""
    fails_at = random.Random(7).uniform(5, 15)
    conductor = orchestra.Conductor({"flaky": orchestra.PlayerSpec(flaky, random.Random(7))})
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        await trio.sleep(fails_at - 1e-6)
        conductor.stop("test")
    node = conductor.status().children["flaky"]
    assert node.state is orchestra.PlayerState.DONE
    assert node.last_error is None


@pytest.mark.parametrize("stop_after", [0.0, 0.4, 1.0, 1.6, 3.3, 7.77])
async def test_the_workers_take_no_job_once_the_pool_is_stopping(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, stop_after: float
) -> None:
    """Every worker hears the stop at once, finishes the job in hand, takes no new one."""
    conductor = jobs_conductor()
    assert conductor.stop_order == "parallel"
    taken: list[float] = []

    class Taken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "working on job" in record.getMessage():
                taken.append(trio.current_time())

    handler = Taken()
    demo_logger = logging.getLogger("trio_orchestra.demo")
    demo_logger.addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            async with trio.open_nursery() as nursery:
                await nursery.start(conductor)
                await trio.sleep(stop_after)
                stopped_at = trio.current_time()
                conductor.stop("test")
            done_at = trio.current_time()
    finally:
        demo_logger.removeHandler(handler)
    assert taken  # the workers took jobs before the stop, at once from the start
    assert max(taken) <= stopped_at
    assert done_at - stopped_at <= JOB_SECONDS  # the job in hand, no more
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "cut off" in m or "failed" in m], messages
    states = {node.state for node in conductor.status().children.values()}
    assert states == {orchestra.PlayerState.DONE}


def test_the_banner_points_to_the_health_page_the_tools_the_reload_and_the_live_view() -> None:
    """The demo's first lines: the graph, where it is shown, the tools, the reload, the stop."""
    text = banner("127.0.0.1:8000", "127.0.0.1:8080", "conf/demo.json", pid=4242)
    assert "http://127.0.0.1:8080/" in text
    assert "/status" in text
    assert "/readyz" in text
    assert "/tasks" in text
    assert "http://127.0.0.1:8000/  /hang: a worker hangs" in text
    assert "/block: a worker blocks the event loop" in text
    assert "kill -USR1 4242" in text
    assert "reload       edit conf/demo.json (workers, hello), then kill -HUP 4242" in text
    assert f"kill -USR1 {os.getpid()}" in banner("127.0.0.1:8000", "127.0.0.1:8080", "c.json")
    assert "python -m trio_orchestra top" in text
    assert "Ctrl-C once: 2 s of draining (/readyz 503)" in text
    assert "db and cache, then jobs (after db) and web (after both)" in text
    assert len(text.splitlines()) <= 10
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "PORT/ (port 0" in banner("127.0.0.1:0", "[::1]:0", "c.json")


def test_the_banner_offers_no_signal_the_platform_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows there is no SIGHUP nor SIGUSR1: no reload or tree dump line then."""
    monkeypatch.setattr(_demo, "RELOAD_SIGNAL", None)
    monkeypatch.setattr(_demo, "DUMP_SIGNAL", None)
    text = banner("127.0.0.1:8000", "127.0.0.1:8080", "conf/demo.json", pid=4242)
    assert "kill" not in text
    assert "live view" in text


# -- the configuration and the reload (s. 12) --------------------------------------------------


def test_a_reload_with_an_unchanged_config_changes_nothing(tmp_path: Path) -> None:
    """The factory called twice on the same file: every spec equal, so the update is a no-op."""
    config = tmp_path / "demo.json"
    write_config(config)
    tree = DemoTree("127.0.0.1:0", config)
    first, second = tree(), tree()
    assert first is not second
    assert first.players == second.players  # the same callables, equal arguments and options
    assert first._same_options(second)  # the root's options too: no warning on a reload


def test_a_new_number_of_workers_gives_a_pool_to_update_and_a_new_hello_a_new_server(
    tmp_path: Path,
) -> None:
    """Workers 2 -> 3: a new jobs conductor of the same options; a new text: a new web server."""
    config = tmp_path / "demo.json"
    write_config(config)
    tree = DemoTree("127.0.0.1:0", config)
    before = tree()
    write_config(config, DemoConfig(workers=3, hello="hello again"))
    after = tree()
    changed = {name for name, spec in after.players.items() if spec != before.players[name]}
    assert changed == {"jobs", "web"}
    old_pool, new_pool = before.players["jobs"].fn, after.players["jobs"].fn
    assert isinstance(old_pool, orchestra.Conductor)
    assert isinstance(new_pool, orchestra.Conductor)
    assert new_pool._same_options(old_pool)  # so the running pool is updated, not restarted
    assert list(new_pool.players) == ["queue-feeder", "worker-1", "worker-2", "worker-3", "report"]
    assert {
        name: spec == old_pool.players[name]
        for name, spec in new_pool.players.items()
        if name in old_pool.players
    } == {"queue-feeder": True, "worker-1": True, "worker-2": True, "report": True}
    web = (before.players["web"], after.players["web"])
    assert web[0].fn is not web[1].fn
    assert (web[0].after, web[0].grace) == (web[1].after, web[1].grace)


async def test_the_running_pool_gets_a_third_worker_then_keeps_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Updated to 3 workers at 5: worker-3 starts at once; to 1 at 10: two leave, 1 stays.

    The two removed finish the job in hand (within 1.5 s); the unchanged ones never restart.
    """
    tree = DemoTree()
    seen: list[events.Event] = []
    root = orchestra.Conductor(
        {"jobs": orchestra.PlayerSpec(tree.jobs(2))}, name="demo", on_event=seen.append
    )
    async with background(root) as run:
        await trio.sleep(5)
        await run.conductor.update({"jobs": orchestra.PlayerSpec(tree.jobs(3))})
        assert trio.current_time() == 5
        await trio.sleep(5)
        await run.conductor.update({"jobs": orchestra.PlayerSpec(tree.jobs(1))})
        assert 10 <= trio.current_time() <= 10 + JOB_SECONDS
        nodes = run.conductor.status().children["jobs"].children
        assert list(nodes) == ["queue-feeder", "worker-1", "report"]
        assert {node.restarts for node in nodes.values()} == {0}
        assert await run.stop() is None
    started = [(e.path, e.time) for e in seen if isinstance(e, events.Ready)]
    assert ("demo/jobs/worker-3", 5) in started
    assert [p for p, _ in started].count("demo/jobs/worker-1") == 1  # never restarted
    updated = [(e.path, e.added, e.removed) for e in seen if isinstance(e, events.Updated)]
    assert updated == [
        ("demo/jobs", ("worker-3",), ()),
        ("demo", (), ()),
        ("demo/jobs", (), ("worker-3", "worker-2")),
        ("demo", (), ()),
    ]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", r" is not JSON: .*"),
        ("[2]", r' must be a JSON object, like \{"workers": 2, "hello": "hello from .*"\}'),
        ('{"worker": 3}', r" has unknown keys \['worker'\]; it sets 'workers' and 'hello'"),
        ('{"workers": 9}', r": 'workers' must be 0 to 8, not 9"),
        ('{"workers": true}', r": 'workers' must be 0 to 8, not True"),
        ('{"hello": ""}', r": 'hello' must be one line of text, not ''"),
    ],
)
def test_a_wrong_config_is_one_sentence_naming_the_file(
    tmp_path: Path, text: str, why: str
) -> None:
    """JSON errors, unknown keys, out-of-range values: a ValueError naming the file."""
    config = tmp_path / "demo.json"
    config.write_text(text)
    with pytest.raises(
        ValueError, match=rf"^the demo's configuration {re.escape(str(config))}{why}$"
    ):
        DemoConfig.read(config)


def test_a_partial_config_takes_the_defaults_for_the_rest(tmp_path: Path) -> None:
    """``{"workers": 0}`` keeps the hello text; the defaults are what the demo writes."""
    config = tmp_path / "demo.json"
    config.write_text('{"workers": 0}')
    assert DemoConfig.read(config) == DemoConfig(workers=0, hello=HELLO)
    write_config(config)
    assert json.loads(config.read_text()) == DEFAULT_CONFIG == {"workers": 2, "hello": HELLO}


async def test_the_hello_text_comes_from_the_config(autojump_clock: trio.testing.MockClock) -> None:
    """The web app of a tree built from ``hello: "hi there"`` answers with it."""
    tree = DemoTree()
    server = tree.server("hi there")
    assert tree.server("hi there") is server
    assert tree.server("other") is not server
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        sent.append(message)

    await hello(tree.trouble, {"type": "http", "path": "/x"}, receive, send, greeting="hi there")
    assert sent[1]["body"] == b"hi there: you asked for /x\n"


async def test_the_database_is_up_after_its_connect_and_closes_on_its_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The database is started 0.5 s in; asked to stop, it takes 0.5 s to close, and returns."""
    conductor = orchestra.Conductor({"db": database})
    async with trio.open_nursery() as nursery:
        await nursery.start(conductor)
        assert trio.current_time() == 0.5
        conductor.stop("test")
    assert trio.current_time() == 1
    assert conductor.status().children["db"].state is orchestra.PlayerState.DONE


# -- /hang and /block: the liveness tools on the demo (s. 11) ---------------------------------


async def ask(trouble: Trouble, path: str) -> str:
    """GET *path* from the demo's web app, called as hypercorn calls it; the body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        sent.append(message)

    await hello(trouble, {"type": "http", "path": path}, receive, send)
    assert sent[0]["status"] == 200
    body: bytes = sent[1]["body"]
    return body.decode()


def timeline(seen: list[events.Event], *kinds: type[events.Event]) -> list[tuple[str, float]]:
    """(event name, time) of the events of those *kinds*, in order."""
    return [(type(e).__name__, e.time) for e in seen if isinstance(e, kinds)]


async def test_hang_makes_the_next_jobs_worker_hung_and_it_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """/hang at 4.5: job 6 (at 5) never ends; found hung at 10, cut at 13, restarted at 14.

    Two workers, 1.5 s jobs, one job a second: each job is taken as it comes, at 0, 1, 2, ...
    The worker beats as it takes job 6, at 5; the pool's one liveness check runs every 5 s
    (at 5, 10, ...): at 10 it has been silent for 5 s, its liveness. Its soft phase is the
    pool's grace (3 s), which a call with no timeout ignores; then the backoff, 1 s.
    """
    trouble = Trouble()
    seen: list[events.Event] = []
    root = orchestra.Conductor({"jobs": jobs_conductor(trouble)}, name="demo", on_event=seen.append)
    async with background(root) as run:
        await trio.sleep(4.5)
        answer = await ask(trouble, "/hang")
        assert trio.current_time() == 4.7
        assert answer.startswith("the next job makes its worker wait forever")
        await trio.sleep(30 - 4.7)
        hung = [e for e in seen if isinstance(e, events.Hung)]
        assert [(e.time, e.silent, e.liveness) for e in hung] == [(10, 5, LIVENESS)]
        path = hung[0].path
        assert path in {"demo/jobs/worker-1", "demo/jobs/worker-2"}
        assert any(
            "_demo.py:" in line and "in call_with_no_timeout" in line for line in hung[0].where
        )
        mine = [e for e in seen if e.path == path]
        kinds = (events.Hung, events.Stopping, events.Failed, events.Restarting, events.Ready)
        assert timeline(mine, *kinds)[1:] == [  # after its first Ready, at 0
            ("Hung", 10),
            ("Stopping", 10),
            ("Failed", 13),
            ("Restarting", 13),
            ("Ready", 14),
        ]
        failed = next(e for e in mine if isinstance(e, events.Failed))
        assert isinstance(failed.error, orchestra.PlayerHung)
        assert failed.handled
        node = run.conductor.status().children["jobs"].children[path.rpartition("/")[2]]
        assert (node.state, node.restarts) == (orchestra.PlayerState.RUNNING, 1)
        assert isinstance(node.last_error, orchestra.PlayerHung)
        assert await run.stop() is None  # the one-Ctrl-C stop is still clean


async def test_a_hang_is_one_job_only_and_the_other_worker_is_never_hung(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two /hang requests hang two jobs, no more; over 120 s nothing else is found hung."""
    trouble = Trouble()
    seen: list[events.Event] = []
    root = orchestra.Conductor({"jobs": jobs_conductor(trouble)}, name="demo", on_event=seen.append)
    async with background(root) as run:
        await trio.sleep(4.5)
        await ask(trouble, "/hang")
        await trio.sleep(20)
        await ask(trouble, "/hang")
        await trio.sleep(100)
        assert (trouble.hangs, len([e for e in seen if isinstance(e, events.Hung)])) == (0, 2)
        nodes = run.conductor.status().children["jobs"].children
        assert nodes["worker-1"].restarts + nodes["worker-2"].restarts == 2
        assert {node.state for node in nodes.values()} == {orchestra.PlayerState.RUNNING}
        assert await run.stop() is None


async def test_hang_after_hang_exceeds_the_pools_intensity_and_the_demo_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every job hangs: six hangs in 30 s; the sixth restart would exceed 5 in 60 s.

    The workers hang on jobs taken at 0 and 1; one check every 5 s finds one at 5, 10, ...,
    30. Each is cut at its grace (3 s) and restarted after its backoff (1, 2, 4 s). The
    sixth hang's failure, at 33, exceeds the pool's intensity: the pool gives up, and so does
    the demo's tree, since ``jobs`` is not restarted (``Restart.NEVER``).
    """
    trouble = Trouble()
    trouble.hangs = 100
    seen: list[events.Event] = []
    root = orchestra.Conductor({"jobs": jobs_conductor(trouble)}, name="demo", on_event=seen.append)
    async with background(root) as run:
        error = await run.wait_stopped()
    assert [e.time for e in seen if isinstance(e, events.Hung)] == [5, 10, 15, 20, 25, 30]
    limit = [e for e in seen if isinstance(e, events.RestartLimitExceeded)]
    assert [e.time for e in limit] == [33]
    assert error is not None
    assert trio.current_time() == 36  # the other worker, hung again, gets its grace
    assert list(error.failures) == [limit[0].path]  # the one whose restart was refused
    assert isinstance(error.failures[limit[0].path], orchestra.PlayerHung)


async def test_a_worker_waiting_for_a_job_beats_and_is_not_hung(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An empty queue for 60 s: the worker beats every second while it waits."""
    _, receive = trio.open_memory_channel[int](10)
    spec = orchestra.PlayerSpec(worker, "w", receive, _demo._Tally(), Trouble(), liveness=LIVENESS)
    seen: list[events.Event] = []
    async with background(orchestra.Conductor({"w": spec}, on_event=seen.append)) as run:
        await trio.sleep(60.5)
        assert run.conductor.status().children["w"].last_heartbeat == 60
        assert await run.stop() is None
    assert not [e for e in seen if isinstance(e, events.Hung)]


async def test_block_makes_the_next_jobs_worker_run_blocking_code(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/block at 4.5: the worker taking job 6, at 5, runs the blocking call, then goes on.

    (The real call is time.sleep(2), which a mock clock cannot show: the test of the demo's
    process in tests/test_demo.py sees the watchdog name it.)
    """
    calls: list[float] = []
    monkeypatch.setattr(_demo, "blocking_work", lambda: calls.append(trio.current_time()))
    trouble = Trouble()
    root = orchestra.Conductor({"jobs": jobs_conductor(trouble)}, name="demo")
    async with background(root) as run:
        await trio.sleep(4.5)
        answer = await ask(trouble, "/block")
        assert answer == (
            "the next job makes its worker call time.sleep(2), blocking the event loop:"
            " blocked_after (1 s) names the worker and the line\n"
        )
        await trio.sleep(10)
        assert calls == [5]
        assert await run.stop() is None


async def test_other_paths_get_the_hello_line(autojump_clock: trio.testing.MockClock) -> None:
    """Anything but /hang and /block is answered as before, and asks nothing of the workers."""
    trouble = Trouble()
    assert await ask(trouble, "/hello") == "hello from trio-orchestra: you asked for /hello\n"
    assert trouble.take() is None


def test_the_liveness_covers_a_job_and_a_blocked_loop() -> None:
    """A worker is silent for a job at most; a blocked loop silences it too: both fit."""
    assert JOB_SECONDS + BLOCK_SECONDS < LIVENESS
    assert BLOCK_SECONDS > BLOCKED_AFTER
    workers = jobs_conductor().status().children
    assert {workers[name].liveness for name in ("worker-1", "worker-2")} == {LIVENESS}
    assert workers["queue-feeder"].liveness is None


# -- the demo as a process: /block and /hang over loopback -------------------------------------

#: Seconds the process test waits for any one line of the demo's log.
PATIENCE = 30.0


class DemoLog:
    """The stderr of a demo process, written to a file, read as it grows."""

    def __init__(self, path: Path) -> None:
        """Read *path*."""
        self.path = path

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of the regex *pattern* in the log, once it is there."""
        deadline = time.monotonic() + PATIENCE
        while True:
            text = self.path.read_text(encoding="utf-8")
            found = re.search(pattern, text, re.MULTILINE)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                msg = f"no {pattern!r} in the demo's log after {PATIENCE} s:\n{text}"
                raise AssertionError(msg)
            time.sleep(0.05)


def get(url: str) -> str:
    """The body of a GET of *url* (loopback only)."""
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - ours, loopback
        body: bytes = answer.read()
    return body.decode()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_demo_process_names_a_blocked_loop_and_finds_a_hung_worker(tmp_path: Path) -> None:
    """/block: the watchdog's two warnings name the worker and the line; /hang: a hung worker.

    Then /tasks shows the tree with where each player waits, and one SIGINT stops it, exit 0.
    """
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trio_orchestra",
                "demo",
                "--health",
                "127.0.0.1:0",
                "--web",
                "127.0.0.1:0",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        log = DemoLog(err_path)
        health = log.wait_for(r"health endpoint on (http://\S+/)$").group(1)
        web = log.wait_for(r"Running on (http://\S+) ").group(1)
        log.wait_for(r"player demo/web started$")
        assert get(web + "/block").startswith("the next job makes its worker call time.sleep(2)")
        first = log.wait_for(r"WARNING trio_orchestra: the event loop has been blocked .*$")
        assert re.fullmatch(
            r"WARNING trio_orchestra: the event loop has been blocked for 1 s by player"
            r" demo/jobs/worker-[12], at \S+_demo\.py:\d+ in blocking_work:"
            r" time\.sleep\(BLOCK_SECONDS\)",
            first.group(0),
        )
        again = log.wait_for(r"the event loop runs again after about ([\d.]+) s blocked by (.*)$")
        assert 1.5 <= float(again.group(1)) < 5
        assert again.group(2).startswith("player demo/jobs/worker-")
        assert get(web + "/hang").startswith("the next job makes its worker wait forever")
        hung = log.wait_for(
            r"WARNING trio_orchestra: player (demo/jobs/worker-[12]) is hung: no heartbeat for"
            r" ([\d.]+) s \(its liveness is 5 s\); stuck at:\n(  .*\n)+"
        )
        assert 5 <= float(hung.group(2)) <= 10 + 1  # one check period, and a loaded machine
        assert "in call_with_no_timeout" in hung.group(0)
        log.wait_for(rf"player {hung.group(1)} restarting in 1 s \(restart 1\)")
        tasks = get(health + "tasks")
        assert tasks.startswith("demo running")
        assert re.search(r"^    worker-[12] +running .*heartbeat \d+ s ago", tasks, re.MULTILINE)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=PATIENCE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = err_path.read_text(encoding="utf-8")
    for sign in ("Traceback", "ERROR"):
        assert sign not in text, text


class Client:
    """GET a URL in a loop on a thread, each on a new connection, until told to stop."""

    def __init__(self, url: str) -> None:
        """Start asking *url* (loopback only)."""
        self.url = url
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.is_set():
            self._ask()

    def _ask(self) -> None:
        try:
            self.answers.append(get(self.url))
        except OSError as exc:  # a refused connection, a reset, a timeout
            self.failures.append(repr(exc))

    def wait_answers(self, count: int) -> None:
        """Return once *count* requests have been answered."""
        deadline = time.monotonic() + PATIENCE
        while len(self.answers) < count:
            assert time.monotonic() < deadline, self.failures
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask no more; return once the request in flight is answered."""
        self._done.set()
        self._thread.join(timeout=PATIENCE)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_demo_process_reloads_its_changed_config_on_sighup_refusing_nothing(
    tmp_path: Path,
) -> None:
    """A third worker and a new hello on SIGHUP; a client in a loop meanwhile: no failure.

    ``--config`` names a missing file: the demo writes the defaults there. Under
    rest_for_one a reload is refused while flaky waits in backoff (a group restart of one):
    then the test sends SIGHUP again. One SIGINT then stops it, exit 0.
    """
    config = tmp_path / "demo.json"
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "trio_orchestra",
                "demo",
                "--health",
                "127.0.0.1:0",
                "--web",
                "127.0.0.1:0",
                "--config",
                str(config),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )
    client: Client | None = None
    try:
        log = DemoLog(err_path)
        web = log.wait_for(r"Running on (http://\S+) ").group(1)
        log.wait_for(r"player demo/web started$")
        assert json.loads(config.read_text()) == DEFAULT_CONFIG
        client = Client(web + "/hi")
        write_config(config, DemoConfig(workers=3, hello="hello again"))
        client.wait_answers(3)
        updated = "INFO    trio_orchestra: conductor demo updated: restarts web (fn); updates jobs"
        for attempt in itertools.count(1):
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + PATIENCE
            while updated not in (text := err_path.read_text(encoding="utf-8")):
                if text.count("the reload failed") == attempt:
                    assert "is restarting a group of players" in text.splitlines()[-1], text
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.05)
            else:
                break
            assert attempt < 20, text  # flaky waits 8 s in backoff at most
            time.sleep(0.5)
        log.wait_for(r"conductor demo/jobs updated: adds worker-3$")
        log.wait_for(r"player demo/jobs/worker-3 started$")
        assert get(web + "/hi") == "hello again: you asked for /hi\n"
        client.stop()
        assert client.failures == []
        assert "hello again: you asked for /hi\n" in client.answers
        assert HELLO + ": you asked for /hi\n" in client.answers
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=PATIENCE) == 0
    finally:
        if client is not None:
            client.stop()
        if process.poll() is None:
            process.kill()
        process.communicate()
    text = err_path.read_text(encoding="utf-8")
    assert "Traceback" not in text, text
    assert text.count("player demo/db started") == 1  # nothing else restarted
    assert text.count("player demo/jobs/worker-1 started") == 1
    assert config.exists()  # a file of the user's is left where it is


def test_the_demo_with_a_wrong_config_says_why_before_it_runs(tmp_path: Path) -> None:
    """``--config`` naming a broken file: one line naming it, exit 2, no banner."""
    config = tmp_path / "demo.json"
    config.write_text('{"workers": -1}')
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            *(sys.executable, "-m", "trio_orchestra", "demo", "--config", str(config)),
            *("--web", "127.0.0.1:0", "--health", "127.0.0.1:0"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=PATIENCE,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"python -m trio_orchestra: error: the demo's configuration {config}:"
        " 'workers' must be 0 to 8, not -1"
    )
    assert result.stdout == ""
