"""Sphinx configuration: ``python3 -m nox -s docs`` builds the HTML into ``docs/_build/html``."""

from __future__ import annotations

import os
from importlib.metadata import version as _distribution_version

project = "trio-orchestra"
author = "the trio-orchestra authors"
copyright = f"2025, {author}"
# The package is installed before the build (see noxfile.py): no sys.path tweak needed.
release = _distribution_version("trio-orchestra")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinxcontrib_trio",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
nitpicky = True
default_role = "py:obj"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Links to the Python, Trio and attrs docs need their inventories, fetched over the network.
# The machines that build and test this project reach package registries only, and a failed
# download is a warning, which -W turns into an error. So intersphinx is on only where the
# network is (Read the Docs sets READTHEDOCS; elsewhere set TRIO_ORCHESTRA_INTERSPHINX=1), and
# offline the references into those projects are left unlinked instead of failing -n.
_INTERSPHINX = any(os.environ.get(var) for var in ("READTHEDOCS", "TRIO_ORCHESTRA_INTERSPHINX"))
intersphinx_mapping = (
    {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable/", None),
        "attrs": ("https://www.attrs.org/en/stable/", None),
        "hypercorn": ("https://hypercorn.readthedocs.io/en/latest/", None),
    }
    if _INTERSPHINX
    else {}
)
intersphinx_timeout = 10
_EXTERNAL_MODULES = (
    "trio|attrs|attr|outcome|exceptiongroup|typing|typing_extensions|collections|contextlib"
    "|types|enum|logging|signal|subprocess|os|sys|random|builtins|contextvars|_contextvars"
    "|_thread|abc|socket|pathlib|datetime|hypercorn|prometheus_client"
)
_BUILTIN_NAMES = (
    "None|True|False|Ellipsis|NotImplemented|object|type|str|bytes|int|float|bool|complex"
    "|list|tuple|dict|set|frozenset|range|slice|memoryview|bytearray"
    r"|\w*Error|\w*Exception|\w*Warning|\w*Group|Exit|KeyboardInterrupt|SystemExit"
    "|GeneratorExit|StopIteration|StopAsyncIteration"
)
nitpick_ignore_regex = (
    []
    if _INTERSPHINX
    else [
        ("py:.*", rf"(?:{_EXTERNAL_MODULES})(?:\..+)?"),
        ("py:.*", rf"(?:{_BUILTIN_NAMES})"),
    ]
)

html_theme = "furo"
html_title = f"trio-orchestra {release}"
