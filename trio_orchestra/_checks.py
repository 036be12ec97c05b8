"""The checks that validation shares: one sentence naming the object and the broken rule."""

from __future__ import annotations

import math

__all__ = ["check_time", "check_type"]


def check_time(value: object, what: str, where: str, *, allow_none: bool = False) -> None:
    """Raise if *value* is not a usable number of seconds (``TypeError``/``ValueError``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{where}: {what} must be a number of seconds, not {type(value).__name__}"
        raise TypeError(msg)
    if math.isnan(value) or value < 0:
        msg = f"{where}: {what} must be zero or more seconds, not {value!r}"
        raise ValueError(msg)


def check_type(value: object, kind: type | tuple[type, ...], what: str, wanted: str) -> None:
    """Raise ``TypeError`` saying that *what* must be *wanted*, unless *value* is a *kind*."""
    if not isinstance(value, kind):
        msg = f"{what} must be {wanted}, not {type(value).__name__}"
        raise TypeError(msg)
