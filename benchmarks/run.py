"""Benchmarks: trio_orchestra against bare Trio, measured side by side in one run.

Run ``python3 -m nox -s bench`` (the full run) or ``python3 -m nox -s bench -- --quick`` (the
smoke run CI does, so the benchmarks cannot rot). Each case times trio_orchestra and its
bare-Trio baseline interleaved, repetition by repetition, and reports the best round of each and
their ratio; the contract's bars (DESIGN.md section 8) are checked and printed beside them. Results
go to ``benchmarks/results.json`` and ``benchmarks/results.md``.

Logging is turned off while timing: a handled failure is logged at WARNING with its traceback,
which is what production wants and not what a benchmark of the supervision core measures.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import statistics
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import trio
import trio.testing

import trio_orchestra as orchestra

HERE = Path(__file__).parent
LARGE = 100_000  # fewer repetitions at this size: each one takes seconds
OVERHEAD_BAR = 1.2  # DESIGN.md section 8: at most 1.2x bare Trio
HEARTBEAT_BAR = 0.2e-6  # DESIGN.md section 14: at most 0.2 us over a bare function call


@dataclass
class Result:
    """One case: the best round of both systems, their ratio, and the bar it must meet."""

    case: str
    n: int
    ours: float
    bare: float
    unit: str
    ratio: float
    bar: str
    ok: bool


# -- the players ----------------------------------------------------------------------------


async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """An idle player with readiness."""
    task_status.started()
    await trio.sleep_forever()


async def plain_idle() -> None:
    """An idle plain task."""
    await trio.sleep_forever()


# -- cases ----------------------------------------------------------------------------------


def start_stop_bare(n: int) -> float:
    """Bare Trio: ``nursery.start`` n idle tasks one after another, then cancel them all."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                await nursery.start(idle)
            nursery.cancel_scope.cancel()

    return _timed(main)


def start_stop_bare_sequential(n: int) -> float:
    """Bare Trio, the same semantics as a sequential stop, by hand.

    Each task in a cancel scope of its own, started with ``nursery.start``; then cancelled one
    at a time in reverse order, each once the one after it is gone. This is what a conductor's
    default stop does, so it is its like-for-like baseline (reported; the bar is against
    cancelling everything at once).
    """

    async def in_own_scope(
        gone: trio.Event, *, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await trio.sleep_forever()
        gone.set()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            started: list[tuple[trio.CancelScope, trio.Event]] = []
            for _ in range(n):
                gone = trio.Event()
                started.append((await nursery.start(in_own_scope, gone), gone))
            for scope, gone in reversed(started):
                scope.cancel(reason="stopped in reverse order")
                await gone.wait()

    return _timed(main)


def start_stop_ours(n: int, order: str) -> float:
    """A conductor of n idle players: start them in order to ready, then stop them."""
    conductor = orchestra.Conductor(
        {f"p{i}": idle for i in range(n)},
        stop_order=order,  # type: ignore[arg-type]
    )
    return _start_then_stop(conductor)


def graph_ours(n: int, shape: str) -> float:
    """A graph of n idle players: ``after=()`` for every one, or a named chain.

    With no edges, every player starts at once and stops at once; a chain (each after the one
    declared before it, named) starts and stops as a line, through the graph's bookkeeping.
    """
    players = {
        f"p{i}": orchestra.PlayerSpec(
            idle, after=() if shape == "no edges" or i == 0 else (f"p{i - 1}",)
        )
        for i in range(n)
    }
    return _start_then_stop(orchestra.Conductor(players))


def _start_then_stop(conductor: orchestra.Conductor) -> float:
    """Time starting *conductor* to ready, then stopping it."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            conductor.stop()

    return _timed(main)


def tree_bare(groups: int, size: int) -> float:
    """Bare Trio: nested nurseries, each started with ``nursery.start``, then one cancel."""

    async def group(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as inner:
            for _ in range(size):
                await inner.start(idle)
            task_status.started()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(groups):
                await nursery.start(group)
            nursery.cancel_scope.cancel()

    return _timed(main)


def tree_ours(groups: int, size: int) -> float:
    """A conductor of conductors: start the tree to ready, then stop it."""
    root = orchestra.Conductor(
        {f"g{g}": orchestra.Conductor({f"p{i}": idle for i in range(size)}) for g in range(groups)}
    )
    return _start_then_stop(root)


async def graceful(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A subscribed player that returns as soon as its stop is requested."""
    stop = orchestra.current_stop()
    task_status.started()
    await stop.wait()


def shutdown_bare(n: int) -> float:
    """Bare Trio: n tasks waiting on one event; time from ``set()`` to the nursery's exit."""

    async def main() -> float:
        event = trio.Event()

        async def waiter(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            await event.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                await nursery.start(waiter)
            start = time.perf_counter()
            event.set()
        return time.perf_counter() - start

    return float(trio.run(main))


def shutdown_ours(n: int) -> float:
    """Graceful players: time from ``stop()`` to the return of their conductor (reverse order)."""
    conductor = orchestra.Conductor({f"p{i}": graceful for i in range(n)})

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            start = time.perf_counter()
            conductor.stop()
        return time.perf_counter() - start

    return float(trio.run(main))


def anyio_task_group(n: int) -> float:
    """The anyio peer on the trio backend: ``TaskGroup.start`` n idle tasks, then cancel."""
    import anyio  # noqa: PLC0415 - only this case needs it

    async def anyio_idle(
        *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(n):
                await group.start(anyio_idle)
            group.cancel_scope.cancel()

    gc.collect()
    start = time.perf_counter()
    anyio.run(main, backend="trio")
    return time.perf_counter() - start


def restarts_bare(k: int) -> float:
    """Bare Trio: k tasks that fail at once, each spawning the next when it has failed."""

    async def main() -> None:
        left = k

        async def crash() -> None:
            raise ValueError

        async def wrapper(nursery: trio.Nursery) -> None:
            nonlocal left
            try:
                await crash()
            except ValueError:
                left -= 1
                if left:
                    nursery.start_soon(wrapper, nursery)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wrapper, nursery)

    return _timed(main)


def restarts_ours(k: int) -> float:
    """A player that fails at once, restarted k times with no backoff (no intensity limit)."""
    runs = 0
    conductor: orchestra.Conductor

    async def crash() -> None:
        nonlocal runs
        runs += 1
        if runs > k:
            conductor.stop()
            await trio.sleep_forever()
        raise ValueError

    conductor = orchestra.Conductor(
        {"crash": orchestra.PlayerSpec(crash, restart=orchestra.Restart.ON_FAILURE, backoff=None)},
        max_restarts=k + 1,
        period=1e-9,
    )
    return _timed(conductor)


def memory_bare(n: int) -> float:
    """Bytes per idle task spawned with ``start_soon``."""

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            before = _traced()
            for _ in range(n):
                nursery.start_soon(plain_idle)
            await trio.testing.wait_all_tasks_blocked()  # every task parked in its sleep
            used = _traced() - before
            nursery.cancel_scope.cancel()
        return used / n

    return _measure_memory(main)


def memory_ours(n: int) -> float:
    """Bytes per idle player of a running conductor (the conductor's own state included)."""

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            before = _traced()
            conductor = orchestra.Conductor({f"p{i}": plain_idle for i in range(n)})
            await nursery.start(conductor)
            await trio.testing.wait_all_tasks_blocked()
            used = _traced() - before
            conductor.stop()
        return used / n

    return _measure_memory(main)


def _nothing() -> None:
    """The bare function call that a heartbeat is compared with."""


def heartbeat_cost(calls: int, liveness: float | None) -> tuple[float, float]:
    """Seconds per call of ``heartbeat()`` in a player, and of a bare function call.

    Both timed with :mod:`timeit` inside the player's task, the best of five rounds each.
    With *liveness* ``None`` the player has none: its heartbeat is a no-op that still checks
    it runs in a player (it walks up the task tree).
    """
    found: dict[str, float] = {}

    async def player() -> None:
        beat = orchestra.heartbeat
        found["beat"] = min(timeit.repeat(beat, number=calls, repeat=5)) / calls
        found["bare"] = min(timeit.repeat(_nothing, number=calls, repeat=5)) / calls
        await trio.lowlevel.checkpoint()

    trio.run(orchestra.Conductor({"p": orchestra.PlayerSpec(player, liveness=liveness)}))
    return found["beat"], found["bare"]


def _heartbeats(*, quick: bool) -> list[Result]:
    """The heartbeat's cost (DESIGN section 14's bar), and the no-op of a player without one."""
    calls = 100_000 if quick else 1_000_000
    results = []
    for liveness in (3600.0, None):
        beat, bare = heartbeat_cost(calls, liveness)
        with_liveness = liveness is not None
        results.append(
            Result(
                case="heartbeat() in a player "
                + ("with a liveness" if with_liveness else "without one (a no-op)")
                + " vs a bare function call",
                n=calls,
                ours=beat * 1e9,
                bare=bare * 1e9,
                unit="ns/call",
                ratio=beat / bare,
                bar="<= 200 ns more" if with_liveness else "reported",
                ok=not with_liveness or beat - bare <= HEARTBEAT_BAR,
            )
        )
    return results


def idle_steps() -> int:
    """Task steps taken by a running, idle tree in half a second of real time: must be 0."""

    class Counter(trio.abc.Instrument):
        def __init__(self) -> None:
            self.steps = 0
            self.watched: trio.lowlevel.Task | None = None

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            if task is not self.watched:
                self.steps += 1

    counter = Counter()

    async def main() -> None:
        inner = orchestra.Conductor(
            {"x": orchestra.PlayerSpec(plain_idle, restart=orchestra.Restart.ALWAYS)}
        )
        conductor = orchestra.Conductor({"inner": inner, "y": idle})
        async with trio.open_nursery() as nursery:
            await nursery.start(conductor)
            await trio.sleep(0.1)
            counter.watched = trio.lowlevel.current_task()
            trio.lowlevel.add_instrument(counter)
            await trio.sleep(0.5)
            trio.lowlevel.remove_instrument(counter)
            conductor.stop()

    trio.run(main)
    return counter.steps


# -- plumbing -------------------------------------------------------------------------------


def _has_anyio() -> bool:
    try:
        import anyio  # noqa: F401, PLC0415 - only probing
    except ImportError:
        return False
    return True


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    trio.run(fn)  # type: ignore[arg-type]
    return time.perf_counter() - start


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _measure_memory(main: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        return float(trio.run(main))  # type: ignore[arg-type]
    finally:
        tracemalloc.stop()


def _interleaved(
    reps: int, ours: Callable[[], float], bare: Callable[[], float]
) -> tuple[float, float]:
    """The best of *reps* rounds of each side, the sides taking turns to go first.

    The minimum, as ``timeit`` advises: what slows a round down (another process on one of two
    cores, a frequency step) only ever adds time, so the fastest round is the one that measured
    the code. A median kept that noise in: one case's ratio moved by about 0.2 between full
    runs. Alternating who goes first spreads any cost of following the other side evenly.
    """
    ours_times: list[float] = []
    bare_times: list[float] = []
    for rep in range(reps):
        if rep % 2:
            ours_times.append(ours())
            bare_times.append(bare())
        else:
            bare_times.append(bare())
            ours_times.append(ours())
    return min(ours_times), min(bare_times)


def _per_player(
    case: str,
    n: int,
    times: tuple[float, float],
    *,
    bar: float | None = None,
    unit: str = "us/player",
) -> Result:
    """A result from the seconds (ours, bare) took for *n* players, shown per player.

    *bar* is the most ours may cost, as a multiple of bare; ``None``: only reported.
    """
    ours, bare = times
    ratio = ours / bare
    return Result(
        case=case,
        n=n,
        ours=ours / n * 1e6,
        bare=bare / n * 1e6,
        unit=unit,
        ratio=ratio,
        bar="reported" if bar is None else f"<= {bar:g}x bare",
        ok=bar is None or ratio <= bar,
    )


def _scaling(results: list[Result]) -> list[Result]:
    """The scaling bar: for each start+stop case, the ratio at the largest N against at 1k.

    Bare Trio's own per-player cost grows with N, so the bar is relative (DESIGN.md section
    8): the ratio to bare Trio at the largest N must be no worse than at 1k.
    """
    by_case: dict[str, dict[int, float]] = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.n] = r.ratio
    rows = []
    for case, ratios in by_case.items():
        small, large = min(ratios), max(ratios)
        if small == large:
            continue  # the smoke run has one size
        rows.append(
            Result(
                case=f"scaling of '{case}': ratio at {large} / ratio at {small}",
                n=large,
                ours=ratios[large],
                bare=ratios[small],
                unit="ratio to bare",
                ratio=ratios[large] / ratios[small],
                bar=f"<= 1 (no worse at {large} than at {small})",
                ok=ratios[large] <= ratios[small],
            )
        )
    return rows


def _graphs(sizes: list[int], *, quick: bool) -> list[Result]:
    """The graph cases: no edges (barred, DESIGN section 14) and a named chain (reported)."""
    results: list[Result] = []
    for shape in ("no edges", "chain"):
        for n in sizes:
            ours, bare = _interleaved(
                3 if quick else (9 if n < LARGE else 5),
                partial(graph_ours, n, shape),
                partial(start_stop_bare, n),
            )
            bar = OVERHEAD_BAR if shape == "no edges" else None
            results.append(
                _per_player(f"graph start+stop, {shape}, GC on", n, (ours, bare), bar=bar)
            )
    return results


def run(quick: bool) -> list[Result]:  # noqa: FBT001 - the command-line switch
    """Run every case; return the results."""
    # One untimed round of the first case, for both sides: its first timed rounds gave a ratio
    # of 1.14 to 1.22 where the rounds after gave 1.03 to 1.08 (caches, the CPU's clock).
    start_stop_ours(1000, "sequential")
    start_stop_bare(1000)
    sizes = [1000] if quick else [1000, 10_000, 100_000]
    results: list[Result] = []
    for gc_on in (True, False):
        if not gc_on:
            gc.disable()
        try:
            for order in ("sequential", "parallel"):
                for n in sizes:
                    reps = 3 if quick else (11 if n < LARGE else 5)
                    ours, bare = _interleaved(
                        reps,
                        partial(start_stop_ours, n, order),
                        partial(start_stop_bare, n),
                    )
                    case = f"start+stop, {order} stop, GC {'on' if gc_on else 'off'}"
                    results.append(_per_player(case, n, (ours, bare), bar=OVERHEAD_BAR))
        finally:
            gc.enable()
    results.extend(_scaling(results))
    for n in sizes:
        ours, by_hand = _interleaved(
            3 if quick else (5 if n < LARGE else 3),
            partial(start_stop_ours, n, "sequential"),
            partial(start_stop_bare_sequential, n),
        )
        case = "start+stop, sequential stop vs the same by hand in bare Trio, GC on"
        results.append(_per_player(case, n, (ours, by_hand)))
    for groups, size in [(10, 100)] if quick else [(10, 100), (100, 100)]:
        n = groups * size
        ours, bare = _interleaved(
            3 if quick else 9,
            partial(tree_ours, groups, size),
            partial(tree_bare, groups, size),
        )
        case = f"tree of {groups} conductors x {size} players vs nested nurseries"
        results.append(_per_player(case, n, (ours, bare), bar=OVERHEAD_BAR))
    results.extend(_graphs(sizes, quick=quick))
    for n in [1000] if quick else [1000, 10_000]:
        ours, bare = _interleaved(
            3 if quick else 5, partial(shutdown_ours, n), partial(shutdown_bare, n)
        )
        case = "shutdown latency of graceful players (reverse order vs all at once)"
        results.append(_per_player(case, n, (ours, bare)))
    if _has_anyio():
        for n in sizes:
            reps = 3 if quick else (5 if n < LARGE else 3)
            peer, bare = _interleaved(
                reps, partial(anyio_task_group, n), partial(start_stop_bare, n)
            )
            case = "peer: anyio TaskGroup.start + cancel (trio backend)"
            results.append(_per_player(case, n, (peer, bare), unit="us/task"))
    k = 2000 if quick else 100_000
    ours, bare = _interleaved(
        3 if quick else 5, partial(restarts_ours, k), partial(restarts_bare, k)
    )
    results.append(
        Result(
            case="restart throughput (fail at once, no backoff)",
            n=k,
            ours=k / ours,
            bare=k / bare,
            unit="restarts/s",
            ratio=bare / ours,
            bar=">= 0.5x bare spawn rate",
            ok=ours <= 2 * bare,
        )
    )
    n = 1000 if quick else 10_000
    ours_mem = statistics.median(memory_ours(n) for _ in range(3))
    bare_mem = statistics.median(memory_bare(n) for _ in range(3))
    results.append(
        Result(
            case="memory per idle player",
            n=n,
            ours=ours_mem,
            bare=bare_mem,
            unit="bytes",
            ratio=ours_mem / bare_mem,
            bar="<= 1.75x a bare task",
            ok=ours_mem <= 1.75 * bare_mem,
        )
    )
    results.extend(_heartbeats(quick=quick))
    steps = idle_steps()
    results.append(
        Result(
            case="task steps of an idle tree in 0.5 s",
            n=3,
            ours=steps,
            bare=0,
            unit="steps",
            ratio=0.0,
            bar="0",
            ok=steps == 0,
        )
    )
    return results


def report(results: list[Result], quick: bool) -> str:  # noqa: FBT001 - the command-line switch
    """Render *results* as a markdown table, with the machine and versions."""
    machine = f"{platform.machine()} ({platform.processor() or 'cpu'})"
    lines = [
        (
            f"Measured {time.strftime('%Y-%m-%d')} on {machine},"
            f" CPython {platform.python_version()}, trio {trio.__version__},"
            f" {'quick smoke run' if quick else 'full run'}."
        ),
        "",
        "| case | N | trio_orchestra | bare Trio | unit | ratio | bar | met |",
        "|---|---:|---:|---:|---|---:|---|---|",
    ]
    lines.extend(
        f"| {r.case} | {r.n} | {r.ours:.2f} | {r.bare:.2f} | {r.unit} | {r.ratio:.2f} | {r.bar}"
        f" | {'yes' if r.ok else 'NO'} |"
        for r in results
    )
    return "\n".join(lines) + "\n"


def plot(results: list[Result], path: Path) -> bool:
    """Draw the per-player cost of start+stop against N, log-log, one line per system."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional, only for the full run

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        if r.case == "start+stop, sequential stop, GC on":
            lines.setdefault("bare Trio (nursery.start + cancel)", []).append((r.n, r.bare))
            lines.setdefault("trio_orchestra, sequential stop", []).append((r.n, r.ours))
        elif r.case == "start+stop, parallel stop, GC on":
            lines.setdefault("trio_orchestra, parallel stop", []).append((r.n, r.ours))
        elif r.case.startswith("peer: anyio"):
            lines.setdefault("anyio TaskGroup (trio backend)", []).append((r.n, r.ours))
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, points in lines.items():
        xs, ys = zip(*sorted(points), strict=True)
        axes.plot(xs, ys, marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("players (N)")
    axes.set_ylabel("start to ready + stop, microseconds per player")
    axes.set_title("Cost per player, GC on")
    axes.grid(visible=True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def main() -> int:
    """Parse the options, run, write the results, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    parser.add_argument("--output", type=Path, default=HERE, help="where to write results")
    args = parser.parse_args()
    logging.getLogger("trio_orchestra").setLevel(logging.CRITICAL)
    results = run(args.quick)
    table = report(results, args.quick)
    print(table)
    if not args.quick:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "results.json").write_text(
            json.dumps([asdict(r) for r in results], indent=2) + "\n"
        )
        (args.output / "results.md").write_text(table)
        plot(results, args.output / "results.png")
    # The smoke run only proves the cases still run; a full run fails when a bar is missed.
    return 0 if args.quick or all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
