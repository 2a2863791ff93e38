"""Which codec implementation is loaded, and the switches that choose it.

- ``MQTTPROTO_REQUIRE_EXTENSIONS=1`` (CI's main pass): the compiled codec must
  be the one in use; a pure-Python fallback there means the build silently
  failed, and this guard fails the run.
- ``MQTTPROTO_PURE_PYTHON=1``: the pure-Python codec, whatever was built.
- Without either, a missing extension falls back to pure Python quietly.

The switches act at import time, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import mqttproto
from mqttproto import _codec, _codec_py

# Run in a subprocess: make mqttproto._codec_c unimportable, then import mqttproto.
_BLOCK_EXTENSION = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mqttproto._codec_c":
            raise ImportError("blocked for the test")
        return None
sys.meta_path.insert(0, Block())
"""
_PRINT = "import mqttproto; print(mqttproto.codec_implementation())"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MQTTPROTO_PURE_PYTHON", "MQTTPROTO_REQUIRE_EXTENSIONS")
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True
    )


def _compiled_available() -> bool:
    return _run("import mqttproto._codec_c").returncode == 0


def test_selected_implementation_follows_the_switches() -> None:
    """The CI guard: with the extension required, it must be what runs."""
    if _flag("MQTTPROTO_PURE_PYTHON"):
        assert mqttproto.codec_implementation() == "python"
        assert mqttproto.decode_packet is _codec_py.decode_packet
        assert mqttproto.PreparedPublish is _codec_py.PreparedPublish
    elif _flag("MQTTPROTO_REQUIRE_EXTENSIONS"):
        assert mqttproto.codec_implementation() == "cython"
        from mqttproto import _codec_c  # type: ignore[attr-defined]

        assert mqttproto.decode_packet is _codec_c.decode_packet
        assert mqttproto.encode_packet is _codec_c.encode_packet
        assert mqttproto.PacketReader is _codec_c.PacketReader
        assert mqttproto.encode_ack is _codec_c.encode_ack
        assert mqttproto.codec.encode_publish_split is _codec_c.encode_publish_split
        assert mqttproto.PreparedPublish is _codec_c.PreparedPublish
        assert mqttproto.codec.PreparedPublish is _codec_c.PreparedPublish
    else:
        expected = "cython" if _compiled_available() else "python"
        assert mqttproto.codec_implementation() == expected


def test_implementation_matches_the_functions() -> None:
    assert mqttproto.codec_implementation() == _codec.IMPLEMENTATION
    assert _codec.IMPLEMENTATION in ("cython", "python")
    expected = "mqttproto._codec_c" if _codec.IMPLEMENTATION == "cython" else "mqttproto._decode"
    assert mqttproto.decode_packet.__module__ == expected


def test_pure_python_switch() -> None:
    result = _run(_PRINT, MQTTPROTO_PURE_PYTHON="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"


def test_pure_python_switch_wins_over_require() -> None:
    result = _run(_PRINT, MQTTPROTO_PURE_PYTHON="1", MQTTPROTO_REQUIRE_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"


def test_compiled_by_default_when_built() -> None:
    if not _compiled_available():
        pytest.skip("the compiled codec is not built")
    result = _run(_PRINT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cython"


def test_missing_extension_falls_back() -> None:
    result = _run(_BLOCK_EXTENSION + _PRINT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"


def test_missing_extension_is_fatal_when_required() -> None:
    result = _run(_BLOCK_EXTENSION + _PRINT, MQTTPROTO_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
