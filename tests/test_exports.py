"""The public surface of ``trio_orchestra``: ``__all__``, ``__module__`` and finality."""

from __future__ import annotations

import enum
import inspect
import sys

import pytest

import trio_orchestra

PUBLIC_MODULE = "trio_orchestra"


def _defined_in_package(obj: object) -> bool:
    """Tell whether a class or function comes from trio_orchestra (or one of its modules)."""
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and (
        module == PUBLIC_MODULE or module.startswith(f"{PUBLIC_MODULE}.")
    )


def _is_class_or_function(obj: object) -> bool:
    """Tell whether an object is a class or a function (the things that carry a module)."""
    return inspect.isclass(obj) or inspect.isfunction(obj)


def _exported(name: str) -> object:
    """Return the object exported under a name."""
    return getattr(trio_orchestra, name)


def _may_be_subclassed(obj: object) -> bool:
    """Tell whether a class is meant to be subclassed: an exception, an enum or a protocol."""
    is_protocol = bool(getattr(obj, "_is_protocol", False))  # typing.is_protocol is 3.13+
    return isinstance(obj, type) and (issubclass(obj, (BaseException, enum.Enum)) or is_protocol)


EXPORTED_OBJECTS = sorted(
    name for name in trio_orchestra.__all__ if _is_class_or_function(_exported(name))
)
FINAL_CANDIDATES = sorted(
    name
    for name in EXPORTED_OBJECTS
    if inspect.isclass(_exported(name)) and not _may_be_subclassed(_exported(name))
)


def test_all_has_no_duplicates() -> None:
    """__all__ names every public name once."""
    assert len(trio_orchestra.__all__) == len(set(trio_orchestra.__all__))


@pytest.mark.parametrize("name", trio_orchestra.__all__)
def test_name_in_all_exists(name: str) -> None:
    """Every name in __all__ is an attribute of the package."""
    assert hasattr(trio_orchestra, name)


def test_public_classes_and_functions_are_in_all() -> None:
    """Every public class or function of the package is listed in __all__."""
    missing = sorted(
        name
        for name, obj in vars(trio_orchestra).items()
        if not name.startswith("_") and _is_class_or_function(obj) and _defined_in_package(obj)
        if name not in trio_orchestra.__all__
    )
    assert missing == []


@pytest.mark.parametrize("name", EXPORTED_OBJECTS)
def test_exported_object_has_public_module(name: str) -> None:
    """Every exported class and function says it lives in trio_orchestra, not a private module."""
    assert _exported(name).__module__ == PUBLIC_MODULE


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="typing.final records __final__ from Python 3.11 on"
)
@pytest.mark.parametrize("name", FINAL_CANDIDATES)
def test_exported_class_is_final(name: str) -> None:
    """Every exported class is final, unless it is an exception, an enum or a protocol."""
    assert getattr(_exported(name), "__final__", False) is True
