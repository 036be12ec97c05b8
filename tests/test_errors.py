"""The failure collector: ConductorError as a group of the original exceptions (s. 3.3)."""

from __future__ import annotations

import logging
import pickle
import sys
from typing import cast

import pytest
import trio
import trio.testing

import trio_orchestra as orchestra

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


async def raises(exc: Exception) -> None:
    """Fail with *exc* after a second."""
    await trio.sleep(1)
    raise exc


async def raises_when_stopped(exc: Exception) -> None:
    """Fail with *exc* while being cancelled."""
    try:
        await trio.sleep_forever()
    finally:
        raise exc


async def tree_error() -> orchestra.ConductorError:
    """Run a two-level tree where three players fail, and return its error."""
    from functools import partial  # noqa: PLC0415

    db = orchestra.Conductor(
        {
            "pool": partial(raises, ConnectionError("pool")),
            "cache": partial(raises_when_stopped, KeyError("cache")),
        }
    )
    app = orchestra.Conductor(
        {"web": partial(raises_when_stopped, OSError("web")), "db": db}, name="app"
    )
    with pytest.raises(orchestra.ConductorError) as info:
        await app()
    return info.value


async def test_failures_flatten_the_tree_by_path(autojump_clock: trio.testing.MockClock) -> None:
    """The failures mapping: each full path to its leaf, across nesting, each exactly once."""
    error = await tree_error()
    assert {path: type(exc) for path, exc in error.failures.items()} == {
        "app/db/pool": ConnectionError,
        "app/db/cache": KeyError,
        "app/web": OSError,
    }
    nested = [exc for exc in error.exceptions if isinstance(exc, orchestra.ConductorError)]
    assert len(nested) == 1
    assert set(nested[0].failures) == {"app/db/pool", "app/db/cache"}


async def test_each_leaf_has_a_note_naming_its_path(autojump_clock: trio.testing.MockClock) -> None:
    """A PEP 678 note on each leaf names the player's path."""
    error = await tree_error()
    for path, exc in error.failures.items():
        assert getattr(exc, "__notes__", None) == [f"raised in player {path!r}"]


async def test_no_cancelled_appears(autojump_clock: trio.testing.MockClock) -> None:
    """Our own trio.Cancelled never appears in the group, at any depth."""
    error = await tree_error()

    def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
        found: list[BaseException] = []
        for exc in group.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                found.extend(leaves(cast("BaseExceptionGroup[BaseException]", exc)))
            else:
                found.append(exc)
        return found

    assert len(leaves(error)) == 3
    assert not any(isinstance(exc, trio.Cancelled) for exc in leaves(error))


async def test_split_and_subgroup_keep_the_class_and_the_mapping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """split/subgroup return ConductorErrors whose failures hold just what they kept."""
    error = await tree_error()
    matched, rest = error.split(ConnectionError)
    assert isinstance(matched, orchestra.ConductorError)
    assert isinstance(rest, orchestra.ConductorError)
    assert set(matched.failures) == {"app/db/pool"}
    assert set(rest.failures) == {"app/db/cache", "app/web"}
    sub = error.subgroup(
        lambda exc: isinstance(exc, OSError) and not isinstance(exc, ConnectionError)
    )
    assert isinstance(sub, orchestra.ConductorError)
    assert set(sub.failures) == {"app/web"}
    derived = error.derive([KeyError("x")])
    assert isinstance(derived, orchestra.ConductorError)
    assert derived.message == error.message


async def test_a_players_group_split_keeps_its_path(autojump_clock: trio.testing.MockClock) -> None:
    """Splitting into a player's own ExceptionGroup still finds its path (through its note)."""

    async def grouped() -> None:
        raise ExceptionGroup("batch", [ValueError(1), KeyError(2)])

    with pytest.raises(orchestra.ConductorError) as info:
        await orchestra.Conductor({"batch": grouped}, name="app")()
    matched, _ = info.value.split(ValueError)
    assert isinstance(matched, orchestra.ConductorError)
    assert list(matched.failures) == ["app/batch"]


def test_the_library_exceptions_say_what_happened() -> None:
    """StartTimeout, StopTimeout and TooManyRestarts: one sentence, attributes, picklable."""
    cases = [
        (
            orchestra.StartTimeout("app/db", 10),
            "player 'app/db' did not report started within 10 s",
        ),
        (
            orchestra.StopTimeout("app/web", 2.5),
            "player 'app/web' was still running 2.5 s after it was cancelled",
        ),
        (
            orchestra.TooManyRestarts("app/q", 3, 5),
            "player 'app/q' needed more than 3 restarts within 5 s",
        ),
    ]
    for exc, message in cases:
        assert str(exc) == message
        copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own object
        assert (type(copy), str(copy)) == (type(exc), message)


async def test_events_are_logged_with_the_path(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Started, stopping, stopped and failed go to the trio_orchestra logger with the path."""
    from functools import partial  # noqa: PLC0415

    async def listens() -> None:
        await orchestra.current_stop().wait()

    conductor = orchestra.Conductor(
        {"ok": listens, "bad": partial(raises, ValueError("x"))}, name="app"
    )
    with (
        caplog.at_level(logging.INFO, logger="trio_orchestra"),
        pytest.raises(orchestra.ConductorError),
    ):
        await conductor()
    records = [(r.levelname, r.path, r.getMessage()) for r in caplog.records]  # type: ignore[attr-defined]
    assert records == [
        ("INFO", "app/ok", "player app/ok started"),
        ("INFO", "app/bad", "player app/bad started"),
        ("ERROR", "app/bad", "player app/bad failed: ValueError('x')"),
        ("INFO", "app", "conductor app stopping: player 'app/bad' failed"),  # the root, once
        ("INFO", "app/ok", "player app/ok stopping, with 5 s to finish"),
        ("INFO", "app/ok", "player app/ok stopped"),
    ]


async def test_a_handled_failure_is_one_warning_line_with_its_traceback_at_debug(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted failure: one WARNING line without traceback; the traceback at DEBUG."""
    from functools import partial  # noqa: PLC0415

    flaky = orchestra.PlayerSpec(
        partial(raises, ValueError("x")), restart=orchestra.Restart.ON_FAILURE, backoff=None
    )
    conductor = orchestra.Conductor({"flaky": flaky}, name="app", max_restarts=1)
    with (
        caplog.at_level(logging.DEBUG, logger="trio_orchestra"),
        pytest.raises(orchestra.ConductorError),
    ):
        await conductor()
    failures = [
        (r.levelname, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if "failed" in r.getMessage() or "traceback" in r.getMessage()
    ]
    assert failures == [
        ("WARNING", "player app/flaky failed and will be restarted: ValueError('x')", False),
        ("DEBUG", "the traceback of that failure of player app/flaky:", True),
        ("ERROR", "player app/flaky failed: ValueError('x')", True),  # the one reported
    ]


async def test_a_path_format_works_for_every_record(autojump_clock: trio.testing.MockClock) -> None:
    """PathFilter: %(path)s names the player a record comes from, or '-' outside of one."""
    import io  # noqa: PLC0415

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(orchestra.PathFilter())
    handler.setFormatter(logging.Formatter("%(name)s %(path)s %(message)s"))
    mine = logging.getLogger("myapp")
    for logger in (mine, logging.getLogger("trio_orchestra")):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    async def work() -> None:
        mine.info("working")

    try:
        mine.info("outside")
        await orchestra.Conductor({"work": work}, name="app")()
    finally:
        for logger in (mine, logging.getLogger("trio_orchestra")):
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
    assert stream.getvalue().splitlines() == [
        "myapp - outside",
        "trio_orchestra app/work player app/work started",
        "myapp app/work working",  # the application's own record, inside the player
        "trio_orchestra app/work player app/work finished",
    ]


def test_the_library_logger_gives_its_records_a_path() -> None:
    """A record of the library's logger without a player's path gets '-', not a KeyError."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    library = logging.getLogger("trio_orchestra")
    library.addHandler(keep)
    try:
        library.warning("no player here")
    finally:
        library.removeHandler(keep)
    assert [record.path for record in records] == ["-"]  # type: ignore[attr-defined]
