"""The checks that validation shares: one sentence naming the object and the broken rule."""

from __future__ import annotations

import math

__all__ = ["check_number", "check_time", "check_type", "parse_address"]

MAX_PORT = 65535
_ADDRESS = "HOST:PORT, e.g. '127.0.0.1:8000' or '[::1]:8000'"


def check_number(
    value: object, what: str, where: str, *, least: float = 0.0, unit: str = ""
) -> None:
    """Raise unless *value* is a real number (not a bool), not NaN, and at least *least*."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = f"a number of {unit}" if unit else "a number"
        msg = f"{where}: {what} must be {kind}, not {type(value).__name__}"
        raise TypeError(msg)
    if math.isnan(value) or value < least:
        floor = "zero" if least == 0 else f"{least:g}"
        msg = f"{where}: {what} must be {floor} or more{' ' + unit if unit else ''}, not {value!r}"
        raise ValueError(msg)


def check_time(value: object, what: str, where: str, *, allow_none: bool = False) -> None:
    """Raise if *value* is not a usable number of seconds (``TypeError``/``ValueError``)."""
    if value is None and allow_none:
        return
    check_number(value, what, where, unit="seconds")


def check_type(value: object, kind: type | tuple[type, ...], what: str, wanted: str) -> None:
    """Raise ``TypeError`` saying that *what* must be *wanted*, unless *value* is a *kind*."""
    if not isinstance(value, kind):
        msg = f"{what} must be {wanted}, not {type(value).__name__}"
        raise TypeError(msg)


def parse_address(text: str, what: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[IPV6]:PORT``; raise ``ValueError`` naming *what* otherwise."""
    host, colon, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    # An IPv6 address must be in brackets (its own colons are ambiguous), and only it may be.
    if not colon or not host or (":" in host) != bracketed:
        msg = f"{what} {text!r} must be {_ADDRESS}"
        raise ValueError(msg)
    if not (port.isascii() and port.isdigit()) or int(port) > MAX_PORT:
        msg = f"{what} {text!r} must end with a port from 0 to {MAX_PORT}"
        raise ValueError(msg)
    return host, int(port)
