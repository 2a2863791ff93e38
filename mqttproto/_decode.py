"""Pure-Python decoding: one strict decoder per packet type.

Decoders read straight from the stream buffer with offsets (``data``,
``pos``, ``end``) so that no packet body is copied before it is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ._codec_common import (
    _AUTH_CODES,
    _CONNACK_CODES,
    _DISCONNECT_CODES,
    _PUBACK_CODES,
    _PUBREL_CODES,
    _QOS,
    _REASON,
    _RETAIN_HANDLING,
    _SUBACK_CODES,
    _SUBACK_V3_CODES,
    _UNSUBACK_CODES,
    _V5,
    _VERSIONS,
    _build,
    _new,
)
from ._decode_fields import (
    PropertyLimit,
    _check_topic_name,
    _decode_properties,
    _decode_topic_name,
    _publish_block_cache,
    _read_binary,
    _read_packet_id,
    _read_publish_properties,
    _read_utf8,
    _read_varint,
    _reason,
    _skip_properties,
    _topic_cache,
    property_limit,
)
from ._properties import WILL
from .enums import PacketType, ProtocolVersion, ReasonCode
from .errors import (
    ClientIdentifierNotValid,
    MalformedPacket,
    ProtocolError,
    RemoteProtocolError,
    UnsupportedProtocolVersion,
)
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
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
from .topics import parse_shared_subscription, validate_topic_filter, validate_topic_name

__all__ = ["decode_packet"]

# The property limit every decoder is given (None: no limit).
Limit = PropertyLimit | None
# (data, flags, pos, end, version, limit) -> packet; the body is data[pos:end].
Decoder = Callable[[bytes, int, int, int, int, Limit], Packet]

# ---------------------------------------------------------------------------
# Decoders, one per packet type (see ``Decoder``). ``flags`` is the low nibble
# of the first byte; ``limit`` is passed to every property block.


def _no_flags(flags: int, name: str) -> None:
    if flags:
        # [MQTT-2.1.3-1] (5.0) / [MQTT-2.2.2-1] [MQTT-2.2.2-2] (3.1.1):
        # reserved flag bits must hold the values of table 2-2.
        raise MalformedPacket(f"reserved flags 0x{flags:X} set in {name}")


def _trailing(pos: int, end: int, name: str) -> None:
    if pos != end:
        raise MalformedPacket(f"{end - pos} unexpected bytes at the end of {name}")


def _decode_connect(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> ConnectPacket:
    _no_flags(flags, "CONNECT")
    name, pos = _read_utf8(data, pos, end, "protocol name")
    if pos >= end:
        raise MalformedPacket("CONNECT ends before the protocol level")
    level = data[pos]
    pos += 1
    expected = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}.get(level)
    if expected is None:
        raise UnsupportedProtocolVersion(
            f"unsupported protocol level {level}", protocol_level=level
        )
    if name != expected:
        # [MQTT-3.1.2-1]: a wrong protocol name is not this protocol.
        raise UnsupportedProtocolVersion(
            f"protocol name {name!r} with level {level}", protocol_level=level
        )
    v5 = level == _V5
    if pos + 3 > end:
        raise MalformedPacket("CONNECT ends inside its variable header")
    connect_flags = data[pos]
    keep_alive = (data[pos + 1] << 8) | data[pos + 2]
    pos += 3
    if connect_flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag set [MQTT-3.1.2-3]")
    has_will = connect_flags & 0x04
    will_qos = (connect_flags >> 3) & 0x03
    will_retain = connect_flags & 0x20
    has_password = connect_flags & 0x40
    has_username = connect_flags & 0x80
    if will_qos == 3:
        raise MalformedPacket("will QoS 3 [MQTT-3.1.2-12] [MQTT-3.1.2-14]")
    if not has_will and (will_qos or will_retain):
        raise MalformedPacket(
            "will QoS or will retain set without the will flag "
            "[MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]"
        )
    if has_password and not has_username and not v5:
        raise MalformedPacket("password flag without user name flag [MQTT-3.1.2-22]")
    fields: dict[str, Any] = {}
    if v5:
        fields, pos = _decode_properties(data, pos, end, PacketType.CONNECT, limit)
    fields["protocol_version"] = _VERSIONS[level]
    fields["clean_start"] = bool(connect_flags & 0x02)
    fields["keep_alive"] = keep_alive
    client_id, pos = _read_utf8(data, pos, end, "client identifier")
    if level == ProtocolVersion.MQTT_3_1 and not 0 < len(client_id) <= 23:
        # MQTT 3.1 section 3.1: the identifier has 1 to 23 characters.
        raise ClientIdentifierNotValid(
            "an MQTT 3.1 client identifier has 1 to 23 characters", protocol_level=level
        )
    if not client_id and not connect_flags & 0x02 and not v5:
        # [MQTT-3.1.3-8]: answered with CONNACK return code 2 (identifier rejected).
        raise ClientIdentifierNotValid(
            "an empty client identifier needs a clean session [MQTT-3.1.3-8]",
            protocol_level=level,
        )
    fields["client_id"] = client_id
    if has_will:
        will_fields: dict[str, Any] = {}
        if v5:
            will_fields, pos = _decode_properties(data, pos, end, WILL, limit)
        topic, pos = _read_utf8(data, pos, end, "will topic")
        validate_topic_name(topic, error=RemoteProtocolError)
        will_fields["topic"] = topic
        will_fields["payload"], pos = _read_binary(data, pos, end, "will payload")
        will_fields["qos"] = _QOS[will_qos]
        will_fields["retain"] = bool(will_retain)
        fields["will"] = _build(Will, will_fields)
    if has_username:
        fields["username"], pos = _read_utf8(data, pos, end, "user name")
    if has_password:
        fields["password"], pos = _read_binary(data, pos, end, "password")
    _trailing(pos, end, "CONNECT")
    return _build(ConnectPacket, fields)  # type: ignore[no-any-return]


def _decode_connack(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> ConnAckPacket:
    _no_flags(flags, "CONNACK")
    if pos + 2 > end:
        raise MalformedPacket("CONNACK shorter than two bytes")
    ack_flags = data[pos]
    code = data[pos + 1]
    pos += 2
    if ack_flags & 0xFE:
        raise MalformedPacket("reserved CONNACK acknowledge flags set [MQTT-3.2.2-1]")
    fields: dict[str, Any] = {}
    if version == _V5:
        reason = _reason(code, _CONNACK_CODES, "CONNACK")
        fields, pos = _decode_properties(data, pos, end, PacketType.CONNACK, limit)
    else:
        try:
            reason = ReasonCode.from_connack_return_code(code)
        except ValueError:
            raise MalformedPacket(f"reserved CONNACK return code {code}") from None
        if ack_flags and version == ProtocolVersion.MQTT_3_1:
            raise MalformedPacket("MQTT 3.1 CONNACK has no session present flag")
    if ack_flags and reason:
        # [MQTT-3.2.2-4] (3.1.1) / [MQTT-3.2.2-6] (5.0).
        raise RemoteProtocolError("session present set in a refusing CONNACK")
    _trailing(pos, end, "CONNACK")
    fields["session_present"] = bool(ack_flags)
    fields["reason_code"] = reason
    return _build(ConnAckPacket, fields)  # type: ignore[no-any-return]


def _decode_publish(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> PublishPacket:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    if pos + 2 > end:
        raise MalformedPacket("topic name runs past the end of PUBLISH")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("topic name runs past the end of PUBLISH")
    raw = data[pos + 2 : stop]
    topic = _topic_cache.get(raw)
    # A cached name is known to be non-empty and free of wildcards.
    valid_topic = topic is not None
    if topic is None:
        topic = _decode_topic_name(raw)
        valid_topic = bool(topic) and "+" not in topic and "#" not in topic
    pos = stop
    packet = _new(PublishPacket)
    state = packet.__dict__
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("packet identifier runs past the end of PUBLISH")
        packet_id = (data[pos] << 8) | data[pos + 1]
        if not packet_id:
            raise RemoteProtocolError("PUBLISH with packet identifier 0 [MQTT-2.2.1-3]")
        pos += 2
        state["qos"] = _QOS[qos]
        state["packet_id"] = packet_id
        if flags & 0x08:
            state["duplicate"] = True
    elif flags & 0x08:
        raise RemoteProtocolError("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
    if flags & 0x01:
        state["retain"] = True
    if version == _V5:
        if pos < end and not data[pos]:
            pos += 1  # no properties: the common case
            if not valid_topic:
                _check_topic_name(topic, v5=True, has_alias=False)
        else:
            # A block read before (see _read_publish_properties), looked up
            # here to save a call: its first byte is its length (a cached
            # block is under 128 bytes, so a longer one never matches).
            block_end = pos + 1 + data[pos] if pos < end else end + 1
            known = _publish_block_cache.get(data[pos:block_end]) if block_end <= end else None
            if known is not None and (
                limit is None or (known[1] <= limit.count and known[2] <= limit.size)
            ):
                state.update(known[0])
                pos = block_end
            else:
                pos = _read_publish_properties(data, pos, end, state, limit)
            if not valid_topic:
                _check_topic_name(topic, v5=True, has_alias="topic_alias" in state)
    elif not valid_topic:
        _check_topic_name(topic, v5=False, has_alias=False)
    state["topic"] = topic
    state["payload"] = data[pos:end]
    return packet


def _decode_ack(cls: type[Any], allowed: frozenset[ReasonCode], name: str) -> Decoder:
    """Build the decoder shared by PUBACK, PUBREC, PUBREL and PUBCOMP."""
    expected_flags = 0x02 if cls is PubRelPacket else 0x00
    kind = cls.packet_type

    def decode(data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit) -> Any:
        if flags != expected_flags:
            # [MQTT-3.6.1-1]: PUBREL flags are 0010; the others 0000.
            raise MalformedPacket(f"reserved flags 0x{flags:X} set in {name}")
        packet_id = _read_packet_id(data, pos, end)
        pos += 2
        fields: dict[str, Any] = {"packet_id": packet_id}
        if version == _V5 and pos < end:
            # The reason code and properties may be left out when the code
            # is 0x00 and there are no properties (section 3.4.2.1).
            fields["reason_code"] = _reason(data[pos], allowed, name)
            pos += 1
            if pos < end:
                properties, pos = _decode_properties(data, pos, end, kind, limit)
                fields.update(properties)
        _trailing(pos, end, name)
        return _build(cls, fields)

    return decode


def _decode_subscribe(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> SubscribePacket:
    if flags != 0x02:
        raise MalformedPacket("SUBSCRIBE flags must be 0010 [MQTT-3.8.1-1]")
    v5 = version == _V5
    fields: dict[str, Any] = {"packet_id": _read_packet_id(data, pos, end)}
    pos += 2
    if v5:
        properties, pos = _decode_properties(data, pos, end, PacketType.SUBSCRIBE, limit)
        fields.update(properties)
    subscriptions = []
    while pos < end:
        topic_filter, pos = _read_utf8(data, pos, end, "topic filter")
        if pos >= end:
            raise MalformedPacket("subscription options missing")
        options = data[pos]
        pos += 1
        max_qos = options & 0x03
        if max_qos == 3:
            if v5:
                # 5.0 section 3.8.3.1: "It is a Protocol Error if the Maximum QoS
                # field has the value 3."
                raise RemoteProtocolError("subscription with maximum QoS 3")
            # 3.1.1: a QoS other than 0, 1 or 2 is malformed [MQTT-3-8.3-4].
            raise MalformedPacket("subscription with QoS 3 [MQTT-3-8.3-4]")
        validate_topic_filter(topic_filter, error=RemoteProtocolError)
        sub: dict[str, Any] = {"topic_filter": topic_filter, "max_qos": _QOS[max_qos]}
        if v5:
            if options & 0xC0:
                raise MalformedPacket("reserved subscription option bits set [MQTT-3.8.3-5]")
            retain_handling = (options >> 4) & 0x03
            if retain_handling == 3:
                raise RemoteProtocolError("retain handling 3 is a protocol error")
            # [MQTT-4.8.2-1] [MQTT-4.8.2-2]: a $share/ filter must be well formed.
            shared = parse_shared_subscription(topic_filter, error=RemoteProtocolError)
            if options & 0x04:
                # [MQTT-3.8.3-4]: no local on a shared subscription.
                if shared is not None:
                    raise RemoteProtocolError("no local set on a shared subscription")
                sub["no_local"] = True
            if options & 0x08:
                sub["retain_as_published"] = True
            sub["retain_handling"] = _RETAIN_HANDLING[retain_handling]
        elif options & 0xFC:
            raise MalformedPacket("reserved subscription option bits set [MQTT-3-8.3-4]")
        subscriptions.append(_build(Subscription, sub))
    if not subscriptions:
        raise RemoteProtocolError("SUBSCRIBE without subscriptions [MQTT-3.8.3-3]")
    fields["subscriptions"] = tuple(subscriptions)
    return _build(SubscribePacket, fields)  # type: ignore[no-any-return]


def _decode_suback(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> SubAckPacket:
    _no_flags(flags, "SUBACK")
    fields: dict[str, Any] = {"packet_id": _read_packet_id(data, pos, end)}
    pos += 2
    if version == _V5:
        properties, pos = _decode_properties(data, pos, end, PacketType.SUBACK, limit)
        fields.update(properties)
        codes = tuple(_reason(code, _SUBACK_CODES, "SUBACK") for code in data[pos:end])
    else:
        for code in data[pos:end]:
            if code not in _SUBACK_V3_CODES:
                raise MalformedPacket(f"SUBACK return code 0x{code:02X} [MQTT-3.9.3-2]")
        codes = tuple(_REASON[code] for code in data[pos:end])
    if not codes:
        raise MalformedPacket("SUBACK without reason codes")
    fields["reason_codes"] = codes
    return _build(SubAckPacket, fields)  # type: ignore[no-any-return]


def _decode_unsubscribe(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> UnsubscribePacket:
    if flags != 0x02:
        raise MalformedPacket("UNSUBSCRIBE flags must be 0010 [MQTT-3.10.1-1]")
    fields: dict[str, Any] = {"packet_id": _read_packet_id(data, pos, end)}
    pos += 2
    if version == _V5:
        properties, pos = _decode_properties(data, pos, end, PacketType.UNSUBSCRIBE, limit)
        fields.update(properties)
    filters = []
    while pos < end:
        topic_filter, pos = _read_utf8(data, pos, end, "topic filter")
        validate_topic_filter(topic_filter, error=RemoteProtocolError)
        if version == _V5:
            # [MQTT-4.8.2-1] [MQTT-4.8.2-2]: a $share/ filter must be well formed.
            parse_shared_subscription(topic_filter, error=RemoteProtocolError)
        filters.append(topic_filter)
    if not filters:
        raise RemoteProtocolError("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    fields["topic_filters"] = tuple(filters)
    return _build(UnsubscribePacket, fields)  # type: ignore[no-any-return]


def _decode_unsuback(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> UnsubAckPacket:
    _no_flags(flags, "UNSUBACK")
    fields: dict[str, Any] = {"packet_id": _read_packet_id(data, pos, end)}
    pos += 2
    if version == _V5:
        properties, pos = _decode_properties(data, pos, end, PacketType.UNSUBACK, limit)
        fields.update(properties)
        codes = tuple(_reason(code, _UNSUBACK_CODES, "UNSUBACK") for code in data[pos:end])
        if not codes:
            raise MalformedPacket("UNSUBACK without reason codes")
        fields["reason_codes"] = codes
    else:
        _trailing(pos, end, "UNSUBACK")
    return _build(UnsubAckPacket, fields)  # type: ignore[no-any-return]


_PINGREQ: Final = PingReqPacket()
_PINGRESP: Final = PingRespPacket()


def _decode_pingreq(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> PingReqPacket:
    _no_flags(flags, "PINGREQ")
    _trailing(pos, end, "PINGREQ")
    return _PINGREQ


def _decode_pingresp(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> PingRespPacket:
    _no_flags(flags, "PINGRESP")
    _trailing(pos, end, "PINGRESP")
    return _PINGRESP


def _decode_disconnect(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> DisconnectPacket:
    _no_flags(flags, "DISCONNECT")
    fields: dict[str, Any] = {}
    if version == _V5 and pos < end:
        fields["reason_code"] = _reason(data[pos], _DISCONNECT_CODES, "DISCONNECT")
        pos += 1
        if pos < end:
            properties, pos = _decode_properties(data, pos, end, PacketType.DISCONNECT, limit)
            fields.update(properties)
    _trailing(pos, end, "DISCONNECT")
    return _build(DisconnectPacket, fields)  # type: ignore[no-any-return]


def _decode_auth(
    data: bytes, flags: int, pos: int, end: int, version: int, limit: Limit
) -> AuthPacket:
    if version != _V5:
        raise MalformedPacket("AUTH exists in MQTT 5 only; type 15 is reserved before it")
    _no_flags(flags, "AUTH")
    fields: dict[str, Any] = {}
    if pos < end:
        # [MQTT-3.15.2-1]: only 0x00, 0x18 and 0x19 are AUTH reason codes.
        fields["reason_code"] = _reason(data[pos], _AUTH_CODES, "AUTH")
        pos += 1
        if pos < end:
            properties, pos = _decode_properties(data, pos, end, PacketType.AUTH, limit)
            fields.update(properties)
    _trailing(pos, end, "AUTH")
    return _build(AuthPacket, fields)  # type: ignore[no-any-return]


# Indexed by the packet type nibble; None marks the reserved type 0.
_DECODERS: Final[tuple[Decoder | None, ...]] = (
    None,
    _decode_connect,
    _decode_connack,
    _decode_publish,
    _decode_ack(PubAckPacket, _PUBACK_CODES, "PUBACK"),
    _decode_ack(PubRecPacket, _PUBACK_CODES, "PUBREC"),
    _decode_ack(PubRelPacket, _PUBREL_CODES, "PUBREL"),
    _decode_ack(PubCompPacket, _PUBREL_CODES, "PUBCOMP"),
    _decode_subscribe,
    _decode_suback,
    _decode_unsubscribe,
    _decode_unsuback,
    _decode_pingreq,
    _decode_pingresp,
    _decode_disconnect,
    _decode_auth,
)


def _decode_body(data: bytes, first: int, pos: int, end: int, version: int, limit: Limit) -> Packet:
    decoder = _DECODERS[first >> 4]
    if decoder is None:
        raise MalformedPacket("reserved packet type 0")
    try:
        return decoder(data, first & 0x0F, pos, end, version, limit)
    except ProtocolError:
        raise
    except (IndexError, ValueError, KeyError, TypeError) as exc:  # pragma: no cover
        # Every read above is bounds-checked; this net turns a missed check
        # into the error the caller expects instead of a crash.
        raise MalformedPacket(f"malformed packet ({exc.__class__.__name__})") from exc


def decode_packet(
    data: bytes,
    *,
    version: ProtocolVersion,
    max_user_properties: int | None = None,
    max_user_property_bytes: int | None = None,
    max_subscription_identifiers: int | None = None,
) -> Packet:
    """Decode exactly one complete packet.

    :param data: the whole packet, fixed header included. Fewer or more bytes
        than the packet declares is a :class:`~mqttproto.MalformedPacket`.
    :param version: the protocol version in use. A CONNECT is decoded with the
        level it carries, whatever ``version`` says.
    :param max_user_properties: stop building the User Properties of a
        property block once it holds more than this many; see
        :class:`PacketReader`, which takes the same three limits.
    :param max_user_property_bytes: the same, once their names and values
        take more than this many UTF-8 bytes together.
    :param max_subscription_identifiers: stop building the Subscription
        Identifiers of a PUBLISH once it holds more than this many.
    :raises RemoteProtocolError: (or a subclass) when the bytes break a rule;
        nothing else escapes for any input.
    """
    data = bytes(data)
    end = len(data)
    if end < 2:
        raise MalformedPacket("a packet has at least two bytes")
    length, pos = _read_varint(data, 1, end)
    if pos + length != end:
        raise MalformedPacket(
            f"remaining length {length} does not match the {end - pos} bytes given"
        )
    if version not in _VERSIONS:
        raise ValueError(f"unknown protocol version {version!r}")
    limit = property_limit(
        max_user_properties,
        max_user_property_bytes,
        max_subscription_identifiers,
        _skip_properties,
    )
    return _decode_body(data, data[0], pos, end, int(version), limit)
