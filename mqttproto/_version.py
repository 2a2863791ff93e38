"""The package version, in a module of its own so that the broker core's
``$SYS/broker/version`` can read it without importing the package root."""

from __future__ import annotations

__all__ = ["VERSION"]

#: Keep equal to ``version`` in pyproject.toml.
VERSION = "0.1.0"
