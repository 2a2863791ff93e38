"""Broker-side sessions and the messages routed to them.

A :class:`Message` is one application message as the broker received it,
with its wire forms built lazily and shared by every subscriber that gets
the same bytes: one encoding per distinct (MQTT 5?, QoS, retain flag,
subscription identifiers) tuple, never one per subscriber. For QoS 1/2 the
form is split around the packet identifier (which sits right after the topic
name), so each subscriber's copy is ``head + packet id + tail`` written
straight into the connection's output list, without copying the payload.

A :class:`Session` is the state the protocol says outlives a network
connection (MQTT 5.0 section 4.1): subscriptions, QoS 1/2 messages in flight
to the client and their packet identifiers, messages queued for it, QoS 2
identifiers received from it and not yet released, and a pending will.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from ._codec_common import _build
from ._qos import InboundFlow, OutboundFlow, PacketIdAllocator
from .codec import encode_packet
from .enums import ProtocolVersion, QoS
from .packets import PublishPacket, Will
from .store import StoredMessage, StoredSession, StoredSubscription

if TYPE_CHECKING:
    from ._router import Sub
    from .broker import BrokerConnection

__all__ = ["NEVER_EXPIRES", "Message", "Pending", "Session", "varint"]

#: A Session Expiry Interval of 0xFFFFFFFF means the session never expires.
NEVER_EXPIRES = 0xFFFFFFFF

_u16 = struct.Struct(">H").pack
_V5 = ProtocolVersion.MQTT_5_0
_V311 = ProtocolVersion.MQTT_3_1_1
_QOS = (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE)
#: The MQTT 5 properties an application message carries end to end
#: (MQTT 5.0 section 3.3.2.3: the server forwards them unaltered).
_FORWARDED = (
    "payload_format_indicator",
    "response_topic",
    "correlation_data",
    "user_properties",
    "content_type",
)


def varint(value: int) -> bytes:
    """A Variable Byte Integer (MQTT 5.0 section 1.5.5)."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def message_wire(packet: PublishPacket, v5: bool) -> bytes:
    """A received QoS 0 PUBLISH as it is forwarded unchanged at QoS 0.

    Only the retain flag, QoS, expiry and subscription identifiers may
    differ in a forwarded copy [MQTT-3.3.2-6, MQTT-3.3.4-3]; with none of them
    in play the packet encodes as it came (topic alias resolved away). A
    3.x subscriber gets it without the MQTT 5 properties.
    """
    if v5:
        return encode_packet(packet, version=_V5)
    if (
        packet.user_properties
        or packet.payload_format_indicator is not None
        or packet.response_topic is not None
        or packet.correlation_data is not None
        or packet.content_type is not None
    ):
        packet = PublishPacket(packet.topic, packet.payload)
    return encode_packet(packet, version=_V311)


class Message:
    """One application message on its way through the broker.

    ``expires_at`` is when its Message Expiry Interval runs out (None:
    never); a copy forwarded later carries the interval reduced by the whole
    seconds it waited [MQTT-3.3.2-6].
    """

    __slots__ = (
        "_forms",
        "_forms_remaining",
        "_props",
        "_stored",
        "_topic_bytes",
        "expires_at",
        "expiry",
        "holds",
        "origin",
        "packet",
        "received_at",
        "size",
    )

    def __init__(self, packet: PublishPacket, now: float, origin: str | None) -> None:
        self.packet = packet
        self.origin = origin
        self.received_at = now
        #: What it counts against the memory budgets: topic and payload.
        self.size = len(packet.topic) + len(packet.payload)
        #: How many session queues and in-flight windows hold it (the broker's
        #: budget counts a message once, however many sessions share it).
        self.holds = 0
        expiry = packet.message_expiry_interval
        self.expiry = expiry
        self.expires_at = None if expiry is None else now + expiry
        self._topic_bytes: bytes | None = None
        self._props: dict[str, Any] | None = None
        self._forms: dict[tuple[bool, int, bool, tuple[int, ...]], tuple[bytes, bytes]] = {}
        self._forms_remaining: int | None = expiry
        self._stored: dict[tuple[int, bool, tuple[int, ...], int | None], StoredMessage] | None = (
            None
        )

    @classmethod
    def from_stored(cls, stored: StoredMessage, now: float) -> Message:
        message = cls(stored.packet, now, None)
        if stored.expires_at is not None:
            message.expires_at = stored.expires_at
        return message

    def expired(self, now: float) -> bool:
        expires_at = self.expires_at
        return expires_at is not None and now >= expires_at

    def remaining(self, now: float) -> int | None:
        """The Message Expiry Interval to forward at ``now``."""
        if self.expiry is None:
            return None
        return max(1, self.expiry - int(now - self.received_at))

    def props(self) -> dict[str, Any]:
        """The forwarded MQTT 5 properties that are present, by field name."""
        props = self._props
        if props is None:
            packet = self.packet
            props = self._props = {}
            if (
                packet.user_properties
                or packet.payload_format_indicator is not None
                or packet.response_topic is not None
                or packet.correlation_data is not None
                or packet.content_type is not None
            ):
                for name in _FORWARDED:
                    value = getattr(packet, name)
                    if value is not None and value != ():
                        props[name] = value
        return props

    def wire(
        self, v5: bool, qos: int, retain: bool, sub_ids: tuple[int, ...], now: float
    ) -> tuple[bytes, bytes]:
        """The encoded PUBLISH: ``(head, tail)``; QoS 0 has it all in ``head``.

        For QoS 1/2 the packet identifier goes between ``head`` and ``tail``.
        """
        if self.expiry is not None:
            remaining = self.remaining(now)
            if remaining != self._forms_remaining:
                self._forms.clear()
                self._forms_remaining = remaining
        key = (v5, qos, retain, sub_ids)
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = self._encode(v5, qos, retain, sub_ids)
        return form

    def _encode(
        self, v5: bool, qos: int, retain: bool, sub_ids: tuple[int, ...]
    ) -> tuple[bytes, bytes]:
        packet = self.packet
        if (
            not qos
            and not packet.qos
            and retain == packet.retain
            and not sub_ids
            and packet.topic_alias is None
            and not packet.subscription_identifiers
            and self.expiry is None
            and (v5 or not self.props())
        ):
            # The common case: the PUBLISH goes out as it came in, so the
            # codec (compiled when built) encodes it in one call.
            return encode_packet(packet, version=_V5 if v5 else _V311), b""
        topic_bytes = self._topic_bytes
        if topic_bytes is None:
            encoded = self.packet.topic.encode()
            topic_bytes = self._topic_bytes = _u16(len(encoded)) + encoded
        props = b""
        if v5:
            fields = self.props()
            if fields or self._forms_remaining is not None:
                props = self._v5_properties(fields)
            for sub_id in sub_ids:
                props += b"\x0b" + varint(sub_id)
            props = varint(len(props)) + props
        payload = self.packet.payload
        pid_size = 2 if qos else 0
        remaining_length = len(topic_bytes) + pid_size + len(props) + len(payload)
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        head = bytes((first,)) + varint(remaining_length) + topic_bytes
        if qos:
            return head, props + payload
        return head + props + payload, b""

    def _v5_properties(self, fields: dict[str, Any]) -> bytes:
        """The property block of the forwarded properties, by the codec itself."""
        packet = PublishPacket("t", message_expiry_interval=self._forms_remaining, **fields)
        data = encode_packet(packet, version=ProtocolVersion.MQTT_5_0)
        # Fixed header, remaining length, topic "t" (3 bytes), then properties.
        pos = 1
        while data[pos] & 0x80:
            pos += 1
        pos += 1 + 3
        length = 0
        shift = 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return data[pos : pos + length]

    def stored(self, qos: int, retain: bool, sub_ids: tuple[int, ...]) -> StoredMessage:
        """The store's record of this message queued for a session with this
        delivery: one shared by every session it is queued for alike (a
        fan-out to many offline sessions keeps one packet, not one each)."""
        stored = self._stored
        if stored is None:
            stored = self._stored = {}
        key = (qos, retain, sub_ids, self._forms_remaining)
        record = stored.get(key)
        if record is None:
            packet = self.packet_for(True, qos, retain, sub_ids, None)
            record = stored[key] = StoredMessage(packet, self.expires_at)
        return record

    def packet_for(
        self, v5: bool, qos: int, retain: bool, sub_ids: tuple[int, ...], packet_id: int | None
    ) -> PublishPacket:
        """The PUBLISH as one client gets it (kept for a resend with DUP)."""
        fields: dict[str, Any] = {
            "topic": self.packet.topic,
            "payload": self.packet.payload,
            "qos": _QOS[qos],
            "retain": retain,
            "packet_id": packet_id,
        }
        if v5:
            fields.update(self.props())
            if self.expiry is not None:
                fields["message_expiry_interval"] = self._forms_remaining
            if sub_ids:
                fields["subscription_identifiers"] = sub_ids
        packet: PublishPacket = _build(PublishPacket, fields)
        return packet


#: A message waiting for a session: (message, QoS, retain flag, subscription ids).
Pending = tuple[Message, int, bool, tuple[int, ...]]


class Session:
    """The state of one client identifier that outlives its connections."""

    __slots__ = (
        "client_id",
        "connection",
        "expires_at",
        "expiry_interval",
        "inbound",
        "inflight_messages",
        "outbound",
        "packet_ids",
        "pending",
        "queued_bytes",
        "subscriptions",
        "username",
        "will",
        "will_due",
    )

    def __init__(self, client_id: str, *, receive_maximum: int, max_queued: int) -> None:
        self.client_id = client_id
        self.connection: BrokerConnection | None = None
        #: Seconds the session outlives its connection (0: not at all).
        self.expiry_interval = 0
        #: When an unconnected session expires (None: connected, or never).
        self.expires_at: float | None = None
        #: Full topic filter (``$share/...`` included) -> subscription.
        self.subscriptions: dict[str, Sub] = {}
        self.outbound = OutboundFlow(max_queued=max_queued)
        self.packet_ids = PacketIdAllocator()
        self.inbound = InboundFlow(receive_maximum=receive_maximum)
        self.pending: deque[Pending] = deque()
        #: Sizes of the messages in ``pending`` together (``max_queued_bytes``).
        self.queued_bytes = 0
        #: packet id -> the message of each QoS 1/2 flow in ``outbound``, so
        #: that the memory budget is given back when the flow ends.
        self.inflight_messages: dict[int, Message] = {}
        #: The identity that made the session and owns it (None: anonymous).
        self.username: str | None = None
        #: A will waiting for its delay after the connection ended.
        self.will: Will | None = None
        self.will_due: float | None = None

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    def snapshot(self) -> StoredSession:
        """This session as a store record."""
        subscriptions = tuple(
            StoredSubscription(
                full_filter,
                _QOS[sub.qos],
                sub.no_local,
                sub.retain_as_published,
                _retain_handling(sub.retain_handling),
                sub.sub_id,
            )
            for full_filter, sub in self.subscriptions.items()
        )
        inflight = tuple(
            StoredMessage(m.packet, packet_id=m.packet_id, released=m.stage.value == "released")
            for m in self.outbound.inflight.values()
        )
        queued = tuple(
            message.stored(qos, retain, sub_ids) for message, qos, retain, sub_ids in self.pending
        )
        return StoredSession(
            self.client_id,
            self.expiry_interval,
            self.expires_at,
            subscriptions,
            inflight,
            queued,
            tuple(sorted(self.inbound.awaiting_release)),
            self.will,
            self.will_due,
            self.username,
        )


def _retain_handling(value: int) -> Any:
    from .enums import RetainHandling

    return RetainHandling(value)
