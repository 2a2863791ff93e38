"""The server role's QoS 1/2 outbound flow, fed raw client bytes: packet
identifiers of prepared messages, acks of what it sent, and the order of
the events an ack causes."""

from __future__ import annotations

import pytest
from helpers import V5

from mqttproto import PublishPacket, QoS, ReasonCode, encode_packet
from mqttproto.codec import prepare_publish
from mqttproto.config import ServerConfig
from mqttproto.events import (
    ConnectRequested,
    Disconnected,
    PublishAcknowledged,
    PublishDiscarded,
)
from mqttproto.packets import ConnectPacket
from mqttproto.server import ServerConnection, ServerSession


def connected(*, session: ServerSession | None = None, **connect: object) -> ServerConnection:
    """A server connection that accepted an MQTT 5 CONNECT; output drained."""
    conn = ServerConnection(ServerConfig(), now=0.0)
    conn.receive_data(
        encode_packet(ConnectPacket("c", clean_start=False, **connect), version=V5), 0.0
    )
    assert isinstance(conn.next_event(), ConnectRequested)
    conn.accept(session_present=session is not None, session=session)
    conn.data_to_send(0.0)
    return conn


def puback(packet_id: int) -> bytes:
    return bytes((0x40, 2, packet_id >> 8, packet_id & 0xFF))


def test_prepared_messages_skip_an_identifier_still_in_use() -> None:
    """[MQTT-2.2.1-3]: a packet identifier is not reused while in flight."""
    conn = connected()
    form = prepare_publish(PublishPacket("t", b"x", QoS.AT_LEAST_ONCE), V5)
    assert conn.publish_prepared(form) == 1
    conn.session.restore_inflight(2, PublishPacket("t", b"y", QoS.AT_LEAST_ONCE, packet_id=2))
    assert conn.publish_prepared(form) == 3
    assert conn.publish_prepared(form) == 4
    data = conn.data_to_send(0.0)
    assert data == b"".join(
        encode_packet(PublishPacket("t", b"x", QoS.AT_LEAST_ONCE, packet_id=i), version=V5)
        for i in (1, 3, 4)
    )
    assert [m.packet_id for m in conn.session.inflight] == [1, 2, 3, 4]


def test_puback_ends_the_flow_once() -> None:
    conn = connected()
    form = prepare_publish(PublishPacket("t", b"x", QoS.AT_LEAST_ONCE), V5)
    assert conn.publish_prepared(form) == 1
    conn.data_to_send(0.0)
    window = conn.send_window
    conn.receive_data(puback(1) + puback(1), 0.0)  # the second: a late duplicate
    assert list(conn.events()) == [PublishAcknowledged(1)]
    assert conn.send_window == window + 1
    assert conn.session.inflight == ()
    assert 1 not in conn.session.packet_ids
    assert conn.data_to_send(0.0) == b""


def test_puback_carries_the_clients_reason_code() -> None:
    conn = connected()
    conn.publish("t", b"x", qos=1)
    conn.receive_data(bytes((0x40, 3, 0, 1, ReasonCode.NO_MATCHING_SUBSCRIBERS)), 0.0)
    assert list(conn.events()) == [PublishAcknowledged(1, ReasonCode.NO_MATCHING_SUBSCRIBERS)]


def test_puback_for_a_qos2_message_is_a_protocol_error() -> None:
    conn = connected()
    conn.publish("t", b"x", qos=2)
    conn.data_to_send(0.0)
    conn.receive_data(puback(1), 0.0)
    [event] = list(conn.events())
    assert isinstance(event, Disconnected)
    assert event.reason_code == ReasonCode.PROTOCOL_ERROR
    assert conn.closed


@pytest.mark.parametrize("receive_maximum", [1, 2])
def test_the_ack_that_lets_a_queued_message_out_comes_before_its_discard(
    receive_maximum: int,
) -> None:
    """A message queued in the session, too large for the client's new
    Maximum Packet Size, is dropped when an ack makes room for it: the ack
    is reported first."""
    old = connected(receive_maximum=1)
    old.publish("t", b"small", qos=1)
    old.publish("t", b"large" * 40, qos=1)
    assert len(old.session.queued) == 1
    conn = connected(session=old.session, receive_maximum=receive_maximum, maximum_packet_size=100)
    if receive_maximum == 2:
        # Room at once: the queued message goes at the resume, and is dropped there.
        assert [type(e) for e in conn.events()] == [PublishDiscarded]
        return
    assert list(conn.events()) == []
    conn.receive_data(puback(1), 0.0)
    events = list(conn.events())
    assert [type(e) for e in events] == [PublishAcknowledged, PublishDiscarded]
    assert events[0] == PublishAcknowledged(1)
    assert isinstance(events[1], PublishDiscarded) and events[1].packet_id == 2
    assert conn.session.inflight == () and conn.session.queued == ()
