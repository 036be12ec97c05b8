"""Validation before anything runs: one sentence naming the player and the rule (s. 3)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytest
import trio

import trio_orchestra as orchestra


async def idle() -> None:
    """A player that does nothing."""


async def ready(*, task_status: trio.TaskStatus[None]) -> None:
    """A player with readiness."""
    task_status.started()


def not_async() -> None:
    """Not a player."""


class AsyncCallable:
    """An object whose __call__ is async is a player too."""

    async def __call__(self) -> None:
        """Do nothing."""


def test_a_spec_binds_arguments_and_options() -> None:
    """PlayerSpec(fn, *args, options) is a frozen value."""
    spec = orchestra.PlayerSpec(idle, 1, "two", grace=3, significant=True)
    assert (spec.fn, spec.args, spec.grace, spec.significant) == (idle, (1, "two"), 3, True)
    assert spec.start_timeout is None
    assert not spec.takes_task_status
    with pytest.raises(AttributeError):
        spec.grace = 4  # type: ignore[misc]


def test_readiness_is_detected_once_from_the_signature() -> None:
    """A task_status keyword, also through partial and async __call__, means readiness."""
    assert orchestra.PlayerSpec(ready).takes_task_status
    assert orchestra.PlayerSpec(partial(ready)).takes_task_status
    assert not orchestra.PlayerSpec(AsyncCallable()).takes_task_status
    assert orchestra.PlayerSpec(orchestra.Conductor()).takes_task_status


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: orchestra.PlayerSpec(not_async),  # type: ignore[arg-type]
            TypeError,
            (
                r"^PlayerSpec\(not_async\): a player must be an async callable \(async def\), and"
                r" not_async is not; bind arguments with PlayerSpec\(fn, \*args\), not a lambda$"
            ),
        ),
        (
            lambda: orchestra.PlayerSpec(42),  # type: ignore[arg-type]
            TypeError,
            r"^PlayerSpec\(int\): a player must be an async callable, not int$",
        ),
        (
            lambda: orchestra.PlayerSpec(idle, grace="5"),  # type: ignore[arg-type]
            TypeError,
            r"^PlayerSpec\(idle\): grace must be a number of seconds, not str$",
        ),
        (
            lambda: orchestra.PlayerSpec(idle, grace=-1),
            ValueError,
            r"^PlayerSpec\(idle\): grace must be zero or more seconds, not -1$",
        ),
        (
            lambda: orchestra.PlayerSpec(idle, grace=math.nan),
            ValueError,
            r"^PlayerSpec\(idle\): grace must be zero or more seconds, not nan$",
        ),
        (
            lambda: orchestra.PlayerSpec(idle, grace=True),
            TypeError,
            r"^PlayerSpec\(idle\): grace must be a number of seconds, not bool$",
        ),
        (
            lambda: orchestra.PlayerSpec(idle, significant="yes"),  # type: ignore[arg-type]
            TypeError,
            r"^PlayerSpec\(idle\): significant must be a bool, not str$",
        ),
        (
            lambda: orchestra.PlayerSpec(idle, start_timeout=5),
            ValueError,
            (
                r"^PlayerSpec\(idle\): start_timeout needs a player that takes task_status,"
                r" since a plain player cannot fail to start$"
            ),
        ),
        (
            lambda: orchestra.PlayerSpec(ready, start_timeout=-2),
            ValueError,
            r"^PlayerSpec\(ready\): start_timeout must be zero or more seconds, not -2$",
        ),
    ],
)
def test_a_bad_spec_is_refused(call: Any, error: type[Exception], message: str) -> None:  # noqa: ANN401
    """Wrong types are TypeErrors, broken rules ValueErrors, each one sentence."""
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    ("players", "options", "error", "message"),
    [
        ({"": idle}, {}, ValueError, r"^conductor 'app': player name '' must be non-empty"),
        ({"a/b": idle}, {}, ValueError, r"^conductor 'app': player name 'a/b' must be .* no '/'$"),
        ({1: idle}, {}, TypeError, r"^conductor 'app': player name must be a str, not int$"),
        (
            {"db": not_async},
            {},
            TypeError,
            r"^player app/db: a player must be an async callable \(async def\)",
        ),
        ({"db": "idle"}, {}, TypeError, r"^player app/db: a player must be an async callable"),
        ([idle], {}, TypeError, r"^conductor 'app': players must be a mapping of name to player"),
        ({}, {"grace": "5"}, TypeError, r"^conductor 'app': grace must be a number of seconds"),
        ({}, {"grace": -5}, ValueError, r"^conductor 'app': grace must be zero or more seconds"),
        (
            {},
            {"stop_order": "random"},
            ValueError,
            r"^conductor 'app': stop_order must be 'sequential' or 'parallel', not 'random'$",
        ),
    ],
)
def test_a_bad_conductor_is_refused_before_anything_runs(
    players: Any,  # noqa: ANN401
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    """Every player and option is checked at construction."""
    with pytest.raises(error, match=message):
        orchestra.Conductor(players, name="app", **options)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("", ValueError, r"^Conductor name '' must be non-empty and contain no '/'$"),
        ("a/b", ValueError, r"^Conductor name 'a/b' must be non-empty and contain no '/'$"),
        (3, TypeError, r"^Conductor name must be a str, not int$"),
    ],
)
def test_a_bad_conductor_name_is_refused(
    name: Any,  # noqa: ANN401
    error: type[Exception],
    message: str,
) -> None:
    """The conductor's own name follows the same rules as player names."""
    with pytest.raises(error, match=message):
        orchestra.Conductor(name=name)


def test_the_conductor_keeps_its_declaration() -> None:
    """name, grace, stop_order and players (as specs, in order) are readable."""
    conductor = orchestra.Conductor({"b": idle, "a": ready}, name="app", grace=2)
    assert (conductor.name, conductor.grace, conductor.stop_order) == ("app", 2, "sequential")
    assert list(conductor.players) == ["b", "a"]
    assert conductor.players["a"].takes_task_status
    assert conductor.path == "app"
    assert repr(conductor) == "<Conductor 'app' with 2 players>"
