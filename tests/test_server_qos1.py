"""The server role's QoS 1/2 outbound flow, fed raw client bytes: packet
identifiers of prepared messages, acks of what it sent, and the order of
the events an ack causes."""

from __future__ import annotations

import pytest
from helpers import V5
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproto import ProtocolVersion, PublishPacket, QoS, ReasonCode, encode_packet
from mqttproto.codec import prepare_publish
from mqttproto.config import ServerConfig
from mqttproto.events import (
    ConnectRequested,
    Disconnected,
    MessageReceived,
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


class _CheckedServer(ServerConnection):
    """Every PUBLISH the checked way: what the QoS 1 shortcut must equal."""

    def _on_publish(self, packet, now):  # type: ignore[no-untyped-def]
        return self._on_publish_checked(packet)


def _seen(conn: ServerConnection, data: bytes) -> list[object]:
    conn.receive_data(data, 0.0)
    seen: list[object] = []
    for event in conn.events():
        if isinstance(event, MessageReceived):
            seen.append(("message", event.packet))
            if event.packet.packet_id is not None and len(seen) % 3:
                conn.acknowledge(event.packet.packet_id)  # some stay unacknowledged
        else:
            seen.append(event)
    return [*seen, conn.data_to_send(0.0), conn.state, dict(conn._unacked or {})]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([ProtocolVersion.MQTT_5_0, ProtocolVersion.MQTT_3_1_1]),
    st.sampled_from([0, 1, 2]),
    st.integers(1, 4),
    st.lists(
        st.tuples(
            st.integers(1, 6),
            st.sampled_from(["t", "a/b/c", "t/" * 40]),
            st.sampled_from([1, 1, 1, 2, 0]),
            st.booleans(),
        ),
        max_size=12,
    ),
)
def test_a_plain_qos1_publish_is_handled_as_the_checks_say(
    version: ProtocolVersion,
    maximum_qos: int,
    receive_maximum: int,
    publishes: list[tuple[int, str, int, bool]],
) -> None:
    """ServerFlows._on_publish's way for a decoded QoS 1 PUBLISH without flags
    or properties: the same events, answers, state and errors as
    _on_publish_checked (Maximum QoS, duplicates, Receive Maximum)."""
    config = ServerConfig(
        maximum_qos=maximum_qos, receive_maximum=receive_maximum, max_topic_levels=30
    )
    conns = [ServerConnection(config, now=0.0), _CheckedServer(config, now=0.0)]
    hello = encode_packet(ConnectPacket("c", protocol_version=version), version=version)
    for conn in conns:
        conn.receive_data(hello, 0.0)
        assert isinstance(conn.next_event(), ConnectRequested)
        conn.accept()
        conn.data_to_send(0.0)
    for packet_id, topic, qos, retain in publishes:
        packet = PublishPacket(
            topic, b"m", QoS(qos), retain=retain and qos == 2, packet_id=packet_id if qos else None
        )
        data = encode_packet(packet, version=version)
        assert _seen(conns[0], data) == _seen(conns[1], data)
