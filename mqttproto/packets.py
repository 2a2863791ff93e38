"""One frozen attrs class per MQTT control packet.

Packets are wire data only: what one control packet carries, in any of the
three protocol versions. They hold no acknowledgement or session state; a
resend is ``attrs.evolve(packet, duplicate=True)``.

MQTT 5 properties are typed fields named as the specification names them, in
snake_case. ``None`` means the property is absent (so that decoding and then
encoding gives back the same bytes); repeatable properties are tuples, empty
when absent. User properties are an ordered tuple of ``(key, value)`` pairs
because MQTT keeps their order and allows a key to repeat.

Constructing a packet checks nothing; :func:`mqttproto.encode_packet` checks
everything (for the version it encodes for) and raises
:class:`~mqttproto.LocalProtocolError` for a packet that may not be sent.
The decoder builds packets only from bytes it has fully validated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final

import attrs

from .enums import PacketType, ProtocolVersion, QoS, ReasonCode, RetainHandling

__all__ = [
    "PACKET_CLASSES",
    "AuthPacket",
    "ConnAckPacket",
    "ConnectPacket",
    "DisconnectPacket",
    "Packet",
    "PingReqPacket",
    "PingRespPacket",
    "PubAckPacket",
    "PubCompPacket",
    "PubRecPacket",
    "PubRelPacket",
    "PublishPacket",
    "SubAckPacket",
    "SubscribePacket",
    "Subscription",
    "UnsubAckPacket",
    "UnsubscribePacket",
    "Will",
]

UserProperties = tuple[tuple[str, str], ...]


def _user_properties(value: Iterable[tuple[str, str]]) -> UserProperties:
    if type(value) is tuple:
        return value
    return tuple((key, val) for key, val in value)


# The default of every tuple field: the empty tuple, which CPython keeps once.
_NO_ITEMS: Final[tuple[()]] = ()


def _tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return value if type(value) is tuple else tuple(value)


# Typed converters, so that type checkers see what each field accepts.
def _ints(value: Iterable[int]) -> tuple[int, ...]:
    return _tuple(value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return _tuple(value)


def _reason_codes(value: Iterable[ReasonCode]) -> tuple[ReasonCode, ...]:
    return _tuple(value)


def _subscriptions(value: Iterable[Subscription]) -> tuple[Subscription, ...]:
    return _tuple(value)


# Packets are dict-backed, not slotted, and every field default also lives on
# the class (installed by _install_class_defaults at the end of this module).
# The decoder can then build an instance by putting only the values that
# differ from the defaults into its __dict__ (see _codec_common._build): a
# PUBLISH without properties costs two dict entries instead of fourteen slot
# writes. Instances made by __init__ or attrs.evolve hold every field; both
# kinds compare, hash, repr and pickle alike.


@attrs.frozen(slots=False)
class Subscription:
    """One topic filter of a SUBSCRIBE with its subscription options.

    ``no_local``, ``retain_as_published`` and ``retain_handling`` exist in
    MQTT 5 only; on 3.1/3.1.1 they must keep their defaults.
    """

    topic_filter: str
    max_qos: QoS = QoS.AT_MOST_ONCE
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE


@attrs.frozen(slots=False)
class Will:
    """The will message of a CONNECT, with its MQTT 5 will properties."""

    topic: str
    payload: bytes = b""
    qos: QoS = QoS.AT_MOST_ONCE
    retain: bool = False
    will_delay_interval: int | None = attrs.field(default=None, kw_only=True)
    payload_format_indicator: int | None = attrs.field(default=None, kw_only=True)
    message_expiry_interval: int | None = attrs.field(default=None, kw_only=True)
    content_type: str | None = attrs.field(default=None, kw_only=True)
    response_topic: str | None = attrs.field(default=None, kw_only=True)
    correlation_data: bytes | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )


@attrs.frozen(slots=False)
class ConnectPacket:
    """CONNECT: the first packet a client sends.

    ``protocol_version`` is the level the packet carries; it must match the
    version it is encoded for. ``clean_start`` is "clean session" in 3.1/3.1.1.
    ``bridge`` (3.1/3.1.1 only) sets the top bit of the protocol level, as
    mosquitto's bridges do (``try_private``): a mosquitto broker then treats
    the client as a bridge (it does not send the client's own messages back,
    and keeps retain flags). It is not MQTT: the decoder refuses such a
    level, as an unknown protocol version, so a server built on this library
    answers 0x01 and a mosquitto bridge retries without it.
    """

    packet_type: ClassVar[PacketType] = PacketType.CONNECT

    client_id: str = ""
    protocol_version: ProtocolVersion = ProtocolVersion.MQTT_5_0
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    session_expiry_interval: int | None = attrs.field(default=None, kw_only=True)
    receive_maximum: int | None = attrs.field(default=None, kw_only=True)
    maximum_packet_size: int | None = attrs.field(default=None, kw_only=True)
    topic_alias_maximum: int | None = attrs.field(default=None, kw_only=True)
    request_response_information: bool | None = attrs.field(default=None, kw_only=True)
    request_problem_information: bool | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )
    authentication_method: str | None = attrs.field(default=None, kw_only=True)
    authentication_data: bytes | None = attrs.field(default=None, kw_only=True)
    bridge: bool = attrs.field(default=False, kw_only=True)


@attrs.frozen(slots=False)
class ConnAckPacket:
    """CONNACK: the server's answer to CONNECT.

    ``reason_code`` is an MQTT 5 reason code in every version; on 3.1/3.1.1
    it travels as the CONNACK return code (see
    :meth:`ReasonCode.to_connack_return_code`).
    """

    packet_type: ClassVar[PacketType] = PacketType.CONNACK

    session_present: bool = False
    reason_code: ReasonCode = ReasonCode.SUCCESS
    session_expiry_interval: int | None = attrs.field(default=None, kw_only=True)
    receive_maximum: int | None = attrs.field(default=None, kw_only=True)
    maximum_qos: QoS | None = attrs.field(default=None, kw_only=True)
    retain_available: bool | None = attrs.field(default=None, kw_only=True)
    maximum_packet_size: int | None = attrs.field(default=None, kw_only=True)
    assigned_client_identifier: str | None = attrs.field(default=None, kw_only=True)
    topic_alias_maximum: int | None = attrs.field(default=None, kw_only=True)
    reason_string: str | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )
    wildcard_subscription_available: bool | None = attrs.field(default=None, kw_only=True)
    subscription_identifiers_available: bool | None = attrs.field(default=None, kw_only=True)
    shared_subscription_available: bool | None = attrs.field(default=None, kw_only=True)
    server_keep_alive: int | None = attrs.field(default=None, kw_only=True)
    response_information: str | None = attrs.field(default=None, kw_only=True)
    server_reference: str | None = attrs.field(default=None, kw_only=True)
    authentication_method: str | None = attrs.field(default=None, kw_only=True)
    authentication_data: bytes | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(slots=False, init=False)
class PublishPacket:
    """PUBLISH: an application message, in either direction.

    ``packet_id`` is required for QoS 1 and 2 and must be None for QoS 0.
    ``subscription_identifiers`` appear only server to client.
    """

    packet_type: ClassVar[PacketType] = PacketType.PUBLISH

    topic: str
    payload: bytes = b""
    qos: QoS = QoS.AT_MOST_ONCE
    retain: bool = False
    duplicate: bool = False
    packet_id: int | None = None
    payload_format_indicator: int | None = attrs.field(default=None, kw_only=True)
    message_expiry_interval: int | None = attrs.field(default=None, kw_only=True)
    topic_alias: int | None = attrs.field(default=None, kw_only=True)
    response_topic: str | None = attrs.field(default=None, kw_only=True)
    correlation_data: bytes | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(default=(), kw_only=True)
    subscription_identifiers: tuple[int, ...] = attrs.field(default=(), kw_only=True)
    content_type: str | None = attrs.field(default=None, kw_only=True)

    # Written by hand rather than generated by attrs: this is the packet an
    # application builds per message, and attrs' __init__ stores all fourteen
    # fields. This one stores the topic, the payload and the QoS, and any
    # other field only when it is not its default (the class holds the
    # defaults, see _install_class_defaults): a QoS 1 PUBLISH with two
    # properties is six stores. The QoS is always stored so that a packet
    # built here is never taken for a plain decoded one (PLAIN_PUBLISH in
    # _codec_common). The compiled codec gives the class a C constructor
    # (_codec_c.use_compiled_constructors) that stores exactly the same.
    def __init__(
        self,
        topic: str,
        payload: bytes = b"",
        qos: QoS = QoS.AT_MOST_ONCE,
        retain: bool = False,
        duplicate: bool = False,
        packet_id: int | None = None,
        *,
        payload_format_indicator: int | None = None,
        message_expiry_interval: int | None = None,
        topic_alias: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
        subscription_identifiers: Iterable[int] = (),
        content_type: str | None = None,
    ) -> None:
        fields = self.__dict__
        fields["topic"] = topic
        fields["payload"] = payload
        fields["qos"] = qos
        if retain is not False:
            fields["retain"] = retain
        if duplicate is not False:
            fields["duplicate"] = duplicate
        if packet_id is not None:
            fields["packet_id"] = packet_id
        if payload_format_indicator is not None:
            fields["payload_format_indicator"] = payload_format_indicator
        if message_expiry_interval is not None:
            fields["message_expiry_interval"] = message_expiry_interval
        if topic_alias is not None:
            fields["topic_alias"] = topic_alias
        if response_topic is not None:
            fields["response_topic"] = response_topic
        if correlation_data is not None:
            fields["correlation_data"] = correlation_data
        if user_properties is not _NO_ITEMS:
            fields["user_properties"] = _user_properties(user_properties)
        if subscription_identifiers is not _NO_ITEMS:
            fields["subscription_identifiers"] = _ints(subscription_identifiers)
        if content_type is not None:
            fields["content_type"] = content_type


@attrs.frozen(slots=False)
class _AckPacket:
    """Shared shape of PUBACK, PUBREC, PUBREL and PUBCOMP."""

    packet_type: ClassVar[PacketType]

    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    reason_string: str | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )


@attrs.frozen(slots=False)
class PubAckPacket(_AckPacket):
    """PUBACK: the acknowledgement of a QoS 1 PUBLISH."""

    packet_type: ClassVar[PacketType] = PacketType.PUBACK


@attrs.frozen(slots=False)
class PubRecPacket(_AckPacket):
    """PUBREC: the first acknowledgement of a QoS 2 PUBLISH."""

    packet_type: ClassVar[PacketType] = PacketType.PUBREC


@attrs.frozen(slots=False)
class PubRelPacket(_AckPacket):
    """PUBREL: the answer to PUBREC in a QoS 2 exchange."""

    packet_type: ClassVar[PacketType] = PacketType.PUBREL


@attrs.frozen(slots=False)
class PubCompPacket(_AckPacket):
    """PUBCOMP: the last packet of a QoS 2 exchange."""

    packet_type: ClassVar[PacketType] = PacketType.PUBCOMP


@attrs.frozen(slots=False)
class SubscribePacket:
    """SUBSCRIBE: one or more subscriptions requested by a client."""

    packet_type: ClassVar[PacketType] = PacketType.SUBSCRIBE

    packet_id: int
    subscriptions: tuple[Subscription, ...] = attrs.field(converter=_subscriptions)
    subscription_identifier: int | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )


@attrs.frozen(slots=False)
class SubAckPacket:
    """SUBACK: one reason code per requested subscription, in order.

    On 3.1/3.1.1 the codes are ``GRANTED_QOS_0/1/2`` or a failure, which
    travels as 0x80.
    """

    packet_type: ClassVar[PacketType] = PacketType.SUBACK

    packet_id: int
    reason_codes: tuple[ReasonCode, ...] = attrs.field(converter=_reason_codes)
    reason_string: str | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )


@attrs.frozen(slots=False)
class UnsubscribePacket:
    """UNSUBSCRIBE: topic filters to remove."""

    packet_type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE

    packet_id: int
    topic_filters: tuple[str, ...] = attrs.field(converter=_strings)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )


@attrs.frozen(slots=False)
class UnsubAckPacket:
    """UNSUBACK. ``reason_codes`` (one per filter) exist in MQTT 5 only and are
    empty on 3.1/3.1.1."""

    packet_type: ClassVar[PacketType] = PacketType.UNSUBACK

    packet_id: int
    reason_codes: tuple[ReasonCode, ...] = attrs.field(default=(), converter=_reason_codes)
    reason_string: str | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )


@attrs.frozen(slots=False)
class PingReqPacket:
    """PINGREQ: a keep-alive probe from the client."""

    packet_type: ClassVar[PacketType] = PacketType.PINGREQ


@attrs.frozen(slots=False)
class PingRespPacket:
    """PINGRESP: the server's answer to PINGREQ."""

    packet_type: ClassVar[PacketType] = PacketType.PINGRESP


@attrs.frozen(slots=False)
class DisconnectPacket:
    """DISCONNECT. Reason code and properties exist in MQTT 5 only."""

    packet_type: ClassVar[PacketType] = PacketType.DISCONNECT

    reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION
    session_expiry_interval: int | None = attrs.field(default=None, kw_only=True)
    reason_string: str | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )
    server_reference: str | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(slots=False)
class AuthPacket:
    """AUTH: a step of MQTT 5 enhanced authentication (not in 3.1/3.1.1)."""

    packet_type: ClassVar[PacketType] = PacketType.AUTH

    reason_code: ReasonCode = ReasonCode.SUCCESS
    authentication_method: str | None = attrs.field(default=None, kw_only=True)
    authentication_data: bytes | None = attrs.field(default=None, kw_only=True)
    reason_string: str | None = attrs.field(default=None, kw_only=True)
    user_properties: UserProperties = attrs.field(
        default=(), converter=_user_properties, kw_only=True
    )


def _install_class_defaults(cls: type) -> None:
    # A first instance, given every field in declaration order and dropped,
    # puts all the field names into the keys CPython (3.11+) shares among the
    # instance dicts of the class. Without it, the first instances made
    # decide: CPython lets fewer new names join those keys as more instances
    # are created, and an instance given a name that could not join gets a
    # dict of its own (several times the cost of each store, for every
    # packet). A program that decoded many QoS 0 PUBLISH packets before its
    # first QoS 1 one paid that on every QoS 1 packet (about 3.4 times the
    # time of QoS 0, in issue 16); one that built MQTT 3.1.1 packets first
    # paid it on every decoded MQTT 5 packet with properties.
    first: Any = object.__new__(cls)
    for field in attrs.fields(cls):
        object.__setattr__(first, field.name, None)
        if field.default is not attrs.NOTHING:
            type.__setattr__(cls, field.name, field.default)


for _cls in (
    Subscription, Will, ConnectPacket, ConnAckPacket, PublishPacket, PubAckPacket,
    PubRecPacket, PubRelPacket, PubCompPacket, SubscribePacket, SubAckPacket,
    UnsubscribePacket, UnsubAckPacket, PingReqPacket, PingRespPacket,
    DisconnectPacket, AuthPacket,
):  # fmt: skip
    _install_class_defaults(_cls)
del _cls

Packet = (
    ConnectPacket
    | ConnAckPacket
    | PublishPacket
    | PubAckPacket
    | PubRecPacket
    | PubRelPacket
    | PubCompPacket
    | SubscribePacket
    | SubAckPacket
    | UnsubscribePacket
    | UnsubAckPacket
    | PingReqPacket
    | PingRespPacket
    | DisconnectPacket
    | AuthPacket
)
"""Any control packet."""


#: The class of each packet type.
PACKET_CLASSES: dict[PacketType, type[Packet]] = {
    cls.packet_type: cls
    for cls in (
        ConnectPacket,
        ConnAckPacket,
        PublishPacket,
        PubAckPacket,
        PubRecPacket,
        PubRelPacket,
        PubCompPacket,
        SubscribePacket,
        SubAckPacket,
        UnsubscribePacket,
        UnsubAckPacket,
        PingReqPacket,
        PingRespPacket,
        DisconnectPacket,
        AuthPacket,
    )
}
