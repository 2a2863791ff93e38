"""Sphinx configuration for the mqttproto documentation.

Built in CI with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``:
every warning fails the build. Only built-in extensions are used, and nothing that
needs the network (so no intersphinx).
"""

from __future__ import annotations

import enum
import inspect
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

# Import the package from this checkout even when it is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

project = "mqttproto"
author = "mqttproto developers"
copyright = "mqttproto developers"
try:
    release = metadata.version("mqttproto")
except metadata.PackageNotFoundError:
    release = "0.1.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False

# autodoc
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
}
# Defaults as written in the source (``MAX_PACKET_SIZE``, not 1048576). attrs
# classes are the exception: their ``__init__`` is generated, and its source
# says ``attr_dict['max_packet_size'].default``; setup() below shows the values.
autodoc_preserve_defaults = True

# napoleon: accept Google/NumPy style docstrings too. "Attributes" sections become
# :ivar: fields, so they do not clash with the attributes autodoc documents itself.
napoleon_use_ivar = True

html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Sans-IO MQTT 3.1, 3.1.1 and 5.0",
}


class _Default:
    """A default value shown as *text* in a signature."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _default_text(default: object) -> str:
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        factory = default.factory
        name = getattr(factory, "__name__", "<lambda>")
        return "<computed>" if default.takes_self or name == "<lambda>" else f"{name}()"
    if isinstance(default, enum.Enum):
        return f"{type(default).__name__}.{default.name}"
    return repr(default)


def attrs_init_defaults(app: Any, obj: Any, bound_method: bool) -> None:
    """``autodoc-before-process-signature``: the defaults of an attrs-generated
    ``__init__`` as values (``ReasonCode.SUCCESS``, ``0.5``, ``dict()``).

    ``autodoc_preserve_defaults`` reads the generated source, whose defaults
    are expressions on attrs' internals; this runs after it and replaces them
    with the fields' own defaults.
    """
    code = getattr(obj, "__code__", None)
    if code is None or not code.co_filename.startswith("<attrs generated"):
        return
    owner: Any = sys.modules.get(obj.__module__)
    for part in obj.__qualname__.split(".")[:-1]:
        owner = getattr(owner, part, None)
    if not (isinstance(owner, type) and attrs.has(owner)):
        return
    fields = {field.alias: field for field in attrs.fields(owner)}
    obj.__dict__.pop("__signature__", None)
    signature = inspect.signature(obj)
    parameters = []
    for parameter in signature.parameters.values():
        field = fields.get(parameter.name)
        if field is not None and parameter.default is not parameter.empty:
            parameter = parameter.replace(default=_Default(_default_text(field.default)))
        parameters.append(parameter)
    obj.__signature__ = signature.replace(parameters=parameters)


def setup(app: Any) -> None:
    app.connect("autodoc-before-process-signature", attrs_init_defaults)
