"""Shared pytest configuration.

Hypothesis profiles, chosen with the HYPOTHESIS_PROFILE environment variable:

- ``dev`` (default): 100 examples per property, no deadline.
- ``ci`` (set by ``.ci/run``): 200 examples per property, no deadline, and a
  reproduction blob printed for every failure.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", deadline=None, max_examples=100)
settings.register_profile("ci", deadline=None, max_examples=200, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# ---------------------------------------------------------------------------
# The codec fixture: every codec test runs against each implementation that is
# available (the pure-Python reference always; the compiled twin when built).

import importlib  # noqa: E402
import types  # noqa: E402

import pytest  # noqa: E402


def _available_codecs() -> list[tuple[str, types.ModuleType]]:
    codecs = [("python", importlib.import_module("mqttproto._codec_py"))]
    try:
        compiled = importlib.import_module("mqttproto._codec_c")
    except ImportError:
        pass
    else:
        codecs.append(("cython", compiled))
    return codecs


CODECS = _available_codecs()


@pytest.fixture(params=[module for _, module in CODECS], ids=[name for name, _ in CODECS])
def codec(request: pytest.FixtureRequest) -> types.ModuleType:
    """A codec module with ``decode_packet``, ``encode_packet`` and ``PacketReader``."""
    module: types.ModuleType = request.param
    return module


# ---------------------------------------------------------------------------
# Interop peers (tests/interop.py): a mosquitto broker on 127.0.0.1. Skips when
# mosquitto is missing, fails instead when MQTTPROTO_REQUIRE_INTEROP is set.

from collections.abc import Iterator  # noqa: E402

from interop import MosquittoBroker  # noqa: E402


@pytest.fixture
def mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A running mosquitto (anonymous access allowed); its log is in the object."""
    with MosquittoBroker(directory=tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def mosquitto(mosquitto_broker: MosquittoBroker) -> tuple[str, int]:
    """The ``(host, port)`` of a running mosquitto broker."""
    return mosquitto_broker.address
