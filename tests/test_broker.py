"""Broker core: CONNECT/CONNACK, SUBSCRIBE/SUBACK, routing at QoS 0/1/2, PING, DISCONNECT."""

from __future__ import annotations

import pytest
from helpers import V5, V31, V311, BrokerHarness

from mqttproto import QoS, ReasonCode, Subscription
from mqttproto.events import (
    ConnectionAccepted,
    Disconnected,
    PublishAcknowledged,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)

VERSIONS = [V31, V311, V5]


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_accepted(version):
    h = BrokerHarness()
    client = h.client("c1", version)
    events = client.connect(client_id="c1")
    [accepted] = [e for e in events if isinstance(e, ConnectionAccepted)]
    assert accepted.session_present is False
    assert [s.client_id for s in h.broker.sessions()] == ["c1"]
    assert h.broker.sessions()[0].connected


@pytest.mark.parametrize("pub_version", VERSIONS)
@pytest.mark.parametrize("sub_version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_routed_across_versions(pub_version, sub_version, qos):
    h = BrokerHarness()
    sub = h.connected("sub", sub_version)
    pub = h.connected("pub", pub_version)
    sub.conn.subscribe([Subscription("a/+", QoS.EXACTLY_ONCE)])
    h.pump()
    [suback] = [e for e in sub.take() if isinstance(e, SubscribeAcknowledged)]
    assert suback.reason_codes == (ReasonCode.GRANTED_QOS_2,)
    packet_id = pub.conn.publish("a/b", b"hello", qos=qos)
    h.pump()
    [message] = sub.take_messages()
    assert (message.topic, message.payload, message.qos) == ("a/b", b"hello", qos)
    if qos:
        [ack] = [e for e in pub.take() if isinstance(e, PublishAcknowledged)]
        assert ack.packet_id == packet_id and ack.reason_code == ReasonCode.SUCCESS
    # Every QoS 1/2 flow is complete on both sides.
    session = h.broker._sessions["sub"]
    assert not session.flows.outbound.inflight and not session.pending
    assert not h.broker._sessions["pub"].flows.awaiting_release


def test_qos_downgraded_to_granted():
    h = BrokerHarness()
    sub = h.connected("sub")
    pub = h.connected("pub")
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    pub.conn.publish("t", b"x", qos=2)
    h.pump()
    [message] = sub.take_messages()
    assert message.qos == QoS.AT_LEAST_ONCE  # [MQTT-3.8.4-8]


def test_ping_and_disconnect():
    h = BrokerHarness(None)
    client = h.connected("c")
    conn_id = client.conn_id
    h.broker.receive_data(conn_id, b"\xc0\x00", h.now)
    assert h.broker.data_to_send(conn_id, h.now) == b"\xd0\x00"  # [MQTT-3.12.4-1]
    client.conn.disconnect()
    h.pump()
    assert client.closed
    assert h.broker.sessions() == []  # a clean session ends with the connection


def test_no_matching_subscribers_code_for_v5():
    h = BrokerHarness()
    pub = h.connected("pub")
    pub.conn.publish("nobody/home", b"x", qos=1)
    h.pump()
    [ack] = [e for e in pub.take() if isinstance(e, PublishAcknowledged)]
    assert ack.reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_unsubscribe():
    h = BrokerHarness()
    sub = h.connected("sub")
    pub = h.connected("pub")
    sub.conn.subscribe(["t"])
    h.pump()
    sub.conn.unsubscribe(["t", "never"])
    h.pump()
    [unsuback] = [e for e in sub.take() if isinstance(e, UnsubscribeAcknowledged)]
    assert unsuback.reason_codes == (ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED)
    pub.conn.publish("t", b"x")
    h.pump()
    assert sub.take_messages() == []
    assert h.broker.subscribers("t") == []


def test_flush_and_close_bookkeeping():
    h = BrokerHarness()
    client = h.connected("c")
    client.conn.disconnect()
    h.pump()
    assert h.broker.connections_to_close() == []
    assert h.broker.flush(h.now) == []
    assert any(isinstance(e, Disconnected) for e in client.events)
