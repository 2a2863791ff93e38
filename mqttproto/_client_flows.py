"""Application-message flows of the client: QoS 0/1/2 in both directions.

A mixin of :class:`~mqttproto.client.ClientConnection`: sending PUBLISH (with
outgoing topic aliases and the in-flight window), the acks it gets back, and
received PUBLISH with their acks, deduplication and incoming topic aliases.
CONNECT and the timers are in ``client.py``, the other commands in
``_client_commands.py``, the other packets from the server in
``_client_input.py``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from ._qos import InboundFlow, OutboundFlow, PacketIdAllocator
from .codec import encode_ack
from .config import ClientConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError
from .events import (
    Event,
    PublishAcknowledged,
    PublishDiscarded,
    message_received,
    publish_acknowledged,
)
from .packets import Packet, PubAckPacket, PubCompPacket, PublishPacket, PubRecPacket, PubRelPacket

__all__ = ["MessageFlows", "ServerLimits"]

_V5 = ProtocolVersion.MQTT_5_0
_P = PacketType
#: Every acknowledgement without a reason code or properties is the same in
#: each version: the codec's 3.1.1 form.
_V311 = ProtocolVersion.MQTT_3_1_1


@attrs.frozen
class ServerLimits:
    """What the server announced in CONNACK, with protocol defaults filled in."""

    receive_maximum: int = 65535
    maximum_qos: QoS = QoS.EXACTLY_ONCE
    retain_available: bool = True
    maximum_packet_size: int | None = None
    topic_alias_maximum: int = 0
    wildcard_subscription_available: bool = True
    subscription_identifiers_available: bool = True
    shared_subscription_available: bool = True


class MessageFlows:
    """The QoS flows half of :class:`~mqttproto.client.ClientConnection`."""

    config: ClientConfig
    _version: ProtocolVersion
    _out: list[bytes]
    _events: deque[Event]
    _packet_ids: PacketIdAllocator
    _outbound: OutboundFlow
    _inbound: InboundFlow
    _limits: ServerLimits
    _aliases_out: OrderedDict[str, int]
    _inbound_alias_max: int
    _auto_ack: bool
    _acks_fit: bool

    if TYPE_CHECKING:
        # Provided by the engine (mqttproto._connection.Connection).
        def _encode(self, packet: Packet) -> bytes: ...

        def _resolve_alias(
            self, packet: PublishPacket, maximum: int, *, keep: bool
        ) -> PublishPacket: ...

    # -- sending helpers ------------------------------------------------------

    def _aliased(self, packet: PublishPacket, data: bytes) -> bytes:
        """The wire form of ``packet`` using a topic alias when that helps."""
        maximum = self._limits.topic_alias_maximum
        if not maximum or not self.config.auto_topic_alias:
            return data
        aliases = self._aliases_out
        topic = packet.topic
        alias = aliases.get(topic)
        if alias is not None:
            aliases.move_to_end(topic)
            # The topic is sent empty once its alias is known [MQTT-3.3.2-12].
            return self._encode(attrs.evolve(packet, topic="", topic_alias=alias))
        evicted = None
        if len(aliases) >= maximum:
            evicted, alias = next(iter(aliases.items()))
        else:
            alias = len(aliases) + 1
        try:
            aliased = self._encode(attrs.evolve(packet, topic_alias=alias))
        except LocalProtocolError:
            # Three bytes too many for the server's limit: send it plain.
            return data
        if evicted is not None:
            del aliases[evicted]
        aliases[topic] = alias
        return aliased

    def _send_released(self, packets: Iterable[PublishPacket]) -> None:
        """Send queued messages that just got room in the window."""
        for packet in packets:
            try:
                data = self._encode(packet)
            except LocalProtocolError as exc:
                assert packet.packet_id is not None
                del self._outbound.inflight[packet.packet_id]
                self._packet_ids.release(packet.packet_id)
                self._events.append(PublishDiscarded(packet.packet_id, str(exc)))
                continue
            self._out.append(self._aliased(packet, data))

    def _ack(self, kind: PacketType, packet_id: int) -> None:
        """Queue a 4-byte PUBACK/PUBREC/PUBREL/PUBCOMP with success and no properties."""
        if self._acks_fit:
            self._out.append(encode_ack(kind, packet_id, version=_V311))

    def _send_reply(self, packet: Packet) -> None:
        """Queue a reply the protocol owes; one the server's Maximum Packet
        Size cannot take is not sent, as if sent [MQTT-3.1.2-25] applied
        in this direction: there is no way to deliver it."""
        with contextlib.suppress(LocalProtocolError):
            self._out.append(self._encode(packet))

    def _finish_outbound(self, packet_id: int, event: PublishAcknowledged) -> None:
        self._packet_ids.release(packet_id)
        self._events.append(event)
        if self._outbound.queue:
            self._send_released(self._outbound.release_queued())

    # -- application message flows ------------------------------------------

    def _drop_queued_over_limits(self) -> None:
        """Queued (never sent) messages the server's new limits forbid."""
        limits = self._limits
        queue = self._outbound.queue
        if not queue or (limits.maximum_qos == QoS.EXACTLY_ONCE and limits.retain_available):
            return
        assert isinstance(queue, deque)  # not the empty () of an idle flow
        kept = []
        for packet in queue:
            assert packet.packet_id is not None
            if packet.qos > limits.maximum_qos:
                why = f"QoS {int(packet.qos)} exceeds the server's Maximum QoS"
            elif packet.retain and not limits.retain_available:
                why = "the server does not support retained messages"
            else:
                kept.append(packet)
                continue
            self._packet_ids.release(packet.packet_id)
            self._events.append(PublishDiscarded(packet.packet_id, why))
        queue.clear()
        queue.extend(kept)

    def _on_publish(self, packet: PublishPacket, now: float) -> None:
        if packet.topic_alias is not None:
            packet = self._resolve_alias(packet, self._inbound_alias_max, keep=True)
        qos = packet.qos
        if not qos:
            self._events.append(message_received(packet))
            return
        packet_id = packet.packet_id
        assert packet_id is not None
        inbound = self._inbound
        if self._auto_ack:
            if qos == QoS.AT_LEAST_ONCE:
                self._events.append(message_received(packet))
                if self._acks_fit:
                    self._out.append(encode_ack(_P.PUBACK, packet_id, version=_V311))
                return
            if packet_id in inbound.awaiting_release:
                # A retransmission: acknowledge again, deliver once [MQTT-4.3.3-10].
                self._ack(_P.PUBREC, packet_id)
                return
            inbound.check_quota(self._version == _V5)
            inbound.received_qos2(packet_id)
            self._events.append(message_received(packet))
            self._ack(_P.PUBREC, packet_id)
            return
        if packet_id in inbound.awaiting_release:
            self._ack(_P.PUBREC, packet_id)
            return
        if packet_id in inbound.unacked:
            # Already delivered and waiting for the application's ack.
            return
        inbound.check_quota(self._version == _V5)
        inbound.hold(packet_id, qos)
        self._events.append(message_received(packet))

    def _on_puback(self, packet: PubAckPacket, now: float) -> None:
        if self._outbound.on_puback(packet.packet_id) is None:
            # A late duplicate of an ack already processed: nothing to do.
            return
        self._finish_outbound(
            packet.packet_id,
            publish_acknowledged(
                packet.packet_id, packet.reason_code, packet.reason_string, packet.user_properties
            ),
        )

    def _on_pubrec(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubRecPacket)
        packet_id = packet.packet_id
        message = self._outbound.on_pubrec(packet_id, packet.reason_code)
        if message is None:
            # Not ours: say so in MQTT 5 so the server ends its flow.
            self._send_reply(PubRelPacket(packet_id, self._not_found_code()))
            return
        if packet.reason_code >= 0x80:
            self._finish_outbound(
                packet_id,
                PublishAcknowledged(
                    packet_id, packet.reason_code, packet.reason_string, packet.user_properties
                ),
            )
            return
        self._ack(_P.PUBREL, packet_id)

    def _on_pubcomp(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubCompPacket)
        if self._outbound.on_pubcomp(packet.packet_id) is None:
            return
        self._finish_outbound(
            packet.packet_id,
            publish_acknowledged(
                packet.packet_id, packet.reason_code, packet.reason_string, packet.user_properties
            ),
        )

    def _on_pubrel(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubRelPacket)
        if self._inbound.release(packet.packet_id):
            self._ack(_P.PUBCOMP, packet.packet_id)
        else:
            # [MQTT-4.3.3-11]: answer PUBREL even when the id is unknown.
            self._send_reply(PubCompPacket(packet.packet_id, self._not_found_code()))

    def _not_found_code(self) -> ReasonCode:
        return (
            ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self._version == _V5 else ReasonCode.SUCCESS
        )
