"""Build script. All metadata lives in pyproject.toml.

setup.py exists only to declare compiled extensions. The Cython twin of the codec,
``mqttproto/_codec_c.pyx``, will be added to ``_extensions()`` below as an
*optional* Extension (``optional=True``), so that a machine without a C compiler
still installs the pure-Python package. Nothing is compiled yet.
"""

from __future__ import annotations

from setuptools import Extension, setup


def _extensions() -> list[Extension]:
    # The Cython twin goes here, e.g.:
    #
    #     from Cython.Build import cythonize
    #     return cythonize(
    #         [Extension("mqttproto._codec_c", ["mqttproto/_codec_c.pyx"], optional=True)],
    #         language_level=3,
    #     )
    return []


setup(ext_modules=_extensions())
