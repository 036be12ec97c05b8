"""The demo's players stop well: no failure and no new job once a stop began (contract s. 5)."""

from __future__ import annotations

import logging
import random

import pytest
import trio

import trio_orchestra as orchestra
from trio_orchestra._demo import (
    DRAIN,
    JOB_SECONDS,
    STOP_WITHIN,
    banner,
    database,
    demo_conductor,
    flaky,
    jobs_conductor,
)


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


def test_the_banner_points_to_the_health_page_and_the_coming_live_view() -> None:
    """The demo's first lines say what the graph is, where it is shown, and how to stop it."""
    text = banner("127.0.0.1:8000", "127.0.0.1:8080")
    assert "http://127.0.0.1:8080/" in text
    assert "/status" in text
    assert "/readyz" in text
    assert "http://127.0.0.1:8000/" in text
    assert "python -m trio_orchestra top" in text
    assert "Ctrl-C once: 2 s of draining (/readyz 503)" in text
    assert "db and cache, then jobs (after db) and web (after both)" in text
    assert len(text.splitlines()) <= 8
    assert "PORT/ (port 0" in banner("127.0.0.1:0", "[::1]:0")


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
