"""Peer benchmark: triotp's supervisor beside trio_orchestra and bare Trio, in one run.

triotp 0.3 needs Python 3.13, so this runs in a session of its own:
``python3 -m nox -s bench_peers`` (``-- --quick`` for a smoke run). Both cases are timed
interleaved, repetition by repetition, and the medians reported:

* start N idle tasks to started and stop them: triotp's ``supervisor.start`` (its monitors
  report started before the child runs; the stop is a cancellation, all at once), a
  ``Conductor`` with ``stop_order="parallel"`` (the same stop), and bare ``nursery.start``;
* restart throughput of a task that fails at once, with no backoff: triotp's PERMANENT child
  (restarted through tenacity; it logs every restart through logbook, silenced here with a
  NullHandler, which is part of its cost), a ``Restart.ON_FAILURE`` player, and bare spawning.

Results go to ``benchmarks/peers.json`` and ``benchmarks/peers.md`` (full run only).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path

import logbook  # type: ignore[import-untyped]
import trio
from triotp import supervisor  # type: ignore[import-untyped]

import trio_orchestra as orchestra

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from run import _timed, restarts_bare, restarts_ours, start_stop_bare  # noqa: E402 - shared


@dataclass
class PeerResult:
    """One case, three systems: medians in *unit*."""

    case: str
    n: int
    triotp: float
    ours: float
    bare: float
    unit: str


async def idle() -> None:
    """An idle plain task (triotp's children take no task_status)."""
    await trio.sleep_forever()


def start_stop_triotp(n: int) -> float:
    """triotp: a supervisor of n idle children, started, then cancelled."""
    specs = [supervisor.child_spec(id=f"c{i}", task=idle, args=[]) for i in range(n)]
    opts = supervisor.options()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.start, specs, opts)
            nursery.cancel_scope.cancel()

    return _timed(main)


def start_stop_ours(n: int) -> float:
    """A conductor of n idle plain players, started, then stopped in parallel."""
    conductor = orchestra.Conductor({f"c{i}": idle for i in range(n)}, stop_order="parallel")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            conductor.stop()

    return _timed(main)


def restarts_triotp(k: int) -> float:
    """triotp: a PERMANENT child that fails at once, restarted k times."""
    runs = 0
    scope = trio.CancelScope()

    async def crash() -> None:
        nonlocal runs
        runs += 1
        if runs > k:
            scope.cancel()
            await trio.sleep_forever()
        raise ValueError

    spec = supervisor.child_spec(id="crash", task=crash, args=[])
    opts = supervisor.options(max_restarts=k + 10, max_seconds=1)

    async def main() -> None:
        with scope:
            await supervisor.start([spec], opts)

    return _timed(main)


def _three(reps: int, *systems: Callable[[], float]) -> tuple[float, ...]:
    times: list[list[float]] = [[] for _ in systems]
    for _ in range(reps):
        for measured, system in zip(times, systems, strict=True):
            measured.append(system())
    return tuple(statistics.median(each) for each in times)


def run(quick: bool) -> list[PeerResult]:  # noqa: FBT001 - the command-line switch
    """Run both cases; return the results."""
    results: list[PeerResult] = []
    for n in [1000] if quick else [1000, 10_000]:
        reps = 3 if quick else 7
        triotp, ours, bare = _three(
            reps,
            partial(start_stop_triotp, n),
            partial(start_stop_ours, n),
            partial(start_stop_bare, n),
        )
        results.append(
            PeerResult(
                "start+stop, all at once",
                n,
                triotp / n * 1e6,
                ours / n * 1e6,
                bare / n * 1e6,
                "us/task",
            )
        )
    k = 2000 if quick else 50_000
    triotp, ours, bare = _three(
        3 if quick else 5,
        lambda: restarts_triotp(k),
        lambda: restarts_ours(k),
        lambda: restarts_bare(k),
    )
    results.append(
        PeerResult(
            "restart throughput (no backoff)", k, k / triotp, k / ours, k / bare, "restarts/s"
        )
    )
    return results


def report(results: list[PeerResult], quick: bool) -> str:  # noqa: FBT001 - the command-line switch
    """A markdown table, with the machine and versions."""
    lines = [
        (
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()},"
            f" CPython {platform.python_version()}, trio {trio.__version__},"
            f" triotp {version('triotp')}, {'quick smoke run' if quick else 'full run'}."
        ),
        "",
        "| case | N | triotp | trio_orchestra | bare Trio | unit | trio_orchestra over triotp |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        faster = r.ours / r.triotp if r.unit.endswith("/s") else r.triotp / r.ours
        lines.append(
            f"| {r.case} | {r.n} | {r.triotp:.2f} | {r.ours:.2f} | {r.bare:.2f} | {r.unit}"
            f" | {faster:.1f}x faster |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Parse the options, run, write the results, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    args = parser.parse_args()
    logging.getLogger("trio_orchestra").setLevel(logging.CRITICAL)
    with logbook.NullHandler().applicationbound():
        results = run(args.quick)
    table = report(results, args.quick)
    print(table)
    if not args.quick:
        (HERE / "peers.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
        (HERE / "peers.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
