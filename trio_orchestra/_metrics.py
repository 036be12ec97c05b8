"""The tree as Prometheus metrics, on prometheus-client: :class:`TreeCollector`.

Why this module: an application's own metrics belong on the same ``/metrics`` as the tree's,
and prometheus-client is what Python applications already count with. So the tree is a
*collector* (prometheus-client's custom collector protocol): registered on a registry, it
turns one :meth:`Conductor.status` snapshot into metric families each time the registry is
collected, and prometheus-client writes the text format, or OpenMetrics when the scraper asks
for it. prometheus-client is imported only when metrics are collected or served (it comes with
the ``health`` extra, or alone with ``metrics``).

The families, each with a ``path`` label (the player's full path; the root conductor too):

* ``trio_orchestra_ready``: 1 when ``/readyz`` answers 200, else 0 (no labels);
* ``trio_orchestra_player_state{path,state}``: 1 for the player's state, 0 for the others;
* ``trio_orchestra_player_restarts_total{path}``: restarts in the conductor's current run;
* ``trio_orchestra_player_uptime_seconds{path}``: seconds since it became started, 0 unless
  it is started (running or stopping);
* ``trio_orchestra_player_heartbeat_age_seconds{path}``: seconds since the last heartbeat,
  for the running players with a liveness only;
* ``trio_orchestra_stop_seconds{path,phase}``: a histogram of the phases of each player's stops
  (``soft``, ``hard``: see :mod:`trio_orchestra._stoptimes`).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, final

import trio

from ._checks import check_type
from ._conductor import Conductor
from ._lifecycle import PlayerState
from ._report import heartbeat_age, readiness, uptime
from ._status import PlayerStatus
from ._stoptimes import StopTimes

if TYPE_CHECKING:  # an optional extra, imported when metrics are collected
    import prometheus_client

__all__ = ["FAMILY_NAMES", "TreeCollector", "check_installed", "exposition", "tree_families"]

#: The names of the families a :class:`TreeCollector` yields (as a registry knows them).
FAMILY_NAMES = (
    "trio_orchestra_ready",
    "trio_orchestra_player_state",
    "trio_orchestra_player_restarts",
    "trio_orchestra_player_uptime_seconds",
    "trio_orchestra_player_heartbeat_age_seconds",
    "trio_orchestra_stop_seconds",
)


def check_installed(where: str) -> None:
    """Raise a clear error now, before anything runs, if prometheus-client is missing."""
    if importlib.util.find_spec("prometheus_client") is None:
        msg = (
            f"{where} needs prometheus-client, which is not installed;"
            " pip install 'trio-orchestra[health]'"
        )
        raise ModuleNotFoundError(msg, name="prometheus_client")


def _label(value: str) -> str:
    """*value* as a label prometheus-client can encode: a lone surrogate becomes ``?``."""
    return value.encode("utf-8", "replace").decode("utf-8")


def tree_families(
    tree: PlayerStatus, now: float, stops: StopTimes | None = None
) -> list[prometheus_client.Metric]:
    """The families of *tree* at *now* (Trio time), with the stop histograms of *stops*."""
    from prometheus_client.core import (  # noqa: PLC0415 - an optional extra, imported late
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    nodes = [(node, _label(node.path)) for node in tree.walk()]
    ready = GaugeMetricFamily("trio_orchestra_ready", "1 when /readyz answers 200, else 0.")
    ready.add_metric([], 0 if readiness(tree) else 1)
    states = GaugeMetricFamily(
        "trio_orchestra_player_state", "1 for the player's state, else 0.", labels=["path", "state"]
    )
    restarts = CounterMetricFamily(
        "trio_orchestra_player_restarts",
        "Restarts in the conductor's current run.",
        labels=["path"],
    )
    up = GaugeMetricFamily(
        "trio_orchestra_player_uptime_seconds",
        "Seconds since the player became started (0 when it is not).",
        labels=["path"],
    )
    beat = GaugeMetricFamily(
        "trio_orchestra_player_heartbeat_age_seconds",
        "Seconds since the last heartbeat of a running player with a liveness.",
        labels=["path"],
    )
    for node, path in nodes:
        for state in PlayerState:
            states.add_metric([path, state.value], 1 if node.state is state else 0)
        restarts.add_metric([path], node.restarts)
        up.add_metric([path], uptime(node, now) or 0.0)
        age = heartbeat_age(node, now)
        if age is not None:
            beat.add_metric([path], age)
    stop = HistogramMetricFamily(
        "trio_orchestra_stop_seconds",
        "Seconds each phase of a player's stop took: soft (until it returned, or its hard"
        " cancel), hard (from its hard cancel until it was gone).",
        labels=["path", "phase"],
    )
    if stops is not None:
        for (path, phase), histogram in stops.histograms.items():
            stop.add_metric([_label(path), phase], histogram.cumulative(), sum_value=histogram.sum)
    return [ready, states, restarts, up, beat, stop]


@final
class TreeCollector:
    """A prometheus-client collector of *conductor*'s tree: register it to serve the tree.

    `run` and `play_until_signal` with ``health=`` register one on their registry for the
    run (see :doc:`/operations`); make your own to serve the tree's metrics yourself, with
    prometheus-client's ``start_http_server`` or your web framework. Each collection takes
    one :meth:`Conductor.status` snapshot: it costs nothing between scrapes. It may be
    collected from any thread (``start_http_server`` serves from one): while the tree runs,
    the snapshot is taken in Trio's thread, through :func:`trio.from_thread.run_sync`.

    The stop histogram (``trio_orchestra_stop_seconds``) counts the stops that happen after
    the first collector of *conductor* was made. Give it the root conductor: it collects the
    whole tree below. Needs prometheus-client (the ``health`` or ``metrics`` extra).

    Example::

        import prometheus_client

        conductor = orchestra.Conductor({"web": web, "jobs": jobs}, name="app")
        prometheus_client.REGISTRY.register(orchestra.TreeCollector(conductor))
        prometheus_client.start_http_server(9100)
        orchestra.run(conductor)
    """

    def __init__(self, conductor: Conductor) -> None:
        """Collect *conductor*'s tree; its stop times are recorded from now on."""
        check_installed("TreeCollector")
        check_type(conductor, Conductor, "TreeCollector: conductor", "a Conductor")
        self._conductor = conductor
        self._stops = conductor._record_stops()

    @property
    def conductor(self) -> Conductor:
        """The conductor whose tree it collects."""
        return self._conductor

    def __repr__(self) -> str:
        return f"<TreeCollector of {self._conductor.path!r}>"

    def describe(self) -> list[prometheus_client.Metric]:
        """The families it yields, without samples: what a registry checks names with.

        Example::

            [family.name for family in collector.describe()]  # ["trio_orchestra_ready", ...]
        """
        from prometheus_client.core import Metric  # noqa: PLC0415 - an optional extra

        kinds = ("gauge", "gauge", "counter", "gauge", "gauge", "histogram")
        return [Metric(name, "", kind) for name, kind in zip(FAMILY_NAMES, kinds, strict=True)]

    def collect(self) -> Iterator[prometheus_client.Metric]:
        """The tree's families now, from one snapshot (a registry calls it at each scrape).

        Example::

            for family in collector.collect():
                print(family.name, len(family.samples))
        """
        tree, now = self._snapshot()
        yield from tree_families(tree, now, self._stops)

    def _snapshot(self) -> tuple[PlayerStatus, float]:
        """The tree and Trio's time, read in Trio's thread while the tree runs."""
        conductor = self._conductor
        token = conductor._trio_token
        if trio.lowlevel.in_trio_run():
            if token is None or token is trio.lowlevel.current_trio_token():
                return conductor.status(), trio.current_time()
        elif token is not None and conductor._running:
            try:
                return trio.from_thread.run_sync(_read, conductor, trio_token=token)
            except trio.RunFinishedError:
                pass  # it has just returned: its status no longer moves
        return conductor.status(), math.nan  # not running: no player is up, no time needed


def _read(conductor: Conductor) -> tuple[PlayerStatus, float]:
    return conductor.status(), trio.current_time()


def exposition(registry: prometheus_client.CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """*registry*'s metrics in the format *accept* asks for: the body, and its content type.

    The Prometheus text format (0.0.4) by default; OpenMetrics when *accept* names
    ``application/openmetrics-text`` (prometheus-client's own negotiation).
    """
    from prometheus_client.exposition import choose_encoder  # noqa: PLC0415 - optional extra

    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
