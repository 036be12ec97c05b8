"""The tree's metrics on prometheus-client: TreeCollector, /metrics, promtool, stop histograms."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Iterator
from typing import cast

import httpx
import prometheus_client
import prometheus_client.openmetrics.parser
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

import trio_orchestra as orchestra
from trio_orchestra._health import RegistryClashError
from trio_orchestra._metrics import FAMILY_NAMES, tree_families
from trio_orchestra._stoptimes import BUCKETS
from trio_orchestra.testing import ScriptedPlayer, background

from .test_health import HOST, beats_every_second, free_port, ready, served, state_is, until

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="Debian's prometheus (promtool) is not installed (CI installs it; there it must run)",
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: prometheus-client's OpenMetrics parser (untyped there).
openmetrics_families = cast(
    "Callable[[str], Iterator[prometheus_client.Metric]]",
    prometheus_client.openmetrics.parser.text_string_to_metric_families,  # pyright: ignore[reportUnknownMemberType]
)


def samples_of(text: str) -> Samples:
    """Every sample of a text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def polite() -> None:
    """A subscribed player that returns 0.02 s after its stop is requested."""
    stop = orchestra.current_stop()
    await stop.wait()
    await trio.sleep(0.02)


@pytest.fixture
def jobs_counter() -> Iterator[prometheus_client.Counter]:
    """An application's own counter on the default registry, removed after the test."""
    counter = prometheus_client.Counter("shop_orders", "Orders taken.", ["kind"])
    try:
        yield counter
    finally:
        prometheus_client.REGISTRY.unregister(counter)


def busy_tree() -> tuple[orchestra.Conductor, ScriptedPlayer]:
    """A tree with something in every family: a backoff, a liveness, a nesting, stops."""
    failing = ScriptedPlayer()
    conductor = orchestra.Conductor(
        {
            "db": ready,
            "polite": polite,
            "consumer": orchestra.PlayerSpec(beats_every_second, liveness=30),
            "jobs": orchestra.Conductor({"pool": ready, "caf\udce9": ready}),
            "worker": orchestra.PlayerSpec(
                failing,
                restart=orchestra.Restart.ON_FAILURE,
                backoff=orchestra.Backoff(initial=600, maximum=600, jitter=0),
            ),
        },
        name="app",
    )
    return conductor, failing


@needs_promtool
async def test_promtool_and_the_parser_accept_metrics_with_the_apps_own_counter(
    jobs_counter: prometheus_client.Counter,
) -> None:
    """/metrics serves the default registry: the tree's families beside the app's own counter."""
    jobs_counter.labels(kind="online").inc(3)
    conductor, failing = busy_tree()
    async with served(conductor) as client:
        await conductor.restart("polite")  # one stop for the histogram
        failing.fail(ValueError("lost the connection"))
        await until(state_is(conductor, orchestra.PlayerState.BACKOFF, "worker"))
        metrics = await client.get("/metrics")
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert PROMTOOL is not None, "CI must install prometheus (promtool; see .ci/run)"
    with trio.fail_after(30):
        checked = await trio.run_process(
            [PROMTOOL, "check", "metrics"],
            stdin=metrics.content,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")

    samples = samples_of(metrics.text)
    assert samples[("shop_orders_total", (("kind", "online"),))] == 3  # the app's own
    assert ("process_cpu_seconds_total", ()) in samples  # the default registry's collectors
    assert samples[("trio_orchestra_ready", ())] == 0
    backoff = (("path", "app/worker"), ("state", "backoff"))
    assert samples[("trio_orchestra_player_state", backoff)] == 1
    assert samples[("trio_orchestra_player_restarts_total", (("path", "app/worker"),))] == 1
    assert samples[("trio_orchestra_player_uptime_seconds", (("path", "app/worker"),))] == 0
    assert samples[("trio_orchestra_player_uptime_seconds", (("path", "app/db"),))] > 0
    assert samples[("trio_orchestra_player_state", (("path", "app/jobs/caf?"), backoff[1]))] == 0
    ages = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "trio_orchestra_player_heartbeat_age_seconds"
    }
    assert list(ages) == [(("path", "app/consumer"),)]
    soft = (("path", "app/polite"), ("phase", "soft"))
    assert samples[("trio_orchestra_stop_seconds_count", soft)] == 1
    assert 0.02 <= samples[("trio_orchestra_stop_seconds_sum", soft)] < 1
    assert samples[("trio_orchestra_stop_seconds_bucket", (("le", "0.01"), *soft))] == 0
    assert samples[("trio_orchestra_stop_seconds_bucket", (("le", "+Inf"), *soft))] == 1


async def test_openmetrics_is_served_when_the_scraper_asks_for_it() -> None:
    """An Accept of application/openmetrics-text gets OpenMetrics; anything else, text 0.0.4."""
    conductor = orchestra.Conductor({"db": ready}, name="app")
    async with served(conductor) as client:
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        asked = await client.get("/metrics", headers={"accept": accept})
        plain = await client.get("/metrics", headers={"accept": "text/html"})
    assert asked.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert asked.text.endswith("# EOF\n")
    families = {family.name: family for family in openmetrics_families(asked.text)}
    assert families["trio_orchestra_player_restarts"].type == "counter"
    assert families["trio_orchestra_stop_seconds"].type == "histogram"
    running = {"path": "app/db", "state": "running"}
    assert [s.value for s in families["trio_orchestra_player_state"].samples if s.labels == running]
    assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_a_registry_of_its_own_and_a_second_run_in_one_process() -> None:
    """registry= is what /metrics serves; the tree's collector leaves it when the run ends."""
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Gauge("shop_queue_length", "Orders waiting.", registry=registry).set(7)
    conductor = orchestra.Conductor({"db": ready}, name="app")
    for _ in range(2):  # the same registry, and the same conductor, twice in one process
        port = free_port()
        async with trio.open_nursery() as nursery:
            run = functools.partial(
                orchestra.play_until_signal, health=f"{HOST}:{port}", registry=registry
            )
            nursery.start_soon(run, conductor)
            await until(state_is(conductor, orchestra.PlayerState.RUNNING))
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://{HOST}:{port}/metrics")).text
            conductor.stop("test over")
        samples = samples_of(text)
        assert samples[("shop_queue_length", ())] == 7
        assert samples[("trio_orchestra_ready", ())] == 1
        assert ("process_cpu_seconds_total", ()) not in samples  # not the default registry
        assert registry.get_sample_value("trio_orchestra_ready") is None  # gone with the run


async def test_two_trees_on_one_registry_is_refused_before_any_player_starts() -> None:
    """The second endpoint on a registry that serves a tree says so and starts nothing."""
    first = orchestra.Conductor({"db": ready}, name="first")
    ran: list[str] = []

    async def player() -> None:
        ran.append("player")

    second = orchestra.Conductor({"player": player}, name="second")
    async with served(first):
        with pytest.raises(
            RegistryClashError,
            match=r"^the health endpoint on 127\.0\.0\.1:\d+ cannot serve the metrics of"
            r" 'second': its registry already has trio_orchestra_ready, .*; give each tree a"
            r" registry of its own \(registry=prometheus_client\.CollectorRegistry\(\)\)$",
        ):
            await orchestra.play_until_signal(second, health=f"{HOST}:{free_port()}")
    assert ran == []


async def test_a_registry_without_a_health_endpoint_is_refused() -> None:
    """registry= only says what /metrics serves: without health= it is a clear ValueError."""
    with pytest.raises(ValueError, match=r"^the runner: registry= is what the health endpoint"):
        await orchestra.play_until_signal(ready, registry=prometheus_client.CollectorRegistry())


def test_the_collector_checks_its_argument_and_describes_its_families() -> None:
    """TreeCollector takes a Conductor; describe() names every family without a snapshot."""
    with pytest.raises(TypeError, match=r"^TreeCollector: conductor must be a Conductor, not str$"):
        orchestra.TreeCollector("app")  # type: ignore[arg-type]
    conductor = orchestra.Conductor({"db": ready}, name="app")
    collector = orchestra.TreeCollector(conductor)
    assert collector.conductor is conductor
    assert repr(collector) == "<TreeCollector of 'app'>"
    assert tuple(family.name for family in collector.describe()) == FAMILY_NAMES
    families = {family.name: family for family in collector.collect()}  # never run: all starting
    assert tuple(families) == FAMILY_NAMES
    assert [s.value for s in families["trio_orchestra_player_uptime_seconds"].samples] == [0, 0]


async def test_a_collector_is_read_from_another_thread_through_trio() -> None:
    """As prometheus-client's own server does: collect() in a thread takes a consistent snapshot."""
    conductor = orchestra.Conductor({"db": ready, "jobs": orchestra.Conductor({"pool": ready})})
    registry = prometheus_client.CollectorRegistry()
    registry.register(orchestra.TreeCollector(conductor))
    async with background(conductor):
        text = await trio.to_thread.run_sync(prometheus_client.generate_latest, registry)
    samples = samples_of(text.decode())
    running = (("path", "conductor/jobs/pool"), ("state", "running"))
    assert samples[("trio_orchestra_player_state", running)] == 1
    after = samples_of(prometheus_client.generate_latest(registry).decode())  # outside Trio
    done = (("path", "conductor/jobs/pool"), ("state", "done"))
    assert after[("trio_orchestra_player_state", done)] == 1


def _buckets(collector: orchestra.TreeCollector, path: str, phase: str) -> dict[str, float]:
    """The ``le`` -> cumulative count of one histogram, plus its ``sum`` and ``count``."""
    found: dict[str, float] = {}
    for family in collector.collect():
        for sample in family.samples:
            if sample.labels.get("path") != path or sample.labels.get("phase") != phase:
                continue
            key = sample.labels.get("le") or sample.name.rpartition("_")[2]
            found[key] = sample.value
    return found


async def test_the_stop_histogram_counts_each_phase_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """soft: request to return (or to the hard cancel); hard: cancel to gone. Exact times."""

    async def returns_after_2s() -> None:
        stop = orchestra.current_stop()
        await stop.wait()
        await trio.sleep(2)

    async def ignores_its_soft_phase() -> None:
        orchestra.current_stop()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)  # its cleanup, after the hard cancel

    conductor = orchestra.Conductor(
        {
            "plain": ready,
            "polite": returns_after_2s,
            "stubborn": orchestra.PlayerSpec(ignores_its_soft_phase, grace=5),
            "pool": orchestra.Conductor({"inner": returns_after_2s}),
        },
        name="app",
        stop_order="parallel",
    )
    collector = orchestra.TreeCollector(conductor)
    async with background(conductor) as run:
        await conductor.restart("polite")  # a restart's stop counts too
        await run.stop()

    def expect(seconds: float, count: int) -> dict[str, float]:
        buckets = {repr(bound): float(count if seconds <= bound else 0) for bound in BUCKETS}
        return {**buckets, "+Inf": count, "count": count, "sum": seconds * count}

    assert _buckets(collector, "app/polite", "soft") == expect(2.0, 2)
    assert _buckets(collector, "app/polite", "hard") == {}  # it returned in its soft phase
    assert _buckets(collector, "app/stubborn", "soft") == expect(5.0, 1)  # until its cancel
    assert _buckets(collector, "app/stubborn", "hard") == expect(1.0, 1)  # its cleanup
    assert _buckets(collector, "app/plain", "soft") == {}  # never asked for its token
    assert _buckets(collector, "app/plain", "hard") == expect(0.0, 1)
    assert _buckets(collector, "app/pool/inner", "soft") == expect(2.0, 1)  # nested: the tree's
    assert _buckets(collector, "app/pool", "soft") == expect(2.0, 1)  # a conductor: its players'


def test_the_families_of_a_snapshot_keep_odd_names_readable() -> None:
    """A quote, a newline and a lone surrogate in a name survive the text format."""
    conductor = orchestra.Conductor({'we"ird\nname': ready, "caf\udce9": ready}, name="app")
    registry = prometheus_client.CollectorRegistry()

    class Snapshot:
        def collect(self) -> list[prometheus_client.Metric]:
            return tree_families(conductor.status(), 0.0)

    registry.register(Snapshot())
    text = prometheus_client.generate_latest(registry).decode()
    labels = {labels for (_, labels) in samples_of(text)}
    assert (("path", 'app/we"ird\nname'),) in labels
    assert (("path", "app/caf?"),) in labels


def test_run_exits_1_when_its_registry_serves_a_tree_already(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The clash is one line on stderr and exit status 1; no player has started."""
    registry = prometheus_client.CollectorRegistry()
    registry.register(orchestra.TreeCollector(orchestra.Conductor({"db": ready}, name="other")))
    ran: list[str] = []

    async def player() -> None:
        ran.append("player")

    with pytest.raises(SystemExit) as exited:
        orchestra.run(player, health=f"{HOST}:{free_port()}", registry=registry)
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith("trio_orchestra: the health endpoint on 127.0.0.1:")
    assert ran == []
