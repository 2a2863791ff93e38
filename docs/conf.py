"""Sphinx configuration for the mqttproto documentation.

Built in CI with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``:
every warning fails the build. Only built-in extensions are used, and nothing that
needs the network (so no intersphinx).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

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
autodoc_preserve_defaults = True

# napoleon: accept Google/NumPy style docstrings too. "Attributes" sections become
# :ivar: fields, so they do not clash with the attributes autodoc documents itself.
napoleon_use_ivar = True

html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Sans-IO MQTT 3.1, 3.1.1 and 5.0",
}
