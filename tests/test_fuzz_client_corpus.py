"""Replay of fuzz/corpus/fuzz_client through fuzz_client.TestOneInput, plus hypothesis bytes.

The harness checks its invariants itself (see fuzz/fuzz_client.py): only
RemoteProtocolError escapes, the goodbye matches the error, state stays
bounded. ``regress-*`` files are reproducers of crashes the fuzzer found.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproto import (
    ClientConnection,
    ConnAckPacket,
    PacketReader,
    ProtocolVersion,
    ReasonCode,
    RemoteProtocolError,
    encode_packet,
)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus" / "fuzz_client"


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_client", ROOT / "fuzz" / "fuzz_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz_client = _load_harness()
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir())


def test_corpus_covers_every_version_and_regressions() -> None:
    assert len(CORPUS_FILES) >= 90
    for version in (3, 4, 5):
        assert any(f"-v{version}-" in name for name in CORPUS_FILES)
    assert any(name.startswith("regress-") for name in CORPUS_FILES)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file(name: str) -> None:
    fuzz_client.TestOneInput((CORPUS / name).read_bytes())


@given(st.binary(min_size=2, max_size=600))
@settings(max_examples=300)
def test_arbitrary_server_bytes(data: bytes) -> None:
    fuzz_client.TestOneInput(data)


def test_goodbye_shrinks_to_fit_the_server_limit() -> None:
    """A regression: the goodbye's reason string pushed it over the server's
    Maximum Packet Size, and the client then sent no goodbye at all."""
    from mqttproto.packets import DisconnectPacket

    client = ClientConnection()
    client.connect(client_id="c")
    client.data_to_send(0.0)
    v5 = ProtocolVersion.MQTT_5_0
    client.receive_data(encode_packet(ConnAckPacket(maximum_packet_size=10), version=v5), 0.0)
    with pytest.raises(RemoteProtocolError):
        client.receive_data(encode_packet(ConnAckPacket(), version=v5), 0.0)
    (goodbye,) = PacketReader(version=v5).feed(client.data_to_send(0.0))
    assert goodbye == DisconnectPacket(ReasonCode.PROTOCOL_ERROR)
