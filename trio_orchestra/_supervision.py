"""Restart policies, restart intensity and backoff: the values a supervisor decides with.

Why this module: Erlang/OTP settled these semantics decades ago (permanent / transient /
temporary children, one_for_one / one_for_all / rest_for_one, a restart intensity over a
sliding period), and Kubernetes gave them the names most people know (``restartPolicy``,
CrashLoopBackOff). We keep OTP's meaning and Kubernetes' vocabulary, and add the kubelet's
exponential backoff, which OTP and Go's orchestra lack. Everything here is a plain value or a
pure function of Trio time, so the conductor stays the one place that owns state.
"""

from __future__ import annotations

import enum
import random as _random
from collections import deque
from typing import Literal, cast, final

import attrs

from ._checks import check_number, check_time

__all__ = ["DEFAULT_BACKOFF", "Backoff", "Restart", "RestartWindow", "Strategy"]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
STRATEGIES: frozenset[str] = frozenset({"one_for_one", "one_for_all", "rest_for_one"})

#: The most jitter a Backoff may have: the delay stays within +-25% of its nominal value.
MAX_JITTER = 0.25


class Restart(enum.Enum):
    """When a player is started again after it ends.

    * ``NEVER`` (the default, as in Go's orchestra): OTP's *temporary* child, Kubernetes'
      ``restartPolicy: Never``. Its failure fails the conductor.
    * ``ON_FAILURE``: OTP's *transient* child, Kubernetes' ``OnFailure``. Restarted when it
      raises (or fails to start); a normal return means it is done.
    * ``ALWAYS``: OTP's *permanent* child, Kubernetes' ``Always``. Restarted after a normal
      return too, so it cannot be ``significant``.

    Restarts are limited by the conductor's ``max_restarts`` within ``period`` and spaced by
    the player's :class:`Backoff`.

    Example::

        orchestra.PlayerSpec(consume, queue, restart=orchestra.Restart.ON_FAILURE)
    """

    NEVER = "never"
    ON_FAILURE = "on_failure"
    ALWAYS = "always"


def _check_factor(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    check_number(value, attribute.name, "Backoff", least=1)


def _check_seconds(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    check_time(value, attribute.name, "Backoff")


def _check_jitter(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    check_time(value, attribute.name, "Backoff")
    if cast("float", value) > MAX_JITTER:
        msg = (
            f"Backoff: jitter must be at most {MAX_JITTER} (a fraction of the delay), not {value!r}"
        )
        raise ValueError(msg)


@final
@attrs.frozen(kw_only=True)
class Backoff:
    """How long to wait before restarting a player: exponential, capped, jittered, reset.

    The delay before restart *k* (counting from 0 since the last reset) is
    ``min(initial * factor**k, maximum)``, times a random factor in ``1 +- jitter``. Once a run
    has lasted ``reset_after`` seconds, the next restart counts from 0 again; a run that
    fails at once never resets it. This is the kubelet's CrashLoopBackOff, scaled for
    in-process players.

    The defaults: a first delay of 0.5 s, doubling to at most 30 s (the sixth restart and
    later), +-10 % jitter, reset after a minute of healthy running. They keep a crash loop
    cheap without making a one-off failure wait long. ``PlayerSpec(..., backoff=None)``
    restarts at once.

    Example::

        orchestra.PlayerSpec(
            poll, restart=orchestra.Restart.ALWAYS, backoff=orchestra.Backoff(initial=1, maximum=60)
        )
    """

    initial: float = attrs.field(default=0.5, validator=_check_seconds)
    factor: float = attrs.field(default=2.0, validator=_check_factor)
    maximum: float = attrs.field(default=30.0, validator=_check_seconds)
    jitter: float = attrs.field(default=0.1, validator=_check_jitter)
    reset_after: float = attrs.field(default=60.0, validator=_check_seconds)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            msg = f"Backoff: maximum ({self.maximum!r}) must be at least initial ({self.initial!r})"
            raise ValueError(msg)

    def nominal(self, step: int) -> float:
        """The delay before restart *step* (0-based), without jitter."""
        try:
            return min(self.initial * self.factor**step, self.maximum)
        except OverflowError:
            return self.maximum

    def delay(self, step: int, rng: _random.Random) -> float:
        """The delay before restart *step*, with jitter drawn from *rng*."""
        base = self.nominal(step)
        if self.jitter == 0 or base == 0:
            return base
        return base * (1 + self.jitter * (2 * rng.random() - 1))


DEFAULT_BACKOFF = Backoff()


@final
class RestartWindow:
    """OTP's restart intensity: at most ``max_restarts`` restarts within ``period`` seconds.

    Keeps only the last ``max_restarts`` restart times, so a restart storm uses flat memory.
    """

    __slots__ = ("_period", "_times", "max_restarts")

    def __init__(self, max_restarts: int, period: float) -> None:
        self.max_restarts = max_restarts
        self._period = period
        self._times: deque[float] = deque(maxlen=max_restarts or 1)

    def allow(self, now: float) -> bool:
        """Count a restart at *now*, or return False if it would exceed the intensity."""
        if self.max_restarts == 0:
            return False
        times = self._times
        if len(times) == self.max_restarts and times[0] > now - self._period:
            return False
        times.append(now)
        return True

    def would_allow(self, now: float) -> bool:
        """Tell whether a restart at *now* would be allowed, without counting one."""
        times = self._times
        return self.max_restarts > 0 and (
            len(times) < self.max_restarts or times[0] <= now - self._period
        )

    def recent(self, now: float) -> int:
        """How many restarts fall in the window ending at *now*."""
        return sum(1 for when in self._times if when > now - self._period)
