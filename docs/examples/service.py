"""A supervised service: an ASGI app, one worker process per core, and a periodic report.

Run it with ``python service.py`` (addresses from the environment: ``WEB``, ``HEALTH``,
``WORKERS``), or as ``python -m trio_orchestra run service:conductor --health 0.0.0.0:8080``.
Under systemd (``Type=notify``) or Kubernetes it is operated through the runner: readiness,
watchdog, probes and a graceful stop on SIGTERM, all sized by ``conductor.stop_budget()``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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


def build(web: str = "0.0.0.0:8000", workers: int | None = None) -> orchestra.Conductor:
    """The tree: worker processes first (the web app needs them), then the web app."""
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
                "workers": processes,
                "web": orchestra.PlayerSpec(orchestra.serve_asgi(app, bind=web), grace=20),
                "report": orchestra.every(60, report),
            },
            name="service",
        )
    )
    return tree[0]


workers = int(os.environ["WORKERS"]) if os.environ.get("WORKERS") else None
conductor = build(os.environ.get("WEB", "0.0.0.0:8000"), workers)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    orchestra.run(conductor, health=os.environ.get("HEALTH", "0.0.0.0:8080"), force_exit_after=60)
