"""A supervised service: a database pool, an ASGI app, one worker process per core, a report.

Run it with ``python service.py`` (addresses from the environment: ``WEB``, ``HEALTH``; the
number of workers from the JSON file ``CONFIG``, ``{"workers": 4}``, else ``WORKERS``), or as
``python -m trio_orchestra run service:factory --reload --health 0.0.0.0:8080 --drain 5
--stop-within 30 --force-exit-after 40``. Under systemd (``Type=notify-reload``) or
Kubernetes it is operated through the runner: readiness, watchdog, probes, on SIGHUP a reload
of ``CONFIG`` (docs/reload.rst), and on SIGTERM a drain then a graceful stop within one
deadline, all sized by ``conductor.stop_budget()``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

import trio_orchestra as orchestra

WORKER = str(Path(__file__).with_name("worker.py"))
logger = logging.getLogger("service")


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """The web application: ASGI 3, any framework's app would do."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    ANSWERED[0] += 1
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello\n"})


async def database(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The database pool (a stand-in): opened first, closed once nobody uses it any more."""
    stop = orchestra.current_stop()
    logger.info("database pool open")  # e.g. pool = await asyncpg.create_pool(dsn)
    task_status.started()
    await stop.wait()  # the web app and the workers are gone by now
    logger.info("database pool closed")


async def report() -> None:
    """Log how many requests the web app has answered so far."""
    logger.info("%d requests answered", ANSWERED[0])
    await trio.lowlevel.checkpoint()


ANSWERED = [0]  # counted by the app: a reload does not reset it


# A reload restarts only the players whose spec changed, and a spec is equal only with the same
# callable object: the players below are made once per value (functools.cache), not per build.
@functools.cache
def worker_process(n: int) -> Callable[..., Awaitable[None]]:
    """The player that runs worker process *n*."""
    return orchestra.run_process([sys.executable, "-u", WORKER, f"worker-{n}"])


@functools.cache
def web_server(bind: str) -> Callable[..., Awaitable[None]]:
    """The player that serves the web app on *bind*."""
    return orchestra.serve_asgi(app, bind=bind)


REPORT = orchestra.every(60, report)


def build(web: str = "0.0.0.0:8000", workers: int | None = None) -> orchestra.Conductor:
    """The tree, a graph: the web app and the workers both need the database, not each other."""
    count = workers or os.cpu_count() or 1
    processes = orchestra.Conductor(
        {
            f"worker-{n}": orchestra.PlayerSpec(
                worker_process(n),
                restart=orchestra.Restart.ON_FAILURE,  # a crashed worker is started again
            )
            for n in range(count)
        },
        grace=10,
        stop_order="parallel",  # they stop independently: SIGTERM to all at once
    )
    return orchestra.Conductor(
        {
            "db": orchestra.PlayerSpec(database, after=()),
            "workers": orchestra.PlayerSpec(processes, after=("db",)),
            "web": orchestra.PlayerSpec(web_server(web), after=("db",), grace=20),
            "report": orchestra.PlayerSpec(REPORT, after=()),
        },
        name="service",
    )


def factory() -> orchestra.Conductor:
    """The tree as the configuration says now: called at the start, and on each SIGHUP."""
    config = os.environ.get("CONFIG")
    workers: int | None = None
    if config:  # a broken file fails the reload, and the service goes on as it was
        workers = int(json.loads(Path(config).read_text(encoding="utf-8"))["workers"])
    elif os.environ.get("WORKERS"):
        workers = int(os.environ["WORKERS"])
    return build(os.environ.get("WEB", "0.0.0.0:8000"), workers)


# The stop, in seconds from the SIGTERM (docs/operations.rst, "The stop budget"): a drain of
# DRAIN (/readyz 503, everything still serving), then the tree's stop, whose budget is 25 (the
# web app's 20, then the database's 5), all within STOP_WITHIN; the runner's own exit at
# FORCE_EXIT_AFTER comes 10 s before the SIGKILL (TimeoutStopSec=, terminationGracePeriodSeconds).
DRAIN = 5
STOP_WITHIN = 30  # >= DRAIN + conductor.stop_budget()
FORCE_EXIT_AFTER = 40  # STOP_WITHIN + 10 s for the hard phases after the deadline

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    orchestra.run(
        factory,
        reload=True,
        health=os.environ.get("HEALTH", "0.0.0.0:8080"),
        drain=DRAIN,
        stop_within=STOP_WITHIN,
        force_exit_after=FORCE_EXIT_AFTER,
    )
