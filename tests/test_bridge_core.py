"""The bridge's forwarding without I/O (:class:`mqttproto._bridge_core.BridgeCore`):
its two client connections fed scripted server bytes, and what each then
sends, byte for byte: a QoS 1/2 message is acknowledged on the side it came
from only once the other side acknowledged it."""

from __future__ import annotations

from mqttproto._bridge_core import BridgeCore
from mqttproto.bridge import BridgeConfig
from mqttproto.broker import Broker
from mqttproto.codec import PacketReader, encode_packet
from mqttproto.enums import ProtocolVersion, QoS, ReasonCode
from mqttproto.packets import (
    ConnAckPacket,
    ConnectPacket,
    Packet,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    SubscribePacket,
)

V5 = ProtocolVersion.MQTT_5_0


class Core(BridgeCore):
    """A core with a fake clock; the links' ends are recorded."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__(config, Broker())
        self.ended: list[str] = []
        self.ready = 0

    def _now(self) -> float:
        return 100.0

    def _end(self, reason: str) -> None:
        self.ended.append(reason)

    def _local_ready(self) -> None:
        self.ready += 1


def sent(reader: PacketReader, data: bytes) -> list[Packet]:
    return reader.feed(data)


def connected(topics: list[str], **options: object) -> tuple[Core, PacketReader, PacketReader]:
    """Both links accepted, subscriptions acknowledged; readers of what each side sends."""
    core = Core(
        BridgeConfig("b", "h:1", topics, protocol_version=5, notifications=False, **options)  # type: ignore[arg-type]
    )
    remote_in, local_in = PacketReader(version=None), PacketReader(version=None)
    core.connect_remote()
    core.connect_local()
    (remote_connect,) = sent(remote_in, core._remote.data_to_send(100.0))
    (local_connect,) = sent(local_in, core._local.data_to_send(100.0))
    assert isinstance(remote_connect, ConnectPacket) and isinstance(local_connect, ConnectPacket)
    assert (local_connect.clean_start, local_connect.session_expiry_interval) == (False, 2**32 - 1)
    core._local.receive_data(encode_packet(ConnAckPacket(), version=V5), 100.0)
    core.local_events()
    assert core.ready == 1
    core._remote.receive_data(encode_packet(ConnAckPacket(), version=V5), 100.0)
    core.remote_events()
    for conn, reader in ((core._local, local_in), (core._remote, remote_in)):
        for packet in sent(reader, conn.data_to_send(100.0)):
            assert isinstance(packet, SubscribePacket)
            assert all(s.no_local for s in packet.subscriptions)  # no loops [MQTT-3.8.3-3]
            assert all(s.retain_as_published for s in packet.subscriptions)  # [MQTT-3.3.1-12]
            suback = SubAckPacket(
                packet.packet_id, tuple(ReasonCode(s.max_qos) for s in packet.subscriptions)
            )
            conn.receive_data(encode_packet(suback, version=V5), 100.0)
    core.local_events()
    core.remote_events()
    assert core.state == "connected"
    return core, remote_in, local_in


def test_a_message_going_out_is_acknowledged_locally_after_the_remote_puback() -> None:
    core, remote_in, _local_in = connected(["a/# out 1 l/ r/"])
    publish = PublishPacket("l/a/x", b"m", QoS.AT_LEAST_ONCE, packet_id=9)
    core._local.receive_data(encode_packet(publish, version=V5), 100.0)
    core.local_events()
    assert core._local.data_to_send(100.0) == b""  # no PUBACK yet
    (forwarded,) = sent(remote_in, core._remote.data_to_send(100.0))
    assert isinstance(forwarded, PublishPacket)
    assert (forwarded.topic, forwarded.payload, forwarded.qos) == ("r/a/x", b"m", 1)
    assert core.status().in_flight == 1
    assert forwarded.packet_id is not None
    ack = PubAckPacket(forwarded.packet_id)
    core._remote.receive_data(encode_packet(ack, version=V5), 100.0)
    core.remote_events()
    assert core._local.data_to_send(100.0) == encode_packet(PubAckPacket(9), version=V5)
    assert (core.status().in_flight, core.messages_out) == (0, 1)


def test_a_refusal_by_the_remote_broker_is_passed_back() -> None:
    core, remote_in, _ = connected(["a/# out 2"])
    publish = PublishPacket("a/x", b"m", QoS.EXACTLY_ONCE, packet_id=3)
    core._local.receive_data(encode_packet(publish, version=V5), 100.0)
    core.local_events()
    (forwarded,) = sent(remote_in, core._remote.data_to_send(100.0))
    assert isinstance(forwarded, PublishPacket) and forwarded.packet_id is not None
    refusal = PubRecPacket(forwarded.packet_id, ReasonCode.NOT_AUTHORIZED)
    core._remote.receive_data(encode_packet(refusal, version=V5), 100.0)
    core.remote_events()
    expected = PubRecPacket(3, ReasonCode.NOT_AUTHORIZED)
    assert core._local.data_to_send(100.0) == encode_packet(expected, version=V5)
    assert core.messages_dropped == 1


def test_a_message_coming_in_is_acknowledged_remotely_after_the_local_broker() -> None:
    core, _remote_in, local_in = connected(["c/# in 2"])
    publish = PublishPacket("c/x", b"m", QoS.EXACTLY_ONCE, True, packet_id=5)
    core._remote.receive_data(encode_packet(publish, version=V5), 100.0)
    core.remote_events()
    assert core._remote.data_to_send(100.0) == b""  # no PUBREC yet
    (local,) = sent(local_in, core._local.data_to_send(100.0))
    assert isinstance(local, PublishPacket)
    assert (local.topic, local.qos, local.retain) == ("c/x", 2, True)  # the retain flag kept
    assert local.packet_id is not None
    core._local.receive_data(encode_packet(PubRecPacket(local.packet_id), version=V5), 100.0)
    core.local_events()
    assert core._remote.data_to_send(100.0) == b""  # the local flow is not complete
    (release,) = sent(local_in, core._local.data_to_send(100.0))
    assert isinstance(release, PubRelPacket)
    core._local.receive_data(encode_packet(PubCompPacket(local.packet_id), version=V5), 100.0)
    core.local_events()
    assert core._remote.data_to_send(100.0) == encode_packet(PubRecPacket(5), version=V5)


def test_qos_is_the_lower_of_the_line_and_the_message() -> None:
    core, _remote_in, local_in = connected(["c/# in 0", "a/# out 1"])
    core._remote.receive_data(
        encode_packet(PublishPacket("c/x", b"m", QoS.EXACTLY_ONCE, packet_id=5), version=V5), 100.0
    )
    core.remote_events()
    (local,) = sent(local_in, core._local.data_to_send(100.0))
    assert isinstance(local, PublishPacket) and local.qos == 0
    # Delivered at QoS 0 here: the remote PUBREC goes at once.
    assert core._remote.data_to_send(100.0) == encode_packet(PubRecPacket(5), version=V5)


def test_a_local_link_closed_by_the_broker_ends_the_attempt() -> None:
    core, _, _ = connected(["a/# out 1"])
    core._local.receive_eof(100.0)
    core.local_events()
    assert core.ended == ["the local broker closed the bridge's connection (UNSPECIFIED_ERROR)"]
