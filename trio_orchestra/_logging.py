"""Every log record gets the player's path, so that ``%(path)s`` works in any format.

Why this module: the library's records carry the path of the player they are about as the
record's ``path`` attribute. A format that uses ``%(path)s`` breaks (a ``KeyError`` printed by
logging, the line lost) on any record without one: another library's, the application's own.
:class:`PathFilter` fills it in: the path of the player whose task made the record, or ``"-"``
outside any player. The library's own loggers have it already; a handler that formats other
records too gets it with one ``addFilter``.
"""

from __future__ import annotations

import logging
from typing import final

from ._stop import current_path

__all__ = ["PathFilter", "library_logger"]


@final
class PathFilter(logging.Filter):
    """Give each record a ``path`` attribute: the running player's path, else *default*.

    A record that has one (the library's records name the player they are about) keeps it.
    Add it to a handler whose format uses ``%(path)s``: records of your own code logged from
    inside a player then name that player too.

    Example::

        handler = logging.StreamHandler()
        handler.addFilter(orchestra.PathFilter())
        handler.setFormatter(logging.Formatter("%(levelname)s %(path)s %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    """

    def __init__(self, default: str = "-") -> None:
        """Use *default* as the path of records made outside any player."""
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``record.path`` if it has none; never drop a record."""
        if not hasattr(record, "path"):
            record.path = current_path(self.default)
        return True


_FILTER = PathFilter()


def library_logger(name: str = "trio_orchestra") -> logging.Logger:
    """The logger *name*, whose every record has a ``path`` (see :class:`PathFilter`)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
