"""Build script. All metadata lives in pyproject.toml.

setup.py exists only to declare the compiled twin of the codec,
``mqttproto/_codec_c.pyx`` (see ``mqttproto/_codec.py`` for how it is chosen):

- it is an *optional* Extension: when it cannot be compiled (no C compiler,
  no Python headers), setuptools reports the failure and installs the
  pure-Python package, which works on its own;
- ``MQTTPROTO_PURE_PYTHON=1`` skips the build entirely;
- ``MQTTPROTO_REQUIRE_EXTENSIONS=1`` (set by CI) makes a failed build fatal,
  so that a broken extension cannot hide behind the fallback.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _extensions() -> list[Extension]:
    if _flag("MQTTPROTO_PURE_PYTHON"):
        return []
    required = _flag("MQTTPROTO_REQUIRE_EXTENSIONS")
    try:
        from Cython.Build import cythonize
    except ImportError:
        # pyproject.toml lists Cython as a build requirement, so this happens
        # only with --no-build-isolation in an environment without Cython.
        if required:
            raise
        print("mqttproto: Cython is not available; installing the pure-Python codec")
        return []
    extensions = cythonize(
        [Extension("mqttproto._codec_c", ["mqttproto/_codec_c.pyx"])],
        compiler_directives={
            "language_level": 3,
            # Python-level indexing keeps its checks; the buffer reads in the
            # .pyx go through raw pointers behind explicit bounds tests, and the
            # few functions that index with a proven index turn the checks off
            # locally with decorators.
            "boundscheck": True,
            "wraparound": True,
        },
    )
    for extension in extensions:
        # optional: a failed C compile is reported and skipped, not fatal
        # (setuptools' build_ext catches it). Set after cythonize(), which
        # builds new Extension objects and does not carry `optional` over.
        extension.optional = not required
    return extensions


setup(ext_modules=_extensions())
