"""The messages the broker routes: :class:`Message`.

A :class:`Message` is one application message as the broker received it,
with its wire forms built lazily and shared by every subscriber that gets
the same bytes: one :class:`~mqttproto.codec.PreparedPublish` per distinct
(MQTT 5?, QoS, retain flag, subscription identifiers) tuple, never one per
subscriber. The codec splits each around the packet identifier, so each
subscriber's copy is written with its own identifier and no copy of the
payload or encoding.
"""

from __future__ import annotations

from typing import Any

from .._codec_common import PLAIN_PUBLISH, _build
from ..codec import PreparedPublish, prepare_publish
from ..enums import ProtocolVersion, QoS
from ..packets import PublishPacket
from ..store import StoredMessage

__all__ = ["NEVER_EXPIRES", "Message", "Pending", "prepared_as_received"]

#: A Session Expiry Interval of 0xFFFFFFFF means the session never expires.
NEVER_EXPIRES = 0xFFFFFFFF

_V5 = ProtocolVersion.MQTT_5_0
_V311 = ProtocolVersion.MQTT_3_1_1
_QOS = (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE)
#: A decoded QoS 1/2 PUBLISH that is otherwise plain holds its QoS and its
#: packet identifier besides the fields of a plain one.
_PLAIN_QOS = PLAIN_PUBLISH + 2
#: The MQTT 5 properties an application message carries end to end
#: (MQTT 5.0 section 3.3.2.3: the server forwards them unaltered).
_FORWARDED = (
    "payload_format_indicator",
    "response_topic",
    "correlation_data",
    "user_properties",
    "content_type",
)


def prepared_as_received(packet: PublishPacket, v5: bool) -> PreparedPublish:
    """A received QoS 0 PUBLISH as it is forwarded unchanged at QoS 0.

    Only the retain flag, QoS, expiry and subscription identifiers may
    differ in a forwarded copy [MQTT-3.3.2-6, MQTT-3.3.4-3]; with none of them
    in play the packet goes as it came (topic alias resolved away). A 3.x
    subscriber gets it without the MQTT 5 properties.
    """
    if v5:
        return prepare_publish(packet, _V5)
    if (
        packet.user_properties
        or packet.payload_format_indicator is not None
        or packet.response_topic is not None
        or packet.correlation_data is not None
        or packet.content_type is not None
    ):
        packet = PublishPacket(packet.topic, packet.payload)
    return prepare_publish(packet, _V311)


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
        self._props: dict[str, Any] | None = None
        self._forms: dict[tuple[bool, int, bool, tuple[int, ...]], PreparedPublish] = {}
        self._forms_remaining: int | None = expiry
        self._stored: dict[tuple[int, bool, tuple[int, ...], int | None], StoredMessage] | None = (
            None
        )

    @classmethod
    def from_stored(cls, stored: StoredMessage, now: float) -> Message:
        """A message read back from a store. Its expiry clock runs on from
        when it was stored: the interval forwarded later is reduced by the
        time it waited, time the broker was stopped included
        [MQTT-3.3.2-6] (the stored packet carries the interval as it was
        when stored, ``expires_at`` the deadline)."""
        message = cls(stored.packet, now, None)
        expires_at = stored.expires_at
        if expires_at is not None:
            message.expires_at = expires_at
            if message.expiry is not None:
                message.received_at = expires_at - message.expiry
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

    def form(
        self, v5: bool, qos: int, retain: bool, sub_ids: tuple[int, ...], now: float
    ) -> PreparedPublish:
        """The PUBLISH as subscribers of this kind get it, encoded once."""
        if self.expiry is not None:
            remaining = self.remaining(now)
            if remaining != self._forms_remaining:
                self._forms.clear()
                self._forms_remaining = remaining
        key = (v5, qos, retain, sub_ids)
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = self._prepare(v5, qos, retain, sub_ids)
        return form

    def _prepare(
        self, v5: bool, qos: int, retain: bool, sub_ids: tuple[int, ...]
    ) -> PreparedPublish:
        packet = self.packet
        if (
            not qos
            and not packet.qos
            and retain == packet.retain
            and not sub_ids
            and packet.topic_alias is None
            and not packet.subscription_identifiers
            and self.expiry is None
        ):
            # The common case: the PUBLISH goes out as it came in.
            return prepared_as_received(packet, v5)
        fields = packet.__dict__
        if len(fields) == _PLAIN_QOS and "packet_id" in fields and not sub_ids:
            # A decoded QoS 1/2 PUBLISH with no flag, alias or property (see
            # _codec_common.PLAIN_PUBLISH): packet_for's packet, made without
            # reading the properties it does not have; the store's record
            # of it has the same one (stored).
            records = self._stored
            if records is not None:
                record = records.get((qos, retain, (), self._forms_remaining))
                if record is not None:
                    return prepare_publish(record.packet, _V5 if v5 else _V311)
            return prepare_publish(_plain(fields, qos, retain), _V5 if v5 else _V311)
        return prepare_publish(
            self.packet_for(v5, qos, retain, sub_ids, None), _V5 if v5 else _V311
        )

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
            fields = self.packet.__dict__
            if len(fields) == _PLAIN_QOS and "packet_id" in fields and not sub_ids:
                # A plain QoS 1/2 PUBLISH (see _prepare): packet_for's
                # packet, made without reading the properties it lacks
                # (a form's, if one was made already).
                forms = self._forms
                if forms:
                    form = forms.get((False, qos, retain, ())) or forms.get(
                        (True, qos, retain, ())
                    )
                    if form is not None:
                        record = stored[key] = StoredMessage(form.packet, self.expires_at)
                        return record
                packet = _plain(fields, qos, retain)
            else:
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


def _plain(fields: dict[str, Any], qos: int, retain: bool) -> PublishPacket:
    """packet_for's packet for a plain QoS 1/2 PUBLISH (its ``fields``), made
    without reading the properties it does not have."""
    packet: PublishPacket = _build(
        PublishPacket,
        {
            "topic": fields["topic"],
            "payload": fields["payload"],
            "qos": _QOS[qos],
            "retain": retain,
            "packet_id": None,
        },
    )
    return packet


#: A message waiting for a session: (message, QoS, retain flag, subscription ids).
Pending = tuple[Message, int, bool, tuple[int, ...]]
