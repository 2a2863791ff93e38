"""Pure-Python encoding: validate a packet for a protocol version, then encode it."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from ._codec_common import (
    _AUTH_CODES,
    _CONNACK_CODES,
    _DISCONNECT_CODES,
    _PUBACK_CODES,
    _PUBREL_CODES,
    _SUBACK_CODES,
    _UNSUBACK_CODES,
    _V5,
    _VERSIONS,
    MAX_REMAINING_LENGTH,
    _u16,
)
from ._encode_fields import (
    _check_int,
    _check_no_properties,
    _encode_binary,
    _encode_properties,
    _encode_property_value,
    _encode_utf8,
    _encode_varint,
)
from ._properties import (
    PROPERTIES,
    WILL,
)
from .enums import PacketType, PropertyId, ProtocolVersion, ReasonCode
from .errors import (
    LocalProtocolError,
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
)
from .topics import parse_shared_subscription, validate_topic_filter, validate_topic_name

__all__ = ["encode_packet"]


# ---------------------------------------------------------------------------
# Encoders, one per packet class: (packet, version) -> bytes of the whole packet.


def _fixed_header(first: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((first, length))
    if length > MAX_REMAINING_LENGTH:
        raise LocalProtocolError(
            f"packet body of {length} bytes exceeds the maximum remaining length"
        )
    return bytes((first,)) + _encode_varint(length)


def _check_packet_id(packet_id: object) -> int:
    if type(packet_id) is not int or not 0 < packet_id <= 0xFFFF:
        # [MQTT-2.2.1-3]: packet identifiers are 1..65535.
        raise LocalProtocolError(f"packet identifier must be 1..65535, not {packet_id!r}")
    return packet_id


def _check_qos(qos: object, what: str) -> int:
    if type(qos) is bool or not isinstance(qos, int) or not 0 <= qos <= 2:
        raise LocalProtocolError(f"{what} must be 0, 1 or 2, not {qos!r}")
    return int(qos)


def _check_reason(reason: object, allowed: frozenset[ReasonCode], name: str) -> int:
    if type(reason) is bool or not isinstance(reason, int) or reason not in allowed:
        raise LocalProtocolError(f"{reason!r} is not a valid {name} reason code")
    return int(reason)


def _check_v5_fields(version: int, name: str, **fields: object) -> None:
    """Refuse non-default MQTT 5 fields on a 3.1/3.1.1 packet."""
    if version == _V5:
        return
    for field, value in fields.items():
        if value:
            raise LocalProtocolError(
                f"{name}.{field} exists in MQTT 5 only; it cannot be sent with "
                f"{ProtocolVersion(version).name}"
            )


def _encode_publish_properties(packet: PublishPacket) -> bytes:
    """The PUBLISH property block, property length included, for the hot path."""
    parts = []
    value: Any = packet.payload_format_indicator
    if value is not None:
        parts.append(b"\x01" + bytes((_check_int(value, 0, 1, "payload_format_indicator"),)))
    value = packet.message_expiry_interval
    if value is not None:
        if type(value) is not int or not 0 <= value <= 0xFFFFFFFF:
            _check_int(value, 0, 0xFFFFFFFF, "message_expiry_interval")
        parts.append(_pack_byte_u32(0x02, value))
    value = packet.content_type
    if value is not None:
        parts.append(b"\x03" + _encode_utf8(value, "content_type"))
    value = packet.response_topic
    if value is not None:
        validate_topic_name(value)
        parts.append(b"\x08" + _encode_utf8(value, "response_topic"))
    value = packet.correlation_data
    if value is not None:
        parts.append(b"\x09" + _encode_binary(value, "correlation_data"))
    for value in packet.subscription_identifiers:
        identifier = _check_int(value, 1, 268_435_455, "subscription identifier")
        parts.append(b"\x0b" + _encode_varint(identifier))
    value = packet.topic_alias
    if value is not None:
        parts.append(b"\x23" + _u16(_check_int(value, 1, 0xFFFF, "topic_alias")))
    for value in packet.user_properties:
        encoded = _user_property_cache.get(value) if type(value) is tuple else None
        parts.append(encoded if encoded is not None else _encode_user_property(value))
    if not parts:
        return b"\x00"
    body = b"".join(parts)
    size = len(body)
    return (bytes((size,)) if size < 0x80 else _encode_varint(size)) + body


# Encoded forms of recently sent topic names and user properties. Publishers
# repeat a small set of both; a hit skips validation and UTF-8 encoding. Only
# short values are kept and each cache is emptied when full, which bounds it.
_ENCODE_CACHE_SIZE: Final = 4096
_ENCODE_CACHE_MAX_LENGTH: Final = 256
_topic_cache: dict[str, bytes] = {}
_pack_byte_u32 = struct.Struct(">BI").pack
_user_property_cache: dict[tuple[str, str], bytes] = {}


def _encode_user_property(pair: Any) -> bytes:
    try:
        encoded = _user_property_cache.get(pair)
    except TypeError:
        encoded = None  # unhashable: not a (str, str) pair; let the checks say so
    if encoded is not None:
        return encoded
    encoded = _encode_property_value(PROPERTIES[PropertyId.USER_PROPERTY], pair)
    if len(encoded) <= _ENCODE_CACHE_MAX_LENGTH:
        if len(_user_property_cache) >= _ENCODE_CACHE_SIZE:
            _user_property_cache.clear()
        _user_property_cache[pair] = encoded
    return encoded


def _encode_topic_name(topic: object) -> bytes:
    """Validate and encode a non-empty PUBLISH topic name, length prefix included."""
    if type(topic) is not str:
        raise LocalProtocolError(f"topic must be a str, not {type(topic).__name__}")
    validate_topic_name(topic)
    encoded = _encode_utf8(topic, "topic")
    if len(encoded) <= _ENCODE_CACHE_MAX_LENGTH:
        if len(_topic_cache) >= _ENCODE_CACHE_SIZE:
            _topic_cache.clear()
        _topic_cache[topic] = encoded
    return encoded


def _encode_publish(packet: PublishPacket, version: int) -> bytes:
    topic = packet.topic
    try:
        encoded_topic = _topic_cache.get(topic)
    except TypeError:
        encoded_topic = None
    qos = packet.qos
    if qos == 0:
        if packet.packet_id is not None:
            raise LocalProtocolError("a QoS 0 PUBLISH has no packet identifier [MQTT-2.2.1-2]")
        if packet.duplicate:
            raise LocalProtocolError("DUP must be 0 on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
        first = 0x30
        tail = b""
    else:
        first = 0x32 if qos == 1 else 0x34 if _check_qos(qos, "PUBLISH QoS") == 2 else 0x30
        packet_id = packet.packet_id
        if type(packet_id) is not int or not 0 < packet_id <= 0xFFFF:
            _check_packet_id(packet_id)
        if packet.duplicate:
            first |= 0x08
        tail = _u16(packet_id)
    if packet.retain:
        first |= 0x01
    payload = packet.payload
    if type(payload) is not bytes:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"payload must be bytes, not {type(payload).__name__}")
        payload = bytes(payload)
    if version == _V5:
        tail += _encode_publish_properties(packet)
    elif (
        packet.user_properties
        or packet.message_expiry_interval is not None
        or packet.topic_alias is not None
        or packet.payload_format_indicator is not None
        or packet.response_topic is not None
        or packet.correlation_data is not None
        or packet.content_type is not None
        or packet.subscription_identifiers
    ):
        _check_no_properties(packet, PacketType.PUBLISH, version)
    if encoded_topic is None:
        if topic == "" and version == _V5 and packet.topic_alias is not None:
            encoded_topic = b"\x00\x00"  # the alias names the topic [MQTT-3.3.2-1]
        else:
            encoded_topic = _encode_topic_name(topic)
    length = len(encoded_topic) + len(tail) + len(payload)
    if length < 0x80:
        return b"".join((bytes((first, length)), encoded_topic, tail, payload))
    return b"".join((_fixed_header(first, length), encoded_topic, tail, payload))


def _encode_connect(packet: ConnectPacket, version: int) -> bytes:
    if packet.protocol_version != version:
        raise LocalProtocolError(
            f"CONNECT carries protocol version {packet.protocol_version!r} "
            f"but is encoded for {ProtocolVersion(version).name}"
        )
    v5 = version == _V5
    client_id = packet.client_id
    if version == ProtocolVersion.MQTT_3_1 and not 0 < len(client_id) <= 23:
        raise LocalProtocolError("an MQTT 3.1 client identifier has 1 to 23 characters")
    if not v5 and not client_id and not packet.clean_start:
        raise LocalProtocolError("an empty client identifier needs a clean session [MQTT-3.1.3-7]")
    flags = 0x02 if packet.clean_start else 0x00
    payload = [_encode_utf8(client_id, "client identifier")]
    will = packet.will
    if will is not None:
        validate_topic_name(will.topic)
        flags |= 0x04 | (_check_qos(will.qos, "will QoS") << 3)
        if will.retain:
            flags |= 0x20
        if v5:
            payload.append(_encode_properties(will, WILL))
        else:
            _check_no_properties(will, WILL, version)
        payload.append(_encode_utf8(will.topic, "will topic"))
        payload.append(_encode_binary(will.payload, "will payload"))
    if packet.username is not None:
        flags |= 0x80
        payload.append(_encode_utf8(packet.username, "user name"))
    if packet.password is not None:
        if packet.username is None and not v5:
            raise LocalProtocolError("a password needs a user name before MQTT 5 [MQTT-3.1.2-22]")
        flags |= 0x40
        payload.append(_encode_binary(packet.password, "password"))
    keep_alive = _check_int(packet.keep_alive, 0, 0xFFFF, "keep_alive")
    name = b"\x00\x06MQIsdp" if version == ProtocolVersion.MQTT_3_1 else b"\x00\x04MQTT"
    level = version
    if packet.bridge:
        if v5:
            raise LocalProtocolError(
                "the bridge flag (protocol level | 0x80) is for MQTT 3.1/3.1.1"
            )
        level |= 0x80
    header = name + bytes((level, flags)) + _u16(keep_alive)
    if v5:
        header += _encode_properties(packet, PacketType.CONNECT)
    else:
        _check_no_properties(packet, PacketType.CONNECT, version)
    body = header + b"".join(payload)
    return _fixed_header(0x10, len(body)) + body


def _encode_connack(packet: ConnAckPacket, version: int) -> bytes:
    reason = packet.reason_code
    session_present = packet.session_present
    if version == _V5:
        code = _check_reason(reason, _CONNACK_CODES, "CONNACK")
        properties = _encode_properties(packet, PacketType.CONNACK)
    else:
        try:
            code = ReasonCode(reason).to_connack_return_code()
        except ValueError:
            raise LocalProtocolError(f"{reason!r} is not a CONNACK reason code") from None
        _check_no_properties(packet, PacketType.CONNACK, version)
        if session_present and version == ProtocolVersion.MQTT_3_1:
            raise LocalProtocolError("MQTT 3.1 CONNACK has no session present flag")
        properties = b""
    if session_present and code:
        raise LocalProtocolError("a refusing CONNACK must not set session present [MQTT-3.2.2-6]")
    body = bytes((0x01 if session_present else 0x00, code)) + properties
    return _fixed_header(0x20, len(body)) + body


def _encode_ack(
    kind: PacketType, allowed: frozenset[ReasonCode], name: str
) -> Callable[[Any, int], bytes]:
    first = (kind << 4) | (0x02 if kind == PacketType.PUBREL else 0x00)

    def encode(packet: Any, version: int) -> bytes:
        packet_id = _u16(_check_packet_id(packet.packet_id))
        reason = packet.reason_code
        if version != _V5:
            if reason != ReasonCode.SUCCESS:
                raise LocalProtocolError(f"{name} reason codes exist in MQTT 5 only")
            _check_no_properties(packet, kind, version)
            return bytes((first, 2)) + packet_id
        code = _check_reason(reason, allowed, name)
        if packet.reason_string is None and not packet.user_properties:
            if not code:
                return bytes((first, 2)) + packet_id
            return bytes((first, 3)) + packet_id + bytes((code,))
        body = packet_id + bytes((code,)) + _encode_properties(packet, kind)
        return _fixed_header(first, len(body)) + body

    return encode


def _encode_subscription(sub: Subscription, version: int) -> bytes:
    if not isinstance(sub, Subscription):
        raise LocalProtocolError(f"expected a Subscription, not {type(sub).__name__}")
    validate_topic_filter(sub.topic_filter)
    options = _check_qos(sub.max_qos, "subscription QoS")
    if version == _V5:
        handling = _check_int(sub.retain_handling, 0, 2, "retain handling")
        # [MQTT-4.8.2-1] [MQTT-4.8.2-2]: a $share/ filter must be well formed.
        shared = parse_shared_subscription(sub.topic_filter)
        if sub.no_local:
            if shared is not None:
                raise LocalProtocolError("no local on a shared subscription [MQTT-3.8.3-4]")
            options |= 0x04
        if sub.retain_as_published:
            options |= 0x08
        options |= handling << 4
    else:
        _check_v5_fields(
            version,
            "Subscription",
            no_local=sub.no_local,
            retain_as_published=sub.retain_as_published,
            retain_handling=sub.retain_handling,
        )
    return _encode_utf8(sub.topic_filter, "topic filter") + bytes((options,))


def _encode_subscribe(packet: SubscribePacket, version: int) -> bytes:
    parts = [_u16(_check_packet_id(packet.packet_id))]
    if version == _V5:
        parts.append(_encode_properties(packet, PacketType.SUBSCRIBE))
    else:
        _check_no_properties(packet, PacketType.SUBSCRIBE, version)
    if not packet.subscriptions:
        raise LocalProtocolError("SUBSCRIBE needs at least one subscription [MQTT-3.8.3-3]")
    parts.extend(_encode_subscription(sub, version) for sub in packet.subscriptions)
    body = b"".join(parts)
    return _fixed_header(0x82, len(body)) + body


def _encode_suback(packet: SubAckPacket, version: int) -> bytes:
    parts = [_u16(_check_packet_id(packet.packet_id))]
    if not packet.reason_codes:
        raise LocalProtocolError("SUBACK needs at least one reason code")
    if version == _V5:
        parts.append(_encode_properties(packet, PacketType.SUBACK))
        parts.append(bytes(_check_reason(c, _SUBACK_CODES, "SUBACK") for c in packet.reason_codes))
    else:
        _check_no_properties(packet, PacketType.SUBACK, version)
        codes = []
        for code in packet.reason_codes:
            _check_reason(code, _SUBACK_CODES, "SUBACK")
            codes.append(ReasonCode(code).to_suback_v3())
        parts.append(bytes(codes))
    body = b"".join(parts)
    return _fixed_header(0x90, len(body)) + body


def _encode_unsubscribe(packet: UnsubscribePacket, version: int) -> bytes:
    parts = [_u16(_check_packet_id(packet.packet_id))]
    if version == _V5:
        parts.append(_encode_properties(packet, PacketType.UNSUBSCRIBE))
    else:
        _check_no_properties(packet, PacketType.UNSUBSCRIBE, version)
    if not packet.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]")
    for topic_filter in packet.topic_filters:
        validate_topic_filter(topic_filter)
        if version == _V5:
            parse_shared_subscription(topic_filter)
        parts.append(_encode_utf8(topic_filter, "topic filter"))
    body = b"".join(parts)
    return _fixed_header(0xA2, len(body)) + body


def _encode_unsuback(packet: UnsubAckPacket, version: int) -> bytes:
    packet_id = _u16(_check_packet_id(packet.packet_id))
    if version != _V5:
        _check_no_properties(packet, PacketType.UNSUBACK, version)
        _check_v5_fields(version, "UnsubAckPacket", reason_codes=packet.reason_codes)
        return b"\xb0\x02" + packet_id
    if not packet.reason_codes:
        raise LocalProtocolError("an MQTT 5 UNSUBACK needs one reason code per topic filter")
    codes = bytes(_check_reason(c, _UNSUBACK_CODES, "UNSUBACK") for c in packet.reason_codes)
    body = packet_id + _encode_properties(packet, PacketType.UNSUBACK) + codes
    return _fixed_header(0xB0, len(body)) + body


def _encode_pingreq(packet: PingReqPacket, version: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(packet: PingRespPacket, version: int) -> bytes:
    return b"\xd0\x00"


def _encode_disconnect(packet: DisconnectPacket, version: int) -> bytes:
    reason = packet.reason_code
    if version != _V5:
        if reason != ReasonCode.NORMAL_DISCONNECTION:
            raise LocalProtocolError("DISCONNECT reason codes exist in MQTT 5 only")
        _check_no_properties(packet, PacketType.DISCONNECT, version)
        return b"\xe0\x00"
    code = _check_reason(reason, _DISCONNECT_CODES, "DISCONNECT")
    properties = _encode_properties(packet, PacketType.DISCONNECT)
    if properties == b"\x00":
        return bytes((0xE0, 1, code)) if code else b"\xe0\x00"
    body = bytes((code,)) + properties
    return _fixed_header(0xE0, len(body)) + body


def _encode_auth(packet: AuthPacket, version: int) -> bytes:
    if version != _V5:
        raise LocalProtocolError("AUTH exists in MQTT 5 only")
    code = _check_reason(packet.reason_code, _AUTH_CODES, "AUTH")
    properties = _encode_properties(packet, PacketType.AUTH)
    if properties == b"\x00" and not code:
        return b"\xf0\x00"
    body = bytes((code,)) + properties
    return _fixed_header(0xF0, len(body)) + body


_ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    ConnectPacket: _encode_connect,
    ConnAckPacket: _encode_connack,
    PublishPacket: _encode_publish,
    PubAckPacket: _encode_ack(PacketType.PUBACK, _PUBACK_CODES, "PUBACK"),
    PubRecPacket: _encode_ack(PacketType.PUBREC, _PUBACK_CODES, "PUBREC"),
    PubRelPacket: _encode_ack(PacketType.PUBREL, _PUBREL_CODES, "PUBREL"),
    PubCompPacket: _encode_ack(PacketType.PUBCOMP, _PUBREL_CODES, "PUBCOMP"),
    SubscribePacket: _encode_subscribe,
    SubAckPacket: _encode_suback,
    UnsubscribePacket: _encode_unsubscribe,
    UnsubAckPacket: _encode_unsuback,
    PingReqPacket: _encode_pingreq,
    PingRespPacket: _encode_pingresp,
    DisconnectPacket: _encode_disconnect,
    AuthPacket: _encode_auth,
}


def encode_packet(packet: Packet, *, version: ProtocolVersion) -> bytes:
    """Validate ``packet`` for ``version`` and encode it, fixed header included.

    :raises LocalProtocolError: when the packet may not be sent with this
        version: a wildcard in a PUBLISH topic, QoS > 0 without a packet
        identifier, an MQTT 5 field on 3.1/3.1.1, a value out of range, …
    :raises TypeError: when ``packet`` is not a packet.
    """
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    if version not in _VERSIONS:
        raise ValueError(f"unknown protocol version {version!r}")
    return encoder(packet, version)
