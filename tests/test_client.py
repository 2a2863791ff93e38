"""ClientConnection against a scripted server: bytes on the wire, events out."""

from __future__ import annotations

import pytest
from scripted import Clock, Server, connected

from mqttproto import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    ProtocolVersion,
    QoS,
    ReasonCode,
    ReceiveMaximumExceeded,
    RemoteProtocolError,
    TopicAliasInvalid,
)
from mqttproto.client import ClientConnection
from mqttproto.config import ClientConfig
from mqttproto.events import (
    AuthChallenged,
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    MessageReceived,
    PublishAcknowledged,
    PublishDiscarded,
    Reauthenticated,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)
from mqttproto.packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    PingReqPacket,
    PingRespPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    UnsubAckPacket,
    UnsubscribePacket,
    Will,
)

V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
V31 = ProtocolVersion.MQTT_3_1
ALL_VERSIONS = [V31, V311, V5]


# ---------------------------------------------------------------------------
# Connecting


def test_connect_bytes_v311() -> None:
    client = ClientConnection(V311)
    client.connect(client_id="abc", keep_alive=30)
    assert client.data_to_send(0.0) == (b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x1e\x00\x03abc")


def test_connect_bytes_v5_with_limits() -> None:
    client = ClientConnection(V5, config=ClientConfig(receive_maximum=10, topic_alias_maximum=5))
    client.connect(client_id="a", keep_alive=10, session_expiry_interval=60)
    server = Server(client)
    (connect,) = server.received()
    assert isinstance(connect, ConnectPacket)
    assert connect.receive_maximum == 10
    assert connect.topic_alias_maximum == 5
    assert connect.session_expiry_interval == 60
    assert connect.maximum_packet_size is None  # the protocol maximum is left out


def test_connect_with_will_and_credentials() -> None:
    client = ClientConnection(V311)
    will = Will("last/words", b"bye", QoS.AT_LEAST_ONCE, retain=True)
    client.connect(client_id="w", will=will, username="u", password="p")
    (connect,) = Server(client).received()
    assert isinstance(connect, ConnectPacket)
    assert connect.will == will
    assert (connect.username, connect.password) == ("u", b"p")


def test_connack_accepted_reports_server_limits() -> None:
    client = ClientConnection(V5)
    server = Server(client)
    client.connect(client_id="", keep_alive=60)
    server.received()
    server.send(
        ConnAckPacket(
            False,
            receive_maximum=3,
            maximum_qos=QoS.AT_LEAST_ONCE,
            retain_available=False,
            maximum_packet_size=1000,
            assigned_client_identifier="auto-1",
            topic_alias_maximum=4,
            server_keep_alive=20,
            shared_subscription_available=False,
        )
    )
    (event,) = server.events()
    assert isinstance(event, ConnectionAccepted)
    assert event.session_present is False
    assert event.receive_maximum == 3
    assert event.maximum_qos == QoS.AT_LEAST_ONCE
    assert event.retain_available is False
    assert event.maximum_packet_size == 1000
    assert event.topic_alias_maximum == 4
    assert event.keep_alive == 20
    assert event.wildcard_subscription_available is True
    assert event.shared_subscription_available is False
    assert client.client_id == "auto-1"
    assert client.keep_alive == 20


@pytest.mark.parametrize(
    ("version", "connack", "reason"),
    [
        (V311, ConnAckPacket(False, ReasonCode.NOT_AUTHORIZED), ReasonCode.NOT_AUTHORIZED),
        (V311, ConnAckPacket(False, ReasonCode.SERVER_UNAVAILABLE), ReasonCode.SERVER_UNAVAILABLE),
        (V5, ConnAckPacket(False, ReasonCode.BANNED, reason_string="no"), ReasonCode.BANNED),
    ],
)
def test_connack_refused(
    version: ProtocolVersion, connack: ConnAckPacket, reason: ReasonCode
) -> None:
    client = ClientConnection(version)
    server = Server(client)
    client.connect(client_id="x")
    server.received()
    server.send(connack)
    (event,) = server.events()
    assert isinstance(event, ConnectionRefused)
    assert event.reason_code == reason
    assert client.closed
    # Nothing more may be sent, and the object may connect again.
    with pytest.raises(LocalProtocolError):
        client.publish("t", b"", qos=0)
    client.connect(client_id="x")
    assert isinstance(Server(client).received()[0], ConnectPacket)


def test_session_present_for_a_clean_start_is_a_protocol_error() -> None:
    client = ClientConnection(V5)
    server = Server(client)
    client.connect(client_id="x", clean_start=True)
    server.received()
    with pytest.raises(RemoteProtocolError) as info:
        server.send(ConnAckPacket(True))
    assert info.value.reason_code == ReasonCode.PROTOCOL_ERROR
    (goodbye,) = server.received()
    assert goodbye == DisconnectPacket(ReasonCode.PROTOCOL_ERROR, reason_string=str(info.value))
    assert client.closed


def test_connect_twice_is_refused_and_changes_nothing() -> None:
    server = connected()
    with pytest.raises(LocalProtocolError):
        server.client.connect(client_id="again")
    assert server.wire() == b""
    assert server.client.client_id == "c"


def test_v5_only_connect_arguments_refused_on_311() -> None:
    client = ClientConnection(V311)
    with pytest.raises(LocalProtocolError):
        client.connect(client_id="x", session_expiry_interval=10)
    with pytest.raises(LocalProtocolError):
        client.connect(client_id="x", receive_maximum=10)
    assert client.data_to_send(0) == b""


def test_data_before_connect_is_refused() -> None:
    client = ClientConnection(V5)
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"\x20\x02\x00\x00", 0.0)


# ---------------------------------------------------------------------------
# Publishing


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_publish_qos0_bytes(version: ProtocolVersion) -> None:
    server = connected(version)
    assert server.client.publish("a/b", b"hi") is None
    extra = b"\x00" if version == V5 else b""
    body = b"\x00\x03a/b" + extra + b"hi"
    assert server.wire() == bytes((0x30, len(body))) + body


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_publish_qos1_flow(version: ProtocolVersion) -> None:
    server = connected(version)
    packet_id = server.client.publish("t", b"x", qos=1)
    assert packet_id == 1
    (sent,) = server.received()
    assert sent == PublishPacket("t", b"x", QoS.AT_LEAST_ONCE, packet_id=1)
    assert server.client.inflight == 1
    server.send(PubAckPacket(1))
    assert server.events() == [PublishAcknowledged(1)]
    assert server.client.inflight == 0


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_publish_qos2_flow(version: ProtocolVersion) -> None:
    server = connected(version)
    packet_id = server.client.publish("t", b"x", qos=2)
    assert packet_id is not None
    server.received()
    server.send(PubRecPacket(packet_id))
    assert server.events() == []
    assert server.wire() == b"\x62\x02" + packet_id.to_bytes(2, "big")
    server.send(PubCompPacket(packet_id))
    assert server.events() == [PublishAcknowledged(packet_id)]


def test_pubrec_failure_ends_the_qos2_flow() -> None:
    server = connected()
    packet_id = server.client.publish("t", b"x", qos=2)
    assert packet_id is not None
    server.received()
    server.send(PubRecPacket(packet_id, ReasonCode.NOT_AUTHORIZED))
    assert server.events() == [PublishAcknowledged(packet_id, ReasonCode.NOT_AUTHORIZED)]
    assert server.wire() == b""  # no PUBREL after a failed PUBREC [MQTT-4.3.3-4]
    assert server.client.inflight == 0


def test_no_matching_subscribers_is_reported() -> None:
    server = connected()
    server.client.publish("t", b"x", qos=1)
    server.received()
    server.send(PubAckPacket(1, ReasonCode.NO_MATCHING_SUBSCRIBERS))
    (event,) = server.events()
    assert isinstance(event, PublishAcknowledged)
    assert event.reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_stale_acks_are_ignored_and_unknown_pubrec_is_answered() -> None:
    server = connected()
    server.send(PubAckPacket(9), PubCompPacket(9))
    assert server.events() == []
    server.send(PubRecPacket(9))
    assert server.received() == [PubRelPacket(9, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]


def test_puback_for_a_qos2_message_is_a_protocol_error() -> None:
    server = connected()
    server.client.publish("t", b"x", qos=2)
    server.received()
    with pytest.raises(RemoteProtocolError):
        server.send(PubAckPacket(1))
    assert server.client.closed


def test_packet_ids_are_distinct_while_in_use() -> None:
    server = connected()
    ids = [server.client.publish("t", b"", qos=1) for _ in range(50)]
    assert len(set(ids)) == 50
    assert server.client.subscribe("x") not in ids


def test_publish_respects_server_receive_maximum() -> None:
    server = connected(connack={"receive_maximum": 2})
    client = server.client
    ids = [client.publish("t", bytes([n]), qos=1) for n in range(5)]
    sent = server.received()
    assert [p.packet_id for p in sent] == ids[:2]  # type: ignore[attr-defined]
    assert (client.inflight, client.queued) == (2, 3)
    server.send(PubAckPacket(ids[1]))  # type: ignore[arg-type]
    assert [p.packet_id for p in server.received()] == [ids[2]]  # type: ignore[attr-defined]
    server.send(PubAckPacket(ids[0]), PubAckPacket(ids[2]))  # type: ignore[arg-type]
    assert [p.packet_id for p in server.received()] == ids[3:]  # type: ignore[attr-defined]


def test_queued_messages_are_bounded() -> None:
    server = connected(connack={"receive_maximum": 1}, config=ClientConfig(max_queued_messages=2))
    client = server.client
    for _ in range(3):
        client.publish("t", b"", qos=1)
    with pytest.raises(LocalProtocolError):
        client.publish("t", b"", qos=1)
    assert (client.inflight, client.queued) == (1, 2)


def test_unsent_output_is_bounded() -> None:
    server = connected(config=ClientConfig(max_unsent_packets=3))
    client = server.client
    for _ in range(3):
        client.publish("t", b"")
    with pytest.raises(LocalProtocolError, match="data_to_send"):
        client.publish("t", b"")
    with pytest.raises(LocalProtocolError):
        client.subscribe("a")
    assert len(server.received()) == 3
    client.publish("t", b"")  # room again once written


@pytest.mark.parametrize(
    ("connack", "kwargs"),
    [
        ({"maximum_qos": QoS.AT_MOST_ONCE}, {"qos": 1}),
        ({"maximum_qos": QoS.AT_LEAST_ONCE}, {"qos": 2}),
        ({"retain_available": False}, {"retain": True}),
    ],
)
def test_server_limits_refuse_publish(
    connack: dict[str, object], kwargs: dict[str, object]
) -> None:
    server = connected(connack=connack)
    with pytest.raises(LocalProtocolError):
        server.client.publish("t", b"x", **kwargs)  # type: ignore[arg-type]
    assert server.wire() == b""
    assert server.client.inflight == 0


def test_server_maximum_packet_size_refuses_before_sending() -> None:
    server = connected(connack={"maximum_packet_size": 50})
    with pytest.raises(LocalProtocolError, match="Maximum Packet Size"):
        server.client.publish("t", b"x" * 100, qos=1)
    assert server.wire() == b""
    # The refused message did not take a packet id.
    assert server.client.publish("t", b"x", qos=1) == 1


def test_invalid_topic_refused_without_change() -> None:
    server = connected()
    for topic in ("a/+", "a/#", ""):
        with pytest.raises(LocalProtocolError):
            server.client.publish(topic, b"", qos=1)
    assert server.wire() == b""
    assert server.client.inflight == 0


def test_publish_str_payload_is_utf8() -> None:
    server = connected()
    server.client.publish("t", "é")
    (sent,) = server.received()
    assert isinstance(sent, PublishPacket)
    assert sent.payload == "é".encode()


def test_publish_v5_properties() -> None:
    server = connected()
    server.client.publish(
        "req",
        b"?",
        qos=1,
        response_topic="resp",
        correlation_data=b"42",
        message_expiry_interval=30,
        content_type="text/plain",
        payload_format_indicator=1,
        user_properties=[("k", "v")],
    )
    (sent,) = server.received()
    assert isinstance(sent, PublishPacket)
    assert sent.response_topic == "resp"
    assert sent.correlation_data == b"42"
    assert sent.message_expiry_interval == 30
    assert sent.user_properties == (("k", "v"),)


# ---------------------------------------------------------------------------
# Topic aliases


def test_outbound_topic_alias_lru() -> None:
    server = connected(connack={"topic_alias_maximum": 2})
    client = server.client
    client.publish("aaaa", b"1")
    client.publish("aaaa", b"2")
    client.publish("bbbb", b"3")
    client.publish("cccc", b"4")  # evicts aaaa (least recently used): takes alias 1
    client.publish("bbbb", b"5")
    sent = server.received()
    wire = [(p.topic, p.topic_alias) for p in sent]  # type: ignore[attr-defined]
    assert wire == [("aaaa", 1), ("", 1), ("bbbb", 2), ("cccc", 1), ("", 2)]


def test_outbound_topic_alias_opt_out() -> None:
    server = connected(
        connack={"topic_alias_maximum": 5}, config=ClientConfig(auto_topic_alias=False)
    )
    server.client.publish("t", b"")
    server.client.publish("t", b"")
    assert [p.topic_alias for p in server.received()] == [None, None]  # type: ignore[attr-defined]


def test_no_outbound_alias_when_server_allows_none() -> None:
    server = connected()
    server.client.publish("t", b"")
    (sent,) = server.received()
    assert isinstance(sent, PublishPacket)
    assert sent.topic_alias is None


def test_inbound_topic_alias_resolved() -> None:
    server = connected(config=ClientConfig(topic_alias_maximum=3))
    server.send(PublishPacket("x/y", b"1", topic_alias=2), PublishPacket("", b"2", topic_alias=2))
    events = server.events()
    assert [(e.topic, e.payload) for e in events] == [("x/y", b"1"), ("x/y", b"2")]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "packet",
    [
        PublishPacket("x", b"", topic_alias=4),  # above our Topic Alias Maximum
        PublishPacket("", b"", topic_alias=1),  # never defined
    ],
)
def test_bad_inbound_topic_alias(packet: PublishPacket) -> None:
    server = connected(config=ClientConfig(topic_alias_maximum=3))
    with pytest.raises(TopicAliasInvalid) as info:
        server.send(packet)
    assert info.value.reason_code == ReasonCode.TOPIC_ALIAS_INVALID
    (goodbye,) = server.received()
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.TOPIC_ALIAS_INVALID
    (event,) = server.events()
    assert event == Disconnected(ReasonCode.TOPIC_ALIAS_INVALID)


# ---------------------------------------------------------------------------
# Receiving


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_receive_qos0_qos1_qos2_with_automatic_acks(version: ProtocolVersion) -> None:
    server = connected(version)
    server.send(
        PublishPacket("a", b"0"),
        PublishPacket("b", b"1", QoS.AT_LEAST_ONCE, packet_id=5),
        PublishPacket("c", b"2", QoS.EXACTLY_ONCE, packet_id=6),
    )
    events = server.events()
    assert [(e.topic, e.payload, e.qos, e.packet_id) for e in events] == [  # type: ignore[attr-defined]
        ("a", b"0", QoS.AT_MOST_ONCE, None),
        ("b", b"1", QoS.AT_LEAST_ONCE, 5),
        ("c", b"2", QoS.EXACTLY_ONCE, 6),
    ]
    assert server.wire() == b"\x40\x02\x00\x05\x50\x02\x00\x06"
    server.send(PubRelPacket(6))
    assert server.wire() == b"\x70\x02\x00\x06"


def test_qos2_retransmission_is_delivered_once() -> None:
    server = connected()
    message = PublishPacket("c", b"2", QoS.EXACTLY_ONCE, packet_id=6)
    server.send(message)
    server.send(PublishPacket("c", b"2", QoS.EXACTLY_ONCE, duplicate=True, packet_id=6))
    assert len(server.events()) == 1
    assert server.wire() == b"\x50\x02\x00\x06" * 2  # PUBREC answered each time
    server.send(PubRelPacket(6))
    assert server.wire() == b"\x70\x02\x00\x06"
    # After PUBREL the id is free: a new message with it is new.
    server.send(message)
    assert len(server.events()) == 1


def test_pubrel_for_unknown_id_gets_pubcomp() -> None:
    server = connected()
    server.send(PubRelPacket(77))
    assert server.received() == [PubCompPacket(77, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]
    server311 = connected(V311)
    server311.send(PubRelPacket(77))
    assert server311.wire() == b"\x70\x02\x00\x4d"


def test_message_received_carries_v5_properties() -> None:
    server = connected()
    server.send(
        PublishPacket(
            "t",
            b"p",
            QoS.AT_LEAST_ONCE,
            True,
            packet_id=3,
            response_topic="r",
            correlation_data=b"c",
            user_properties=(("a", "b"),),
            subscription_identifiers=(7,),
            content_type="ct",
            message_expiry_interval=9,
            payload_format_indicator=1,
        )
    )
    (event,) = server.events()
    assert isinstance(event, MessageReceived)
    assert event.retain is True
    assert event.duplicate is False
    assert event.response_topic == "r"
    assert event.correlation_data == b"c"
    assert event.user_properties == (("a", "b"),)
    assert event.subscription_identifiers == (7,)
    assert event.content_type == "ct"
    assert event.message_expiry_interval == 9
    assert event.payload_format_indicator == 1


def test_manual_acknowledgement() -> None:
    server = connected(config=ClientConfig(auto_acknowledge=False))
    client = server.client
    server.send(
        PublishPacket("a", b"1", QoS.AT_LEAST_ONCE, packet_id=1),
        PublishPacket("b", b"2", QoS.EXACTLY_ONCE, packet_id=2),
    )
    assert len(server.events()) == 2
    assert server.wire() == b""
    # A retransmission before the ack is not delivered twice.
    server.send(PublishPacket("a", b"1", QoS.AT_LEAST_ONCE, duplicate=True, packet_id=1))
    assert server.events() == []
    client.acknowledge(2)
    client.acknowledge(1, ReasonCode.SUCCESS)
    assert server.wire() == b"\x50\x02\x00\x02\x40\x02\x00\x01"
    with pytest.raises(LocalProtocolError):
        client.acknowledge(1)
    server.send(PubRelPacket(2))
    assert server.wire() == b"\x70\x02\x00\x02"


def test_manual_refusal_with_reason_code() -> None:
    server = connected(config=ClientConfig(auto_acknowledge=False))
    server.send(PublishPacket("b", b"2", QoS.EXACTLY_ONCE, packet_id=2))
    server.events()
    server.client.acknowledge(2, ReasonCode.PAYLOAD_FORMAT_INVALID)
    assert server.received() == [PubRecPacket(2, ReasonCode.PAYLOAD_FORMAT_INVALID)]
    # The refused flow is over: the id is not awaiting PUBREL.
    server.send(PubRelPacket(2))
    assert server.received() == [PubCompPacket(2, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]


def test_our_receive_maximum_is_enforced() -> None:
    server = connected(config=ClientConfig(receive_maximum=2, auto_acknowledge=False))
    server.send(
        PublishPacket("a", b"", QoS.AT_LEAST_ONCE, packet_id=1),
        PublishPacket("a", b"", QoS.AT_LEAST_ONCE, packet_id=2),
    )
    with pytest.raises(ReceiveMaximumExceeded) as info:
        server.send(PublishPacket("a", b"", QoS.AT_LEAST_ONCE, packet_id=3))
    assert info.value.reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert server.received()[-1] == DisconnectPacket(
        ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, reason_string=str(info.value)
    )


def test_our_maximum_packet_size_is_enforced() -> None:
    server = connected(config=ClientConfig(maximum_packet_size=64))
    with pytest.raises(PacketTooLarge):
        server.send(PublishPacket("t", b"x" * 100))
    (goodbye,) = server.received()
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.PACKET_TOO_LARGE


# ---------------------------------------------------------------------------
# Subscribing


def test_subscribe_and_unsubscribe() -> None:
    server = connected()
    client = server.client
    packet_id = client.subscribe(
        [Subscription("a/#", QoS.AT_LEAST_ONCE, no_local=True), "b/+"],
        subscription_identifier=4,
    )
    (sub,) = server.received()
    assert sub == SubscribePacket(
        packet_id,
        (Subscription("a/#", QoS.AT_LEAST_ONCE, no_local=True), Subscription("b/+")),
        subscription_identifier=4,
    )
    server.send(SubAckPacket(packet_id, (ReasonCode.GRANTED_QOS_1, ReasonCode.NOT_AUTHORIZED)))
    assert server.events() == [
        SubscribeAcknowledged(packet_id, (ReasonCode.GRANTED_QOS_1, ReasonCode.NOT_AUTHORIZED))
    ]
    unsub_id = client.unsubscribe("a/#")
    assert server.received() == [UnsubscribePacket(unsub_id, ("a/#",))]
    server.send(UnsubAckPacket(unsub_id, (ReasonCode.SUCCESS,)))
    assert server.events() == [UnsubscribeAcknowledged(unsub_id, (ReasonCode.SUCCESS,))]


def test_unsuback_v311_has_no_codes() -> None:
    server = connected(V311)
    unsub_id = server.client.unsubscribe(["a", "b"])
    server.received()
    server.send(UnsubAckPacket(unsub_id))
    assert server.events() == [UnsubscribeAcknowledged(unsub_id)]


def test_suback_with_wrong_code_count_is_a_protocol_error() -> None:
    server = connected()
    packet_id = server.client.subscribe(["a", "b"])
    server.received()
    with pytest.raises(RemoteProtocolError):
        server.send(SubAckPacket(packet_id, (ReasonCode.GRANTED_QOS_0,)))


def test_unexpected_suback_is_a_protocol_error() -> None:
    server = connected()
    with pytest.raises(RemoteProtocolError):
        server.send(SubAckPacket(3, (ReasonCode.GRANTED_QOS_0,)))


@pytest.mark.parametrize(
    ("connack", "subscribe"),
    [
        ({"wildcard_subscription_available": False}, {"subscriptions": "a/+"}),
        ({"shared_subscription_available": False}, {"subscriptions": "$share/g/a"}),
        (
            {"subscription_identifiers_available": False},
            {"subscriptions": "a", "subscription_identifier": 1},
        ),
    ],
)
def test_subscribe_respects_server_features(
    connack: dict[str, object], subscribe: dict[str, object]
) -> None:
    server = connected(connack=connack)
    with pytest.raises(LocalProtocolError):
        server.client.subscribe(**subscribe)  # type: ignore[arg-type]
    assert server.wire() == b""


def test_subscribe_invalid_filter_refused() -> None:
    server = connected()
    with pytest.raises(LocalProtocolError):
        server.client.subscribe("a/#/b")
    assert server.wire() == b""


def test_subscribe_before_connack_refused() -> None:
    client = ClientConnection(V5)
    client.connect(client_id="x")
    with pytest.raises(LocalProtocolError):
        client.subscribe("a")


# ---------------------------------------------------------------------------
# Keep-alive and timers


def test_pingreq_after_keep_alive_of_silence() -> None:
    clock = Clock(0.0)
    client = ClientConnection(V311)
    server = Server(client, clock)
    client.connect(client_id="k", keep_alive=10)
    server.received()
    server.send(ConnAckPacket())
    assert isinstance(server.events()[0], ConnectionAccepted)
    assert client.get_timer() == 10.0
    clock.advance(5)
    client.publish("t", b"")
    server.received()  # sent at t=5: the next ping is due at 15
    assert client.get_timer() == 15.0
    client.handle_timer(14.9)
    assert server.wire() == b""
    clock.advance(10)
    client.handle_timer(clock.now)
    assert server.received() == [PingReqPacket()]
    deadline = client.get_timer()
    assert deadline == 25.0
    server.send(PingRespPacket())
    client.handle_timer(clock.now)
    assert client.get_timer() == 25.0
    assert server.events() == []
    assert not client.closed


def test_keep_alive_timeout_without_pingresp() -> None:
    clock = Clock(0.0)
    server = connected(V311, connect={"client_id": "k", "keep_alive": 10})
    server.clock = clock
    client = server.client
    client.data_to_send(0.0)
    client.handle_timer(10.0)
    assert server.received() == [PingReqPacket()]
    client.handle_timer(19.9)
    assert not client.closed
    client.handle_timer(20.0)
    assert client.closed
    assert server.events() == [
        Disconnected(ReasonCode.KEEP_ALIVE_TIMEOUT, reason_string="no PINGRESP from the server")
    ]
    assert client.get_timer() is None


def test_any_packet_answers_the_ping() -> None:
    server = connected(V311, connect={"client_id": "k", "keep_alive": 10})
    client = server.client
    client.data_to_send(0.0)
    client.handle_timer(10.0)
    client.data_to_send(10.0)
    client.receive_data(b"\x30\x03\x00\x01t", 12.0)  # a PUBLISH, not a PINGRESP
    client.handle_timer(20.0)
    assert not client.closed


def test_ping_timeout_from_config() -> None:
    server = connected(
        V311, connect={"client_id": "k", "keep_alive": 60}, config=ClientConfig(ping_timeout=5)
    )
    client = server.client
    client.data_to_send(0.0)
    client.handle_timer(60.0)
    assert client.get_timer() == 65.0


def test_server_keep_alive_is_honoured() -> None:
    server = connected(
        connect={"client_id": "k", "keep_alive": 100}, connack={"server_keep_alive": 7}
    )
    client = server.client
    client.data_to_send(0.0)
    assert client.get_timer() == 7.0


def test_keep_alive_zero_means_no_timer() -> None:
    server = connected(connect={"client_id": "k", "keep_alive": 0})
    assert server.client.get_timer() is None
    server.client.handle_timer(1e9)
    assert server.wire() == b""


def test_connect_timeout() -> None:
    client = ClientConnection(V5, config=ClientConfig(connect_timeout=3))
    client.connect(client_id="x")
    assert client.get_timer() is None  # not sent yet
    client.data_to_send(100.0)
    assert client.get_timer() == 103.0
    client.handle_timer(102.0)
    assert not client.closed
    client.handle_timer(103.0)
    assert client.closed
    (event,) = client.events()
    assert isinstance(event, Disconnected)


# ---------------------------------------------------------------------------
# Ending the connection


def test_disconnect_v5_with_reason_and_will() -> None:
    server = connected()
    server.client.disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)
    assert server.wire() == b"\xe0\x01\x04"
    assert server.events() == [Disconnected(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)]
    assert server.client.closed
    with pytest.raises(LocalProtocolError):
        server.client.disconnect()


def test_disconnect_311_bytes_and_reason_refused() -> None:
    server = connected(V311)
    with pytest.raises(LocalProtocolError):
        server.client.disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)
    assert not server.client.closed
    server.client.disconnect()
    assert server.wire() == b"\xe0\x00"


def test_disconnect_cannot_raise_zero_session_expiry() -> None:
    server = connected()
    with pytest.raises(LocalProtocolError, match=r"MQTT-3\.14\.2-2"):
        server.client.disconnect(session_expiry_interval=30)
    assert not server.client.closed


def test_server_disconnect_v5() -> None:
    server = connected()
    server.send(
        DisconnectPacket(
            ReasonCode.SERVER_MOVED, server_reference="other:1883", reason_string="moving"
        )
    )
    assert server.events() == [
        Disconnected(
            ReasonCode.SERVER_MOVED,
            by_server=True,
            server_reference="other:1883",
            reason_string="moving",
        )
    ]
    assert server.client.closed
    assert server.wire() == b""


def test_server_disconnect_v311_is_a_protocol_error() -> None:
    server = connected(V311)
    with pytest.raises(RemoteProtocolError):
        server.send_bytes(b"\xe0\x00")
    assert server.wire() == b""  # 3.1.1 has no way to say why: just close
    assert server.client.closed


def test_eof() -> None:
    server = connected()
    server.client.receive_eof(5.0)
    assert server.events() == [Disconnected(ReasonCode.UNSPECIFIED_ERROR)]
    assert server.client.closed
    server.client.receive_eof(6.0)  # idempotent
    assert server.events() == []


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x30\x02\x00\x05", MalformedPacket),  # topic length past the end
        (b"\x82\x05\x00\x01\x00\x01a", RemoteProtocolError),  # SUBSCRIBE from a server
        (b"\x20\x02\x00\x00", RemoteProtocolError),  # a second CONNACK
        (b"\xc0\x00", RemoteProtocolError),  # PINGREQ from a server
    ],
)
def test_illegal_input_queues_goodbye_and_closes(data: bytes, error: type[Exception]) -> None:
    server = connected()
    with pytest.raises(error) as info:
        server.send_bytes(data)
    assert isinstance(info.value, RemoteProtocolError)
    (goodbye,) = server.received()
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == info.value.reason_code
    assert server.events() == [Disconnected(info.value.reason_code)]
    assert server.client.closed
    # Later bytes are ignored; the object can connect again.
    server.send_bytes(b"\x30\x03\x00\x01t")
    assert server.events() == []
    server.client.connect(client_id="c", clean_start=False)


def test_packets_after_disconnect_in_same_read_are_dropped() -> None:
    server = connected()
    server.send(DisconnectPacket(), PublishPacket("t", b""))
    events = server.events()
    assert len(events) == 1
    assert isinstance(events[0], Disconnected)


def test_publish_before_connack_only_queues_qos_above_0() -> None:
    client = ClientConnection(V5)
    server = Server(client)
    client.connect(client_id="c")
    server.received()
    with pytest.raises(LocalProtocolError):
        client.publish("t", b"", qos=0)
    packet_id = client.publish("t", b"q", qos=1)
    assert server.wire() == b""
    server.send(ConnAckPacket())
    server.events()
    assert server.received() == [PublishPacket("t", b"q", QoS.AT_LEAST_ONCE, packet_id=packet_id)]


# ---------------------------------------------------------------------------
# Sessions across connections


def _resume(server: Server, *, session_present: bool, **connack: object) -> list[object]:
    server.client.connect(client_id="c", clean_start=False, session_expiry_interval=300)
    server.reset_reader()
    assert isinstance(server.received()[0], ConnectPacket)
    server.send(ConnAckPacket(session_present, **connack))  # type: ignore[arg-type]
    return server.events()


def test_resume_resends_publish_with_dup_and_pubrel() -> None:
    server = connected(
        connect={"client_id": "c", "clean_start": False, "session_expiry_interval": 300}
    )
    client = server.client
    first = client.publish("a", b"1", qos=1)
    second = client.publish("b", b"2", qos=2)
    third = client.publish("c", b"3", qos=2)
    server.received()
    server.send(PubRecPacket(third))  # type: ignore[arg-type]
    server.received()  # PUBREL for the third
    client.receive_eof(1.0)
    server.events()
    events = _resume(server, session_present=True)
    assert isinstance(events[0], ConnectionAccepted)
    assert server.received() == [
        PublishPacket("a", b"1", QoS.AT_LEAST_ONCE, duplicate=True, packet_id=first),
        PublishPacket("b", b"2", QoS.EXACTLY_ONCE, duplicate=True, packet_id=second),
        PubRelPacket(third),  # type: ignore[arg-type]
    ]
    server.send(PubAckPacket(first), PubCompPacket(third))  # type: ignore[arg-type]
    assert [e.packet_id for e in server.events()] == [first, third]  # type: ignore[attr-defined]


def test_resume_without_session_discards_state() -> None:
    server = connected(
        connect={"client_id": "c", "clean_start": False, "session_expiry_interval": 300}
    )
    client = server.client
    first = client.publish("a", b"1", qos=1)
    server.received()
    client.receive_eof(1.0)
    server.events()
    offline = client.publish("b", b"2", qos=1)  # the session persists: queued offline
    events = _resume(server, session_present=False)
    assert isinstance(events[0], ConnectionAccepted)
    assert events[1:] == [
        PublishDiscarded(first, "the server did not resume the session"),  # type: ignore[arg-type]
        PublishDiscarded(offline, "the server did not resume the session"),  # type: ignore[arg-type]
    ]
    assert server.received() == []
    assert client.inflight == client.queued == 0


def test_offline_queue_is_sent_on_resume_within_new_limits() -> None:
    server = connected(
        connect={"client_id": "c", "clean_start": False, "session_expiry_interval": 300}
    )
    client = server.client
    client.receive_eof(1.0)
    server.events()
    keep = client.publish("a", b"1", qos=1)
    drop = client.publish("b", b"2", qos=2)
    events = _resume(server, session_present=True, maximum_qos=QoS.AT_LEAST_ONCE)
    assert events[1:] == [PublishDiscarded(drop, "QoS 2 exceeds the server's Maximum QoS")]  # type: ignore[arg-type]
    assert server.received() == [PublishPacket("a", b"1", QoS.AT_LEAST_ONCE, packet_id=keep)]


def test_inbound_qos2_dedup_survives_reconnect() -> None:
    server = connected(
        connect={"client_id": "c", "clean_start": False, "session_expiry_interval": 300}
    )
    server.send(PublishPacket("t", b"x", QoS.EXACTLY_ONCE, packet_id=9))
    assert len(server.events()) == 1
    server.received()
    server.client.receive_eof(1.0)
    server.events()
    _resume(server, session_present=True)
    server.send(PublishPacket("t", b"x", QoS.EXACTLY_ONCE, duplicate=True, packet_id=9))
    assert server.events() == []
    assert server.received() == [PubRecPacket(9)]


def test_clean_start_discards_session() -> None:
    server = connected(
        connect={"client_id": "c", "clean_start": False, "session_expiry_interval": 300}
    )
    client = server.client
    packet_id = client.publish("a", b"1", qos=1)
    client.receive_eof(1.0)
    server.events()
    client.connect(client_id="c", clean_start=True)
    assert list(client.events()) == [
        PublishDiscarded(packet_id, "a clean start discards the session")
    ]  # type: ignore[arg-type]
    assert client.inflight == 0


def test_offline_publish_needs_a_persistent_session() -> None:
    server = connected()  # v5 default: session expires at disconnect
    server.client.receive_eof(1.0)
    with pytest.raises(LocalProtocolError):
        server.client.publish("t", b"", qos=1)


def test_pending_subscribe_is_forgotten_when_the_connection_ends() -> None:
    server = connected(
        connect={"client_id": "c", "clean_start": False, "session_expiry_interval": 300}
    )
    packet_id = server.client.subscribe("a")
    server.client.receive_eof(1.0)
    server.events()
    _resume(server, session_present=True)
    with pytest.raises(RemoteProtocolError):
        server.send(SubAckPacket(packet_id, (ReasonCode.GRANTED_QOS_0,)))


# ---------------------------------------------------------------------------
# Enhanced authentication


def test_enhanced_authentication_during_connect() -> None:
    client = ClientConnection(V5)
    server = Server(client)
    client.connect(client_id="a", authentication_method="SCRAM", authentication_data=b"first")
    (connect,) = server.received()
    assert isinstance(connect, ConnectPacket)
    assert connect.authentication_method == "SCRAM"
    with pytest.raises(LocalProtocolError):
        client.auth(b"too early")
    server.send(
        AuthPacket(
            ReasonCode.CONTINUE_AUTHENTICATION,
            authentication_method="SCRAM",
            authentication_data=b"challenge",
        )
    )
    assert server.events() == [AuthChallenged("SCRAM", b"challenge")]
    client.auth(b"response")
    assert server.received() == [
        AuthPacket(
            ReasonCode.CONTINUE_AUTHENTICATION,
            authentication_method="SCRAM",
            authentication_data=b"response",
        )
    ]
    server.send(ConnAckPacket(authentication_method="SCRAM", authentication_data=b"final"))
    (accepted,) = server.events()
    assert isinstance(accepted, ConnectionAccepted)
    assert accepted.authentication_data == b"final"


def test_reauthentication() -> None:
    server = connected(connect={"client_id": "a", "authentication_method": "M"})
    client = server.client
    client.auth(b"again")
    assert server.received() == [
        AuthPacket(
            ReasonCode.RE_AUTHENTICATE, authentication_method="M", authentication_data=b"again"
        )
    ]
    server.send(AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method="M"))
    assert server.events() == [AuthChallenged("M")]
    client.auth(b"answer")
    assert server.received()[0].reason_code == ReasonCode.CONTINUE_AUTHENTICATION  # type: ignore[attr-defined]
    server.send(AuthPacket(ReasonCode.SUCCESS, authentication_method="M"))
    assert server.events() == [Reauthenticated("M")]


def test_auth_with_other_method_is_a_protocol_error() -> None:
    client = ClientConnection(V5)
    server = Server(client)
    client.connect(client_id="a", authentication_method="M")
    server.received()
    with pytest.raises(RemoteProtocolError):
        server.send(AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method="N"))


def test_auth_without_method_refused_locally() -> None:
    server = connected()
    with pytest.raises(LocalProtocolError):
        server.client.auth(b"x")
    with pytest.raises(LocalProtocolError):
        connected(V311).client.auth(b"x")


def test_outcome_does_not_depend_on_how_the_stream_is_cut() -> None:
    """A regression found by fuzz_client: an unexpected SUBACK followed by a
    malformed packet in the same read was reported as the malformed packet
    (0x81), but as the SUBACK's protocol error (0x82) when read byte by byte.
    Packets before a faulty one are now handled first, whatever the cut."""
    stream = b"\x90\x04\x00\x03\x00\x01" + b"\x30\x02\x00\x05"
    results = []
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        server = connected()
        with pytest.raises(RemoteProtocolError) as info:
            for piece in pieces:
                server.send_bytes(piece)
        results.append((info.value.reason_code, server.events(), server.wire()))
    assert results[0] == results[1]
    assert results[0][0] == ReasonCode.PROTOCOL_ERROR


def test_disconnect_before_garbage_in_one_read_ends_cleanly() -> None:
    server = connected()
    server.send_bytes(b"\xe0\x00" + b"\xff\xff")  # DISCONNECT, then junk
    assert server.events() == [Disconnected(ReasonCode.NORMAL_DISCONNECTION, by_server=True)]
    assert server.wire() == b""


def test_mqtt31_resumes_without_a_session_present_flag() -> None:
    server = connected(V31, connect={"client_id": "c", "clean_start": False})
    packet_id = server.client.publish("a", b"1", qos=1)
    server.received()
    server.client.receive_eof(1.0)
    server.events()
    server.client.connect(client_id="c", clean_start=False)
    server.reset_reader()
    server.received()
    server.send(ConnAckPacket())  # 3.1: no flag; the session is assumed kept
    assert server.received() == [
        PublishPacket("a", b"1", QoS.AT_LEAST_ONCE, duplicate=True, packet_id=packet_id)
    ]


def test_connect_from_the_server_is_a_protocol_error() -> None:
    """A regression found by CI's fuzz run: a CONNECT from the server that the
    reader refused (unsupported level: 0x84) gave a goodbye the client could
    not encode, since 0x84 is a CONNACK code, and no goodbye went out."""
    server = connected()
    bad_connect = b"\x10\x0a\x00\x03x/y\x03\x00\x00\x00\x00"
    with pytest.raises(RemoteProtocolError) as info:
        server.send_bytes(bad_connect)
    assert info.value.reason_code == ReasonCode.PROTOCOL_ERROR
    (goodbye,) = server.received()
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.PROTOCOL_ERROR
    assert server.events() == [Disconnected(ReasonCode.PROTOCOL_ERROR)]
