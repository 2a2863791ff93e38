"""Malformed and illegal input: the right goodbye on the wire, others unaffected."""

from __future__ import annotations

import pytest
from helpers import V5, V311, BrokerHarness, PacketFactory

from mqttproto import PublishPacket, QoS, ReasonCode
from mqttproto.auth import AuthResult
from mqttproto.config import BrokerConfig
from mqttproto.events import (
    AuthChallenged,
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    Reauthenticated,
)

F = PacketFactory


def bystanders(h):
    """Two healthy clients; returns a check that they still talk."""
    sub = h.connected("bystander-sub")
    pub = h.connected("bystander-pub", V311)
    sub.conn.subscribe(["ok"])
    h.pump()

    def still_fine():
        pub.conn.publish("ok", b"still here")
        h.pump()
        assert [m.payload for m in sub.take_messages()] == [b"still here"]

    return still_fine


def connected_raw(h, version=V5, **kwargs):
    conn = h.open_raw()
    answer = h.send_raw(conn, F.connect("raw", version, **kwargs))
    assert answer[0] == 0x20 and answer[3] == 0  # CONNACK, accepted
    return conn


def test_first_packet_not_connect_closes_silently():
    h = BrokerHarness()
    still_fine = bystanders(h)
    conn = h.open_raw()
    assert h.send_raw(conn, b"\xc0\x00") == b""  # [MQTT-3.1.0-1]
    assert conn in h.raw_closed
    still_fine()


def test_unsupported_protocol_level():
    h = BrokerHarness()
    still_fine = bystanders(h)
    conn = h.open_raw()
    # [MQTT-3.1.2-2]: CONNACK return code 0x01, then close.
    assert h.send_raw(conn, F.connect_level(6)) == b"\x20\x02\x00\x01"
    assert conn in h.raw_closed
    still_fine()


def test_v311_empty_client_id_without_clean_session():
    h = BrokerHarness()
    conn = h.open_raw()
    packet = b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00"  # flags 0: no clean session
    assert h.send_raw(conn, packet) == b"\x20\x02\x00\x02"  # [MQTT-3.1.3-8]
    assert conn in h.raw_closed


def test_second_connect_v311_closes():
    h = BrokerHarness()
    still_fine = bystanders(h)
    conn = connected_raw(h, V311)
    assert h.send_raw(conn, F.connect("raw", V311)) == b""  # [MQTT-3.1.0-2]
    assert conn in h.raw_closed
    still_fine()


def test_second_connect_v5_disconnect_protocol_error():
    h = BrokerHarness()
    conn = connected_raw(h)
    answer = h.send_raw(conn, F.connect("raw"))
    assert answer[0] == 0xE0 and answer[2] == ReasonCode.PROTOCOL_ERROR
    assert conn in h.raw_closed


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (F.publish_v5_raw(b"a/#"), ReasonCode.TOPIC_NAME_INVALID),
        (F.encode(PublishPacket("", topic_alias=1)), ReasonCode.PROTOCOL_ERROR),
        (F.encode(PublishPacket("t", topic_alias=1000)), ReasonCode.TOPIC_ALIAS_INVALID),
        (F.encode(PublishPacket("t", b"x" * 300)), ReasonCode.PACKET_TOO_LARGE),
        (b"\x30\xff\xff\xff\xff\x01", ReasonCode.MALFORMED_PACKET),
        (b"\x82\x02\x00\x01", ReasonCode.MALFORMED_PACKET),
        # [MQTT-3.3.4-6]: a client may not send Subscription Identifiers.
        (F.encode(PublishPacket("t", subscription_identifiers=(1,))), ReasonCode.PROTOCOL_ERROR),
    ],
)
def test_v5_goodbyes(data, code):
    h = BrokerHarness(BrokerConfig(max_packet_size=256, topic_alias_maximum=10))
    still_fine = bystanders(h)
    conn = connected_raw(h)
    answer = h.send_raw(conn, data)
    assert answer[0] == 0xE0, answer
    assert answer[2] == code or (code == ReasonCode.PROTOCOL_ERROR and answer[2] >= 0x80)
    assert conn in h.raw_closed
    still_fine()


def test_v311_malformed_publish_closes_without_a_word():
    h = BrokerHarness()
    still_fine = bystanders(h)
    conn = connected_raw(h, V311)
    assert h.send_raw(conn, b"\x30\x03\x00\x01+") == b""
    assert conn in h.raw_closed
    still_fine()


def test_receive_maximum_exceeded():
    h = BrokerHarness(BrokerConfig(receive_maximum=2))
    conn = connected_raw(h)
    answers = b""
    for packet_id in (1, 2, 3):
        packet = PublishPacket("t", b"x", QoS.EXACTLY_ONCE, packet_id=packet_id)
        answers += h.send_raw(conn, F.encode(packet))
    # Two PUBREC (0x10: no subscribers), then DISCONNECT 0x93 [MQTT-3.3.4-9].
    assert answers.startswith(b"\x50\x03\x00\x01\x10\x50\x03\x00\x02\x10\xe0")
    assert ReasonCode.RECEIVE_MAXIMUM_EXCEEDED in answers[10:13]
    assert conn in h.raw_closed


def test_qos_above_maximum():
    h = BrokerHarness(BrokerConfig(maximum_qos=1))
    conn = connected_raw(h)
    answer = h.send_raw(conn, F.encode(PublishPacket("t", b"", QoS.EXACTLY_ONCE, packet_id=1)))
    assert answer[0] == 0xE0 and answer[2] == ReasonCode.QOS_NOT_SUPPORTED


def test_qos2_duplicate_is_delivered_once():
    h = BrokerHarness()
    sub = h.connected("sub")
    sub.conn.subscribe(["t"])
    h.pump()
    conn = connected_raw(h)
    packet = PublishPacket("t", b"once", QoS.EXACTLY_ONCE, packet_id=9)
    assert h.send_raw(conn, F.encode(packet)) == b"\x50\x02\x00\x09"
    dup = PublishPacket("t", b"once", QoS.EXACTLY_ONCE, duplicate=True, packet_id=9)
    assert h.send_raw(conn, F.encode(dup)) == b"\x50\x02\x00\x09"
    assert h.send_raw(conn, b"\x62\x02\x00\x09") == b"\x70\x02\x00\x09"
    assert len(sub.take_messages()) == 1  # [MQTT-4.3.3-10]


class Challenge:
    """An authenticator with method "X": challenge b"nonce", expect b"ok"."""

    def authenticate(self, info):
        if info.authentication_method != "X":
            return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)
        return AuthResult.challenge(b"nonce")

    def continue_authentication(self, info, data):
        if data == b"ok":
            return AuthResult.accept(b"welcome")
        return AuthResult.reject(ReasonCode.NOT_AUTHORIZED)


def test_enhanced_authentication_and_reauthentication():
    h = BrokerHarness(authenticator=Challenge())
    client = h.client("c")
    events = client.connect(authentication_method="X")
    [challenge] = [e for e in events if isinstance(e, AuthChallenged)]
    assert challenge.authentication_data == b"nonce"
    client.conn.auth(b"ok")
    h.pump()
    [accepted] = [e for e in client.take() if isinstance(e, ConnectionAccepted)]
    assert accepted.authentication_data == b"welcome"
    client.conn.auth(b"ok")  # re-authentication, AUTH 0x19
    h.pump()
    assert any(isinstance(e, Reauthenticated) for e in client.take())
    client.conn.auth(b"wrong")
    h.pump()
    [gone] = [e for e in client.take() if isinstance(e, Disconnected)]
    assert gone.reason_code == ReasonCode.NOT_AUTHORIZED  # [MQTT-4.12.1-2]


def test_enhanced_authentication_refused():
    h = BrokerHarness(authenticator=Challenge())
    client = h.client("c")
    client.connect(authentication_method="X")
    client.conn.auth(b"bad")
    h.pump()
    [refused] = [e for e in client.take() if isinstance(e, ConnectionRefused)]
    assert refused.reason_code == ReasonCode.NOT_AUTHORIZED
    client2 = h.client("c2")
    events = client2.connect(authentication_method="other")
    [refused] = [e for e in events if isinstance(e, ConnectionRefused)]
    assert refused.reason_code == ReasonCode.BAD_AUTHENTICATION_METHOD


def test_default_authenticator_refuses_auth_methods():
    h = BrokerHarness()
    client = h.client("c")
    events = client.connect(authentication_method="SCRAM")
    [refused] = [e for e in events if isinstance(e, ConnectionRefused)]
    assert refused.reason_code == ReasonCode.BAD_AUTHENTICATION_METHOD


def test_shutdown():
    h = BrokerHarness()
    v5 = h.connected("v5")
    v3 = h.connected("v3", V311)
    h.broker.shutdown(h.now)
    h.pump()
    [gone] = [e for e in v5.events if isinstance(e, Disconnected)]
    assert gone.reason_code == ReasonCode.SERVER_SHUTTING_DOWN
    assert v5.closed and v3.closed


def test_byte_at_a_time():
    h = BrokerHarness()
    sub = h.connected("sub")
    sub.conn.subscribe(["t"])
    h.pump()
    conn = h.open_raw()
    data = F.connect("slow") + F.encode(PublishPacket("t", b"drip"))
    answer = b""
    for i in range(len(data)):
        answer += h.send_raw(conn, data[i : i + 1])
    assert answer[:1] == b"\x20"
    assert [m.payload for m in sub.take_messages()] == [b"drip"]


def test_client_maximum_packet_size_too_small_for_connack():
    """A regression found by fuzz_broker: a v5 client whose Maximum Packet Size
    cannot hold the accepting CONNACK made the encoder's LocalProtocolError
    escape Broker.receive_data. It now gets the 5-byte refusal 0x95 and is
    closed, before any session is made [MQTT-3.1.2-24]."""
    h = BrokerHarness()
    still_fine = bystanders(h)
    conn = h.open_raw()
    answer = h.send_raw(conn, F.connect("tiny", V5, maximum_packet_size=16))
    assert answer == b"\x20\x03\x00\x95\x00"
    assert conn in h.raw_closed
    assert "tiny" not in [s.client_id for s in h.broker.sessions()]
    still_fine()
