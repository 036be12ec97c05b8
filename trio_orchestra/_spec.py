"""What a player is: the callable, its bound arguments and its options, validated up front.

Why this module: a supervisor must refuse a broken spec before anything runs (OTP's
``check_childspecs``), with one sentence that names the player and the rule. Everything that can
be checked without running code is checked here, once, at construction; the callable's
signature is inspected once per callable, not once per start.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal, cast, final

import attrs

from ._checks import check_time, check_type
from ._supervision import DEFAULT_BACKOFF, Backoff, Restart

__all__ = [
    "PlayerSpec",
    "as_spec",
    "check_async_callable",
    "check_time",
    "check_type",
    "describe",
    "wants_task_status",
]

AsyncFn = Callable[..., Awaitable[object]]

_task_status_cache: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()


def describe(fn: object) -> str:
    """Name a callable for an error message."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return str(name)


def _is_async_callable(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we need the async __call__ itself
    return call is not None and not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def _inspect_task_status(fn: object) -> bool:
    try:
        params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    param = params.get("task_status")
    return param is not None and param.kind in {
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    }


def wants_task_status(fn: object) -> bool:
    """Tell whether *fn* takes a ``task_status`` keyword (cached per callable)."""
    try:
        return _task_status_cache[fn]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable, or unhashable: inspect every time
        return _inspect_task_status(fn)
    found = _inspect_task_status(fn)
    _task_status_cache[fn] = found
    return found


def check_async_callable(fn: object, what: str) -> None:
    """Raise ``TypeError`` saying that *what* must be an async callable, unless it is one."""
    if not _is_async_callable(fn):
        kind = describe(fn) if callable(fn) else type(fn).__name__
        msg = f"{what} must be an async callable (async def), and {kind} is not"
        raise TypeError(msg)


def _check_callable(fn: object, where: str) -> None:
    if not callable(fn):
        msg = f"{where}: a player must be an async callable, not {type(fn).__name__}"
        raise TypeError(msg)
    if not _is_async_callable(fn):
        msg = (
            f"{where}: a player must be an async callable (async def), and {describe(fn)}"
            " is not; bind arguments with PlayerSpec(fn, *args), not a lambda"
        )
        raise TypeError(msg)


@final
@attrs.frozen(init=False)
class PlayerSpec:
    """An immutable description of one player: an async callable, its arguments, its options.

    Args:
        fn: the async callable; called as ``fn(*args)``, plus ``task_status=`` if it takes one.
        *args: positional arguments bound to *fn*.
        grace: seconds of soft phase when it is stopped (``None``: its conductor's ``grace``;
            for a nested conductor, its own stop budget).
        restart: when to start it again after it ends: a :class:`Restart`, or its value as a
            string (``"never"``, ``"on_failure"``, ``"always"``), as ``strategy`` is one;
            default ``NEVER``.
        significant: when it returns normally, its conductor stops the others and returns
            (a batch "main" player; OTP's ``significant`` child). Not with ``Restart.ALWAYS``.
        start_timeout: seconds it may take to call ``task_status.started()``, after which it
            fails to start with :class:`StartTimeout`. Only for players that take
            ``task_status``: a plain player cannot fail to start.
        backoff: the delays between its restarts (:class:`Backoff`; ``None`` restarts at
            once). Only used when ``restart`` restarts it.
        after: the names of siblings (players of the same conductor) that must be started
            before it starts, and that stay up until it has stopped: ``("db", "cache")``.
            ``None`` (the default): after the player declared just before it, so a conductor
            whose players name no dependency starts them in a line and stops them in
            reverse. ``()``: after nothing; such players start side by side. The names are
            checked by the conductor (unknown names and cycles are ``ValueError``).
        ready_required: whether its conductor counts it for readiness (default ``True``).
            ``False``: while it starts, restarts or stops, the tree stays ready (``/readyz``
            answers 200), for a player that serves no traffic, such as a periodic job or one
            worker of many. See also the conductor's ``min_ready``.
        liveness: seconds it may go without calling :func:`heartbeat` once it is started
            (default ``None``: no liveness). Silent longer, it is *hung*: its conductor logs
            where it is stuck, stops it (soft phase, then hard) and fails it with
            :class:`PlayerHung`, so its restart policy applies. Not for a nested conductor
            (give its players a liveness).

    Example::

        orchestra.PlayerSpec(worker, queue, grace=30)
        orchestra.PlayerSpec(migrate, significant=True)
        orchestra.PlayerSpec(consume, restart=orchestra.Restart.ON_FAILURE)
        orchestra.PlayerSpec(report, restart="always", ready_required=False)
        orchestra.PlayerSpec(web_server, after=("db", "cache"))
        orchestra.PlayerSpec(consume, liveness=30, restart="on_failure")
    """

    fn: Callable[..., Awaitable[object]]
    args: tuple[Any, ...]
    grace: float | None
    restart: Restart
    significant: bool
    start_timeout: float | None
    backoff: Backoff | None
    ready_required: bool
    after: tuple[str, ...] | None
    liveness: float | None
    takes_task_status: bool = attrs.field(repr=False)

    def __init__(  # noqa: PLR0913 - the options are keyword-only and each is documented
        self,
        fn: Callable[..., Awaitable[object]],
        *args: Any,  # noqa: ANN401 - bound to fn, typed by the caller's fn
        grace: float | None = None,
        restart: Restart | Literal["never", "on_failure", "always"] = Restart.NEVER,
        significant: bool = False,
        start_timeout: float | None = None,
        backoff: Backoff | None = DEFAULT_BACKOFF,
        ready_required: bool = True,
        after: tuple[str, ...] | list[str] | None = None,
        liveness: float | None = None,
    ) -> None:
        where = f"PlayerSpec({describe(fn)})"
        _check_callable(fn, where)
        check_time(grace, "grace", where, allow_none=True)
        check_time(start_timeout, "start_timeout", where, allow_none=True)
        restart = _as_restart(restart, where)
        check_type(ready_required, bool, f"{where}: ready_required", "a bool")
        check_type(significant, bool, f"{where}: significant", "a bool")
        if backoff is not None:
            check_type(backoff, Backoff, f"{where}: backoff", "a Backoff or None")
        if significant and restart is Restart.ALWAYS:
            msg = (
                f"{where}: a significant player cannot have Restart.ALWAYS,"
                " since its normal return must end the conductor"
            )
            raise ValueError(msg)
        after = _as_after(after, where)
        _check_liveness(fn, liveness, where)
        takes = wants_task_status(fn)
        if start_timeout is not None and not takes:
            msg = (
                f"{where}: start_timeout needs a player that takes task_status,"
                " since a plain player cannot fail to start"
            )
            raise ValueError(msg)
        self.__attrs_init__(  # pyright: ignore[reportUnknownMemberType, reportAttributeAccessIssue]
            fn,
            args,
            grace,
            restart,
            significant,
            start_timeout,
            backoff,
            ready_required,
            after,
            liveness,
            takes,
        )


_RESTARTS = {policy.value: policy for policy in Restart}


def _as_restart(value: object, where: str) -> Restart:
    """A :class:`Restart` from itself or its value (``"on_failure"``), else a clear error."""
    if isinstance(value, Restart):
        return value
    if isinstance(value, str):
        try:
            return _RESTARTS[value]
        except KeyError:
            msg = (
                f"{where}: restart must be 'never', 'on_failure' or 'always'"
                f" (or a Restart), not {value!r}"
            )
            raise ValueError(msg) from None
    msg = f"{where}: restart must be a Restart or one of its names, not {type(value).__name__}"
    raise TypeError(msg)


def _as_after(value: object, where: str) -> tuple[str, ...] | None:
    """``after`` as a tuple of names, else a clear error (a bare str is a mistake)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        msg = (
            f"{where}: after must be a tuple of player names, such as ('db',),"
            f" not {type(value).__name__}"
        )
        raise TypeError(msg)
    names = cast("tuple[object, ...] | list[object]", value)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            msg = f"{where}: after must hold player names (str), not {type(name).__name__}"
            raise TypeError(msg)
        if name in seen:
            msg = f"{where}: after names {name!r} twice"
            raise ValueError(msg)
        seen.add(name)
    return tuple(cast("tuple[str, ...]", tuple(names)))


def _check_liveness(fn: object, liveness: object, where: str) -> None:
    """A liveness is a positive number of seconds, and a leaf player's alone."""
    if liveness is None:
        return
    check_time(liveness, "liveness", where)
    if liveness == 0:
        msg = f"{where}: liveness must be more than 0 seconds, not 0"
        raise ValueError(msg)
    from ._conductor import Conductor  # noqa: PLC0415 - it imports this module

    if isinstance(fn, Conductor):
        msg = (
            f"{where}: a nested conductor cannot have a liveness, since its players beat,"
            " not it; give them one"
        )
        raise ValueError(msg)  # noqa: TRY004 - the type is right: the rule is broken


_default_specs: weakref.WeakKeyDictionary[object, PlayerSpec] = weakref.WeakKeyDictionary()


def as_spec(value: object, where: str) -> PlayerSpec:
    """Turn a player or a :class:`PlayerSpec` into a spec; messages start with *where*."""
    if isinstance(value, PlayerSpec):
        return value
    try:
        return _default_specs[value]
    except (KeyError, TypeError):
        pass
    _check_callable(value, where)
    spec = PlayerSpec(value)  # type: ignore[arg-type]
    with contextlib.suppress(TypeError):  # not weak-referenceable: no cache
        _default_specs[value] = spec
    return spec
