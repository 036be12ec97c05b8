"""``python -m trio_orchestra demo``: a real tree to watch, probe and stop with Ctrl-C.

Why this module: a newcomer should see supervision work, and done right: every player here
subscribes to its stop, finishes what it has in hand and returns, so one Ctrl-C is a clean stop
(exit 0). The terminal gets a short banner and the events; the tree is on the health page.

The tree is a dependency graph (``PlayerSpec(after=...)``)::

    demo                       strategy="rest_for_one": a player restarts with those after it
    ├── db       after nothing     an imaginary database: connects in 0.5 s, closes in 0.5 s
    ├── cache    after nothing     a child process, ready once it says so: SIGTERM on the soft
    │                              stop, SIGKILL if it must
    ├── jobs     after db          a nested conductor whose players hear the stop at once
    │   ├── queue-feeder           puts a job on the queue every second
    │   ├── worker-1               takes jobs; once stopped, finishes the one in hand, no more;
    │   │                          liveness 5 s: it beats per job and while waiting for one,
    │   │                          and a hung worker is restarted (``on_failure``)
    │   ├── worker-2
    │   └── report                 every 30 s, logs how many jobs are done (``every``)
    ├── web      after db, cache   an ASGI app served by hypercorn (finishes requests in flight);
    │                              ``/hang`` and ``/block`` make a worker misbehave
    └── flaky    after nothing     fails now and then, restarted with backoff (alone: nothing
                                   is after it)

``db`` and ``cache`` start side by side, ``jobs`` once ``db`` is up, ``web`` once both are. A
stop runs the other way: ``web``, ``jobs`` and ``flaky`` first, together; ``db`` once ``jobs``
is gone, ``cache`` once ``web`` is. The stop budget is the longest path of graces, web then
cache: 8 s.

The runner serves the health endpoint next to it: ``/`` is a page of the tree, ``/readyz`` turns
503 while ``flaky`` waits in backoff. The first Ctrl-C drains for :data:`DRAIN` seconds
(``/readyz`` 503, every player still running), then stops, all within :data:`STOP_WITHIN`
seconds; a second Ctrl-C cuts the drain short, a third skips the grace periods.

Three tools for a stuck player can be tried on it (docs/stuck.rst walks through them):
``/hang`` on the web app makes the next job's worker wait forever with no timeout, as a
network call would: it stops beating, its liveness finds it, the log says where it is stuck,
and it is stopped and restarted. ``/block`` makes the next job's worker call ``time.sleep``:
the event loop stops, and the runner's ``blocked_after`` watchdog names the worker and the
line. ``kill -USR1 <pid>`` logs the tree with where each player waits; ``/tasks`` on the
health endpoint serves the same text.

The tree is built from a small JSON configuration file (:class:`DemoConfig`: the number of
job workers, the web app's hello text) by a factory, :class:`DemoTree`, and run with
``reload=True``: edit the file and ``kill -HUP <pid>``, and the running tree is updated to it
(docs/reload.rst): a worker added or removed, web restarted with its new text on the socket
it kept, refusing no connection; whatever did not change is left running.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import random
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import attrs
import trio

from ._asgi import serve_asgi
from ._checks import parse_address
from ._conductor import Conductor
from ._every import every
from ._liveness import heartbeat
from ._process import run_process
from ._reload import RELOAD_SIGNAL
from ._runner import DUMP_SIGNAL
from ._spec import PlayerSpec
from ._stop import current_stop
from ._supervision import Backoff, Restart

__all__ = [
    "BLOCKED_AFTER",
    "BLOCK_SECONDS",
    "DEFAULT_CONFIG",
    "DRAIN",
    "LIVENESS",
    "STOP_WITHIN",
    "DemoConfig",
    "DemoTree",
    "Trouble",
    "banner",
    "demo_conductor",
    "jobs_conductor",
    "write_config",
]

logger = logging.getLogger("trio_orchestra.demo")

_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Seconds a job takes; within the pool's grace, so a job in hand is always finished.
JOB_SECONDS = 1.5

#: Seconds the imaginary database takes to connect, and to close its connections.
DB_SECONDS = 0.5

#: The runner's drain: seconds of ``/readyz`` 503 with every player running, after the first
#: Ctrl-C and before the stop.
DRAIN = 2.0

#: The runner's one deadline for the stop, drain included: the drain, then the tree's stop
#: budget (8 s). The real stop takes about 2 s after the drain.
STOP_WITHIN = 10.0

#: The runner's ``blocked_after``: a player that blocks the event loop this long is named.
BLOCKED_AFTER = 1.0

#: Seconds a worker blocks the event loop for, on ``/block``: twice ``BLOCKED_AFTER``.
BLOCK_SECONDS = 2.0

#: The workers' liveness. A worker beats as it takes a job and every :data:`BEAT_SECONDS`
#: while it waits for one, so it is silent for a job (1.5 s) at most; a blocked event loop
#: silences every player, so the liveness also covers a job plus the ``/block`` of 2 s, and
#: the worker that only waits while the other blocks is not taken for hung.
LIVENESS = 5.0

#: Seconds between two heartbeats of a worker waiting for a job.
BEAT_SECONDS = 1.0

#: The workers' backoff before a restart (after a hang): no jitter, two workers make no herd.
WORKER_BACKOFF = Backoff(initial=1, maximum=8, jitter=0, reset_after=30)

#: The flaky player's backoff before a restart.
FLAKY_BACKOFF = Backoff(initial=1, maximum=8, reset_after=30)

#: The web app's hello text, unless the configuration file says otherwise.
HELLO = "hello from trio-orchestra"


class Trouble:
    """The misbehaviour the web app asked of the workers: each is done by the next job taken."""

    def __init__(self) -> None:
        self.hangs = 0
        self.blocks = 0

    def take(self) -> str | None:
        """What the job just taken must do: ``"hang"``, ``"block"``, or ``None`` (its work)."""
        if self.hangs:
            self.hangs -= 1
            return "hang"
        if self.blocks:
            self.blocks -= 1
            return "block"
        return None


_TROUBLE_ANSWERS = {
    "/hang": (
        "the next job makes its worker wait forever, with no timeout and no heartbeat: its"
        f" liveness ({LIVENESS:g} s) finds it, the log says where it is stuck, and it is"
        " restarted\n"
    ),
    "/block": (
        f"the next job makes its worker call time.sleep({BLOCK_SECONDS:g}), blocking the event"
        f" loop: blocked_after ({BLOCKED_AFTER:g} s) names the worker and the line\n"
    ),
}


async def hello(
    trouble: Trouble,
    scope: dict[str, Any],
    receive: _Receive,
    send: _Send,
    *,
    greeting: str = HELLO,
) -> None:
    """A tiny ASGI app: every request gets a line of text, *greeting* first, after a think.

    ``/hang`` and ``/block`` also ask the next job for that *trouble* (see :class:`Trouble`).
    """
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await trio.sleep(0.2)
    path = scope["path"]
    if path == "/hang":
        trouble.hangs += 1
    elif path == "/block":
        trouble.blocks += 1
    text = _TROUBLE_ANSWERS.get(path, f"{greeting}: you asked for {path}\n")
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Tally:
    """The jobs finished so far, counted by the workers and told by the report."""

    def __init__(self) -> None:
        self.done = 0


async def database(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """An imaginary database pool: connects, serves until stopped, closes its connections.

    It is stopped only once every player after it (``jobs``) is gone: nobody uses it then.
    """
    stop = current_stop()
    await trio.sleep(DB_SECONDS)  # connecting
    task_status.started()
    await stop.wait()
    await trio.sleep(DB_SECONDS)  # closing its connections


async def feeder(send: trio.MemorySendChannel[int]) -> None:
    """Put a numbered job on the queue every second; on a stop, put no more and return."""
    stop = current_stop()
    with stop.soft_scope():
        for number in itertools.count(1):
            await send.send(number)
            await trio.sleep(1)


async def worker(
    name: str, receive: trio.MemoryReceiveChannel[int], tally: _Tally, trouble: Trouble
) -> None:
    """Take jobs one by one; once stopped, take no new job, finish the one in hand, return.

    It beats (:func:`heartbeat`) as it takes each job, and every :data:`BEAT_SECONDS` while
    it waits for one: an empty queue is not a hang.
    """
    stop = current_stop()
    while True:
        job: int | None = None
        with stop.soft_scope():  # a stop while waiting for a job ends the wait, empty-handed
            while job is None:
                heartbeat()
                with trio.move_on_after(BEAT_SECONDS):
                    job = await receive.receive()
        if job is None:
            return
        heartbeat()
        logger.debug("%s working on job %d", name, job)
        await work(name, job, trouble.take())  # the soft phase lets it finish
        tally.done += 1
        if stop.requested:  # checked before taking the next job: none is taken after the stop
            logger.info("%s finished job %d, in hand when the stop came", name, job)
            return
        logger.debug("%s finished job %d", name, job)


async def work(name: str, job: int, trouble: str | None) -> None:
    """Do one job: :data:`JOB_SECONDS` of work, or the *trouble* the web app asked for."""
    if trouble == "hang":
        logger.info("%s calls a service that never answers, for job %d (/hang)", name, job)
        await call_with_no_timeout()
    elif trouble == "block":
        logger.info("%s blocks the event loop for job %d (/block)", name, job)
        blocking_work()
    else:
        await trio.sleep(JOB_SECONDS)


def blocking_work() -> None:
    """Synchronous work called straight from a player: the whole event loop waits for it."""
    # (trio.to_thread.run_sync(...) is how it should be called; /block shows why)
    time.sleep(BLOCK_SECONDS)


async def call_with_no_timeout() -> None:
    """A network call to a service that never answers, made with no timeout."""
    await trio.sleep_forever()


async def report(tally: _Tally, receive: trio.MemoryReceiveChannel[int]) -> None:
    """Log one line: the jobs done so far and those waiting in the queue."""
    waiting = receive.statistics().current_buffer_used
    logger.info("%d jobs done so far, %d waiting in the queue", tally.done, waiting)
    await trio.lowlevel.checkpoint()


async def flaky(chance: random.Random) -> None:
    """Run for a few seconds, then lose an imaginary connection; on a stop, return at once."""
    stop = current_stop()
    with stop.soft_scope():  # a stop hangs up cleanly: no failure while the tree stops
        await trio.sleep(chance.uniform(5, 15))
        raise ConnectionResetError("the imaginary upstream hung up")


CACHE = textwrap.dedent(
    """
    import signal, sys, time

    def on_term(signum, frame):
        print("cache: got SIGTERM, cleaning up", flush=True)
        time.sleep(0.5)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    time.sleep(0.5)  # warming up
    print("cache: ready", flush=True)
    tick = 0
    while True:
        tick += 1
        time.sleep(10)
        print(f"cache: tick {tick}", flush=True)
    """
)


#: The demo's configuration file as ``python -m trio_orchestra demo`` writes it: edit it and
#: send ``SIGHUP`` (``kill -HUP <pid>``) to reload it.
DEFAULT_CONFIG: dict[str, object] = {"workers": 2, "hello": HELLO}

#: The most job workers a configuration may ask for.
MAX_WORKERS = 8


@attrs.frozen
class DemoConfig:
    """What the configuration file sets: the number of job workers, the web app's hello text."""

    workers: int = 2
    hello: str = HELLO

    @classmethod
    def read(cls, path: Path) -> DemoConfig:
        """The configuration in the JSON file *path*; ``ValueError`` (one sentence) if wrong."""
        try:
            found: object = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise _wrong(path, f" cannot be read: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise _wrong(path, f" is not JSON: {exc}") from None
        if not isinstance(found, dict):
            raise _wrong(path, f" must be a JSON object, like {json.dumps(DEFAULT_CONFIG)}")
        config = cast("dict[str, object]", found)
        unknown = sorted(set(config) - set(DEFAULT_CONFIG))
        if unknown:
            raise _wrong(path, f" has unknown keys {unknown}; it sets 'workers' and 'hello'")
        workers = config.get("workers", 2)
        if type(workers) is not int or not 0 <= workers <= MAX_WORKERS:
            raise _wrong(path, f": 'workers' must be 0 to {MAX_WORKERS}, not {workers!r}")
        text = config.get("hello", HELLO)
        if not isinstance(text, str) or not text or "\n" in text:
            raise _wrong(path, f": 'hello' must be one line of text, not {text!r}")
        return cls(workers=workers, hello=text)


def _wrong(path: Path, why: str) -> ValueError:
    return ValueError(f"the demo's configuration {path}{why}")


class DemoTree:
    """Build the demo's tree from its configuration; called again by each reload (``SIGHUP``).

    A reload restarts only the players whose spec changed, and a spec is equal only when its
    callable is the *same object* (its arguments and options equal). So everything a player
    is given is made once, here, and reused by every later call: the job queue, the tally,
    the trouble, the cache's process, the flaky player's random source, the web server of a
    hello text, the pool of a number of workers. A new number of workers gives a new pool
    conductor with the same options, which the update applies to the running pool: workers
    added or removed, the others left alone. A new hello text gives a new web server: web is
    restarted, on the socket it kept (no refused connection).

    *config* is the JSON file to read on every call (``None``: :class:`DemoConfig`'s
    defaults); *web* is where the web app listens.
    """

    def __init__(
        self,
        web: str = "127.0.0.1:8000",
        config: Path | None = None,
        *,
        trouble: Trouble | None = None,
    ) -> None:
        """Make what every tree shares; read nothing yet."""
        self.web = web
        self.config = config
        self.trouble = Trouble() if trouble is None else trouble
        self.tally = _Tally()
        self.send, self.receive = trio.open_memory_channel[int](10)
        self.cache = run_process([sys.executable, "-u", "-c", CACHE], ready_line=r"^cache: ready$")
        self.report = every(30, report, self.tally, self.receive)
        self.chance = random.Random()  # noqa: S311 - when a demo player fails, not cryptography
        self._server: tuple[str, Callable[..., Awaitable[object]]] | None = None
        self._pool: tuple[int, Conductor] | None = None

    def __call__(self) -> Conductor:
        """The tree for the configuration file as it is now (``ValueError`` if it is wrong)."""
        return self.build(DemoConfig() if self.config is None else DemoConfig.read(self.config))

    def server(self, text: str) -> Callable[..., Awaitable[object]]:
        """The web server player for the hello *text*: the same object while *text* is."""
        if self._server is None or self._server[0] != text:
            app = functools.partial(hello, self.trouble, greeting=text)
            self._server = (text, serve_asgi(app, bind=self.web))
        return self._server[1]

    def jobs(self, workers: int = 2) -> Conductor:
        """The pool of *workers* job workers, a conductor named ``jobs``.

        Its players stop all at once (``stop_order="parallel"``): workers are peers, and one
        by one, a worker would go on taking jobs while the one before it finishes. The
        workers have a liveness; one found hung is stopped (its soft phase, then cancelled)
        and restarted after :data:`WORKER_BACKOFF`, within the pool's restart intensity (the
        default: 5 restarts in 60 s). The same object while *workers* is the same.
        """
        if self._pool is not None and self._pool[0] == workers:
            return self._pool[1]
        players: dict[str, PlayerSpec] = {"queue-feeder": PlayerSpec(feeder, self.send)}
        for n in range(1, workers + 1):
            players[f"worker-{n}"] = PlayerSpec(
                worker,
                f"worker-{n}",
                self.receive,  # shared: each job goes to one worker, whichever waits
                self.tally,
                self.trouble,
                liveness=LIVENESS,
                restart=Restart.ON_FAILURE,
                backoff=WORKER_BACKOFF,
            )
        players["report"] = PlayerSpec(self.report)
        pool = Conductor(players, name="jobs", grace=2 * JOB_SECONDS, stop_order="parallel")
        self._pool = (workers, pool)
        return pool

    def build(self, config: DemoConfig) -> Conductor:
        """The demo's tree, a graph, for *config*."""
        return Conductor(
            {
                "db": PlayerSpec(database, after=(), grace=2),
                "cache": PlayerSpec(self.cache, after=(), restart=Restart.ON_FAILURE, grace=3),
                "jobs": PlayerSpec(self.jobs(config.workers), after=("db",)),
                # rest_for_one: when cache fails, web is stopped first, and started again once
                # cache is back (ON_FAILURE: a NEVER player would not be started again).
                "web": PlayerSpec(
                    self.server(config.hello),
                    after=("db", "cache"),
                    restart=Restart.ON_FAILURE,
                    grace=5,
                ),
                # Nothing is after it, so it is in the first wave of a stop: its token is set
                # in the very call that begins the tree's stop, and it cannot fail while the
                # others are still stopping. It restarts alone, even under rest_for_one.
                "flaky": PlayerSpec(
                    flaky,
                    self.chance,
                    after=(),
                    restart=Restart.ON_FAILURE,
                    backoff=FLAKY_BACKOFF,
                ),
            },
            name="demo",
            strategy="rest_for_one",
            max_restarts=10,
        )


def jobs_conductor(trouble: Trouble | None = None, workers: int = 2) -> Conductor:
    """Build the demo's pool of *workers* job workers alone (see :meth:`DemoTree.jobs`)."""
    return DemoTree(trouble=trouble).jobs(workers)


def demo_conductor(web: str = "127.0.0.1:8000", config: DemoConfig | None = None) -> Conductor:
    """Build the demo's tree, a graph, once; the web app listens on *web*."""
    return DemoTree(web).build(DemoConfig() if config is None else config)


_BANNER = """\
trio-orchestra demo: db and cache, then jobs (after db) and web (after both), and flaky.
  health page  {page}  the tree; /status (JSON), /readyz (503 while flaky
               waits in backoff, or draining), /metrics (Prometheus), /tasks (where each waits)
  web app      {web}  /hang: a worker hangs (its liveness finds it);
               /block: a worker blocks the event loop (blocked_after names it)
{signals}  live view    `python -m trio_orchestra top` (or `nox -s top`), in a second terminal
Ctrl-C once: {drain:g} s of draining (/readyz 503), then a graceful stop, dependents first;
again to end the drain at once, a third time to skip the grace periods.
"""


def _url(address: str) -> str:
    host, port = parse_address(address, "the address")
    if port:
        return f"http://{address}/"
    where = f"[{host}]" if ":" in host else host
    return f"http://{where}:PORT/ (port 0: the log says which)"


def banner(web: str, health: str, config: Path | str, pid: int | None = None) -> str:
    """The few lines the demo prints first: where to look, what to reload, how to stop it.

    *config* is its configuration file; *pid* is the process to send ``SIGHUP`` and
    ``SIGUSR1`` to (default: this one).
    """
    pid = os.getpid() if pid is None else pid
    signals = ""  # only where the runner listens to such signals (not on Windows)
    if RELOAD_SIGNAL is not None:
        signals += f"  reload       edit {config} (workers, hello), then kill -HUP {pid}\n"
    if DUMP_SIGNAL is not None:
        signals += (
            f"  tree dump    kill -USR1 {pid}  logs the tree, each player with where it waits\n"
        )
    return _BANNER.format(page=_url(health), web=_url(web), signals=signals, drain=DRAIN)


def write_config(path: Path, config: DemoConfig | None = None) -> None:
    """Write *config* (default: the defaults) to *path* as the JSON the demo reads."""
    config = DemoConfig() if config is None else config
    text = json.dumps({"workers": config.workers, "hello": config.hello}, indent=2)
    path.write_text(text + "\n", encoding="utf-8")
