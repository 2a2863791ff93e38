"""The field encoders of the pure-Python codec: variable byte integers,
strings, binary data and MQTT 5 properties, each validated as it is encoded
(the twin of ``_decode_fields.py``). The packet encoders are in ``_encode.py``.
"""

from __future__ import annotations

from typing import Any, Final

from ._codec_common import _u16, _u32
from ._properties import BOOLEAN_FIELDS, PROPERTIES_BY_KIND, PropertySpec, WireType
from .enums import PacketType, PropertyId, ProtocolVersion
from .errors import LocalProtocolError
from .topics import validate_topic_name

__all__ = [
    "_auth_data_without_method",
    "_check_int",
    "_check_no_properties",
    "_encode_binary",
    "_encode_properties",
    "_encode_property_value",
    "_encode_utf8",
    "_encode_varint",
]


def _encode_varint(value: int) -> bytes:
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


def _encode_utf8(text: object, what: str) -> bytes:
    if type(text) is not str:
        raise LocalProtocolError(f"{what} must be a str, not {type(text).__name__}")
    if "\x00" in text:
        raise LocalProtocolError(f"{what} must not contain U+0000 [MQTT-1.5.4-2]")
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} contains a lone surrogate [MQTT-1.5.4-1]") from None
    if len(raw) > 0xFFFF:
        raise LocalProtocolError(f"{what} is longer than 65,535 bytes")
    return _u16(len(raw)) + raw


def _encode_binary(data: object, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LocalProtocolError(f"{what} must be bytes, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > 0xFFFF:
        raise LocalProtocolError(f"{what} is longer than 65,535 bytes")
    return _u16(len(raw)) + raw


def _check_int(value: object, low: int, high: int, what: str) -> int:
    if type(value) is bool or not isinstance(value, int):
        raise LocalProtocolError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise LocalProtocolError(f"{what} must be between {low} and {high}, not {value}")
    return int(value)


def _property_fields(kind: int) -> tuple[tuple[PropertySpec, str], ...]:
    rows = []
    for spec in sorted(PROPERTIES_BY_KIND[kind].values(), key=lambda s: s.identifier):
        field = spec.field
        if kind == PacketType.SUBSCRIBE and field == "subscription_identifiers":
            field = "subscription_identifier"
        rows.append((spec, field))
    return tuple(rows)


_PROPERTY_FIELDS: Final = {kind: _property_fields(kind) for kind in PROPERTIES_BY_KIND}


def _encode_property_value(spec: PropertySpec, value: Any) -> bytes:
    name = spec.identifier.name
    head = bytes((spec.identifier,))
    wire_type = spec.wire_type
    if wire_type is WireType.UTF8_PAIR:
        try:
            key, val = value
        except (TypeError, ValueError):
            raise LocalProtocolError("user properties must be (name, value) pairs") from None
        return (
            head
            + _encode_utf8(key, "user property name")
            + _encode_utf8(val, "user property value")
        )
    if wire_type is WireType.UTF8_STRING:
        if spec.identifier == PropertyId.RESPONSE_TOPIC:
            validate_topic_name(value)
        return head + _encode_utf8(value, name)
    if wire_type is WireType.BINARY:
        return head + _encode_binary(value, name)
    if type(value) is bool and spec.field in BOOLEAN_FIELDS:
        return head + (b"\x01" if value else b"\x00")
    number = _check_int(value, spec.min_value, spec.max_value, name)
    if wire_type is WireType.FOUR_BYTE_INT:
        return head + _u32(number)
    if wire_type is WireType.TWO_BYTE_INT:
        return head + _u16(number)
    if wire_type is WireType.BYTE:
        return head + bytes((number,))
    return head + _encode_varint(number)


def _encode_properties(packet: object, kind: int) -> bytes:
    """Encode the properties of ``packet`` (property length included)."""
    parts = []
    for spec, field in _PROPERTY_FIELDS[kind]:
        value = getattr(packet, field)
        if value is None:
            continue
        if spec.repeatable and field != "subscription_identifier":
            if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
                raise LocalProtocolError(f"{field} must be a sequence")
            for item in value:
                parts.append(_encode_property_value(spec, item))
        else:
            parts.append(_encode_property_value(spec, value))
    if _auth_data_without_method(packet, kind):
        raise LocalProtocolError("authentication data without an authentication method")
    body = b"".join(parts)
    return _encode_varint(len(body)) + body


def _auth_data_without_method(packet: object, kind: int) -> bool:
    if kind not in (PacketType.CONNECT, PacketType.CONNACK, PacketType.AUTH):
        return False
    return (
        getattr(packet, "authentication_data", None) is not None
        and getattr(packet, "authentication_method", None) is None
    )


def _check_no_properties(packet: object, kind: int, version: int) -> None:
    """On 3.1/3.1.1 every MQTT 5 property must be absent."""
    for _spec, field in _PROPERTY_FIELDS[kind]:
        value = getattr(packet, field)
        if value is not None and value != ():
            raise LocalProtocolError(
                f"{field} is an MQTT 5 property; it cannot be sent with "
                f"{ProtocolVersion(version).name}"
            )
