"""Replay of fuzz/corpus/fuzz_client through fuzz_client.TestOneInput, plus hypothesis bytes.

The harness checks its invariants itself (see fuzz/fuzz_client.py): only
RemoteProtocolError escapes, the goodbye matches the error, state stays
bounded. ``regress-*`` files are reproducers of crashes the fuzzer found.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzing import corpus_params, load_harness, seeds
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
CORPUS = seeds("fuzz_client")


fuzz_client = load_harness("fuzz_client")
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir())


def test_corpus_covers_every_version_and_regressions() -> None:
    assert len(CORPUS_FILES) >= 90
    for version in (3, 4, 5):
        assert any(f"-v{version}-" in name for name in CORPUS_FILES)
    assert any(name.startswith("regress-") for name in CORPUS_FILES)


@pytest.mark.parametrize("path", corpus_params("fuzz_client"))
def test_corpus_file(path: Path) -> None:
    fuzz_client.TestOneInput(path.read_bytes())


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
