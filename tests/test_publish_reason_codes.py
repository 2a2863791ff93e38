"""Which reason code a broken MQTT 5 PUBLISH is answered with, on the wire.

Section 3.3.2.3.4: "It is a Protocol Error if the Topic Name is zero length and
there is no Topic Alias"; [MQTT-3.3.2-14]: the Response Topic must not contain
wildcards. Both are rules of the packet's form, answered with DISCONNECT 0x82
Protocol Error, not 0x90 Topic Name invalid (which is for a well-formed Topic
Name that the receiver declines, such as one with a wildcard).

Every case runs through each codec twin (the ``codec`` fixture swaps the
``PacketReader`` the server role reads with), once for the server role alone
and once through the broker.
"""

from __future__ import annotations

import types

import pytest
from helpers import V5, BrokerHarness

import mqttproto.server
from mqttproto import ReasonCode, encode_packet
from mqttproto.config import ServerConfig
from mqttproto.events import ConnectRequested, Disconnected
from mqttproto.packets import ConnectPacket
from mqttproto.server import ServerConnection


def _publish(topic: bytes, properties: bytes = b"") -> bytes:
    """A QoS 0 MQTT 5 PUBLISH built by hand (the encoder refuses these)."""
    body = len(topic).to_bytes(2, "big") + topic + bytes((len(properties),)) + properties
    body += b"payload"
    return bytes((0x30, len(body))) + body


def _response_topic(topic: bytes) -> bytes:
    return b"\x08" + len(topic).to_bytes(2, "big") + topic


CASES = {
    "empty topic, no alias": (_publish(b""), ReasonCode.PROTOCOL_ERROR),
    "empty topic, other properties": (
        _publish(b"", b"\x01\x01"),  # Payload Format Indicator only
        ReasonCode.PROTOCOL_ERROR,
    ),
    "response topic with +": (
        _publish(b"t", _response_topic(b"reply/+")),
        ReasonCode.PROTOCOL_ERROR,
    ),
    "response topic with #": (
        _publish(b"t", _response_topic(b"reply/#")),
        ReasonCode.PROTOCOL_ERROR,
    ),
    "empty response topic": (_publish(b"t", _response_topic(b"")), ReasonCode.PROTOCOL_ERROR),
    # For contrast: a wildcard in the Topic Name itself stays 0x90.
    "topic name with #": (_publish(b"a/#"), ReasonCode.TOPIC_NAME_INVALID),
}


@pytest.fixture
def reader_of(codec: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Make the server role (and so the broker) read with ``codec``."""
    monkeypatch.setattr(mqttproto.server, "PacketReader", codec.PacketReader)
    return codec


@pytest.mark.parametrize(("data", "code"), CASES.values(), ids=CASES.keys())
def test_server_role_answers(reader_of, data: bytes, code: ReasonCode) -> None:
    conn = ServerConnection(ServerConfig(), now=0.0)
    conn.receive_data(encode_packet(ConnectPacket("c"), version=V5), 0.0)
    assert isinstance(conn.next_event(), ConnectRequested)
    conn.accept()
    assert conn.data_to_send(0.0)[:1] == b"\x20"  # CONNACK
    conn.receive_data(data, 1.0)
    events = list(conn.events())
    assert [type(e) for e in events] == [Disconnected]
    assert events[0].reason_code == code
    # DISCONNECT, remaining length 1 + property length: the code is byte 2.
    goodbye = conn.data_to_send(1.0)
    assert goodbye[0] == 0xE0 and goodbye[2] == code


@pytest.mark.parametrize(("data", "code"), CASES.values(), ids=CASES.keys())
def test_broker_answers(reader_of, data: bytes, code: ReasonCode) -> None:
    h = BrokerHarness()
    conn = h.open_raw()
    connack = h.send_raw(conn, encode_packet(ConnectPacket("raw"), version=V5))
    assert connack[0] == 0x20 and connack[3] == 0
    goodbye = h.send_raw(conn, data)
    assert goodbye[0] == 0xE0 and goodbye[2] == code
    assert conn in h.raw_closed


def test_empty_topic_with_alias_is_still_accepted(reader_of) -> None:
    """The alias case is not caught by the new rule: set, then reuse with ``""``."""
    h = BrokerHarness()
    sub = h.connected("sub")
    sub.conn.subscribe(["t"])
    h.pump()
    conn = h.open_raw()
    h.send_raw(conn, encode_packet(ConnectPacket("raw"), version=V5))
    alias = b"\x23\x00\x01"  # Topic Alias 1
    assert h.send_raw(conn, _publish(b"t", alias) + _publish(b"", alias)) == b""
    assert conn not in h.raw_closed
    assert [m.topic for m in sub.take_messages()] == ["t", "t"]
