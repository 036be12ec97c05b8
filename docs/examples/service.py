"""A supervised service: a database pool, an ASGI app, one worker process per core, a report.

Run it with ``python service.py`` (addresses from the environment: ``WEB``, ``HEALTH``,
``WORKERS``), or as ``python -m trio_orchestra run service:conductor --health 0.0.0.0:8080
--drain 5 --stop-within 30 --force-exit-after 40``. Under systemd (``Type=notify``) or
Kubernetes it is operated through the runner: readiness, watchdog, probes, and on SIGTERM a
drain then a graceful stop within one deadline, all sized by ``conductor.stop_budget()``.
"""

from __future__ import annotations

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
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello\n"})


async def database(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The database pool (a stand-in): opened first, closed once nobody uses it any more."""
    stop = orchestra.current_stop()
    logger.info("database pool open")  # e.g. pool = await asyncpg.create_pool(dsn)
    task_status.started()
    await stop.wait()  # the web app and the workers are gone by now
    logger.info("database pool closed")


def build(web: str = "0.0.0.0:8000", workers: int | None = None) -> orchestra.Conductor:
    """The tree, a graph: the web app and the workers both need the database, not each other."""
    count = workers or os.cpu_count() or 1
    processes = orchestra.Conductor(
        {
            f"worker-{n}": orchestra.PlayerSpec(
                orchestra.run_process([sys.executable, "-u", WORKER, f"worker-{n}"]),
                restart=orchestra.Restart.ON_FAILURE,  # a crashed worker is started again
            )
            for n in range(count)
        },
        grace=10,
        stop_order="parallel",  # they stop independently: SIGTERM to all at once
    )
    tree: list[orchestra.Conductor] = []

    async def report() -> None:
        stats = tree[0].statistics()
        logger.info("%d of %d players running", stats.running, stats.players)

    tree.append(
        orchestra.Conductor(
            {
                "db": orchestra.PlayerSpec(database, after=()),
                "workers": orchestra.PlayerSpec(processes, after=("db",)),
                "web": orchestra.PlayerSpec(
                    orchestra.serve_asgi(app, bind=web), after=("db",), grace=20
                ),
                "report": orchestra.PlayerSpec(orchestra.every(60, report), after=()),
            },
            name="service",
        )
    )
    return tree[0]


# The stop, in seconds from the SIGTERM (docs/operations.rst, "The stop budget"): a drain of
# DRAIN (/readyz 503, everything still serving), then the tree's stop, whose budget is 25 (the
# web app's 20, then the database's 5), all within STOP_WITHIN; the runner's own exit at
# FORCE_EXIT_AFTER comes 10 s before the SIGKILL (TimeoutStopSec=, terminationGracePeriodSeconds).
DRAIN = 5
STOP_WITHIN = 30  # >= DRAIN + conductor.stop_budget()
FORCE_EXIT_AFTER = 40  # STOP_WITHIN + 10 s for the hard phases after the deadline

workers = int(os.environ["WORKERS"]) if os.environ.get("WORKERS") else None
conductor = build(os.environ.get("WEB", "0.0.0.0:8000"), workers)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    orchestra.run(
        conductor,
        health=os.environ.get("HEALTH", "0.0.0.0:8080"),
        drain=DRAIN,
        stop_within=STOP_WITHIN,
        force_exit_after=FORCE_EXIT_AFTER,
    )
