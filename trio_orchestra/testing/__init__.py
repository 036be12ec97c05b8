"""Helpers to test supervision trees with pytest-trio and an autojump clock.

Like :mod:`trio.testing`, this is for tests, not for production code. The pytest plugin
(registered through the ``pytest11`` entry point) turns the helpers into fixtures.
"""

from __future__ import annotations

from ._background import BackgroundRun as BackgroundRun
from ._background import assert_failures as assert_failures
from ._background import background as background
from ._scripted import Fail as Fail
from ._scripted import Finish as Finish
from ._scripted import ScriptedPlayer as ScriptedPlayer

__all__ = ["BackgroundRun", "Fail", "Finish", "ScriptedPlayer", "assert_failures", "background"]


def _fixup_module_metadata() -> None:
    for name in __all__:
        globals()[name].__module__ = __name__


_fixup_module_metadata()
del _fixup_module_metadata
