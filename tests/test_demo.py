"""The demo's players stop well: no failure and no new job once a stop began (contract s. 5)."""

from __future__ import annotations

import logging
import random

import pytest
import trio

import trio_orchestra as orchestra
from trio_orchestra._demo import JOB_SECONDS, banner, demo_conductor, flaky, jobs_conductor


def test_flaky_is_declared_last_so_it_is_the_first_to_hear_the_stop() -> None:
    """The root stops in reverse order: flaky's token is set in the call that begins the stop."""
    conductor = demo_conductor("127.0.0.1:0")
    assert list(conductor.players) == ["web", "jobs", "sidecar", "flaky"]
    assert conductor.stop_order == "sequential"


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
    """The demo's first lines say where the tree is shown and how to stop it."""
    text = banner("127.0.0.1:8000", "127.0.0.1:8080")
    assert "http://127.0.0.1:8080/" in text
    assert "/status" in text
    assert "/readyz" in text
    assert "http://127.0.0.1:8000/" in text
    assert "python -m trio_orchestra top" in text
    assert "Ctrl-C" in text
    assert len(text.splitlines()) <= 8
    assert "PORT/ (port 0" in banner("127.0.0.1:0", "[::1]:0")
