"""Field readers shared by the pure-Python decoders.

Primitives (variable byte integer, two-byte integer, UTF-8 string, binary
data, packet identifier, reason code), the bounded caches of recently decoded
topic names and user properties, and the general reader of a property block
with its optional limit on the User Properties and Subscription Identifiers
it builds (:class:`PropertyLimit`). Each takes the buffer and the bounds it
may read within (``data``, ``pos``, ``end``), so that no packet body is
copied before it is parsed. The Cython twin calls the property-block reader
of this module rather than keeping a copy of its rules.
"""

from __future__ import annotations

import operator
import re
import sys
from collections.abc import Callable
from typing import Any, Final

from ._codec_common import _QOS, _REASON, _unpack_u32
from ._properties import BOOLEAN_FIELDS, PROPERTIES, PROPERTIES_BY_KIND, WILL, WireType
from .enums import PacketType, ReasonCode
from .errors import MalformedPacket, RemoteProtocolError, TopicAliasInvalid
from .topics import validate_topic_name

# ---------------------------------------------------------------------------
# Primitive readers. Each takes the buffer and the bounds it may read within.


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a variable byte integer; return (value, position after it)."""
    value = 0
    shift = 0
    for count in range(4):
        if pos >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            # [MQTT-1.5.5-1] the encoding must use the minimum number of bytes.
            if count and not byte:
                raise MalformedPacket("variable byte integer is not minimally encoded")
            return value, pos
        shift += 7
    # Four bytes is the limit; a fifth continuation is malformed [MQTT-1.5.5-1].
    raise MalformedPacket("variable byte integer longer than four bytes")


def _read_u16(data: bytes, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return (data[pos] << 8) | data[pos + 1]


def _read_utf8(data: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    """Read a UTF-8 Encoded String: two length bytes, then well-formed UTF-8."""
    if pos + 2 > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    try:
        # Python's strict UTF-8 decoder rejects overlong forms, encoded
        # surrogates U+D800..U+DFFF [MQTT-1.5.4-1] [MQTT-1.5.3-1] and code
        # points past U+10FFFF; it keeps a leading U+FEFF [MQTT-1.5.4-3].
        text = data[pos + 2 : stop].decode()
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not well-formed UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket(f"{what} contains U+0000 [MQTT-1.5.4-2]")
    return text, stop


def _read_binary(data: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return data[pos + 2 : stop], stop


def _read_packet_id(data: bytes, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise MalformedPacket("packet identifier runs past the end of the packet")
    packet_id = (data[pos] << 8) | data[pos + 1]
    if not packet_id:
        # [MQTT-2.2.1-3] (5.0) / [MQTT-2.3.1-1] (3.1.1): identifiers are non-zero.
        raise RemoteProtocolError("packet identifier 0")
    return packet_id


def _reason(code: int, allowed: frozenset[ReasonCode], packet: str) -> ReasonCode:
    reason = _REASON.get(code)
    if reason is None or reason not in allowed:
        raise MalformedPacket(f"reason code 0x{code:02X} is not valid in {packet}")
    return reason


def _check_topic_name(topic: str, *, v5: bool, has_alias: bool) -> None:
    """Raise RemoteProtocolError for a PUBLISH topic name that may not be received."""
    if not topic and v5:
        # A zero-length topic is allowed in MQTT 5 only with a topic alias
        # [MQTT-3.3.2-1] [MQTT-4.7.3-1]. Without one it is not a name this
        # server refuses (0x90) but a broken packet: section 3.3.2.3.4, "It is
        # a Protocol Error if the Topic Name is zero length and there is no
        # Topic Alias", so 0x82. In 3.1.1 it breaks [MQTT-4.7.3-1], as
        # validate_topic_name says (no code is sent: the connection closes).
        if has_alias:
            return
        raise RemoteProtocolError(
            "empty topic name without a topic alias [MQTT-3.3.2-1]", ReasonCode.PROTOCOL_ERROR
        )
    validate_topic_name(topic, error=RemoteProtocolError)


# Topic names seen recently, raw bytes -> validated str. MQTT traffic repeats
# a small set of topics, and a hit skips UTF-8 decoding and the wildcard and
# U+0000 scans; it also shares one str per topic among decoded packets. Only
# short, fully valid names are kept, and the cache is emptied when full, so it
# holds at most _TOPIC_CACHE_SIZE x _TOPIC_CACHE_MAX_LENGTH bytes of names.
_TOPIC_CACHE_SIZE: Final = 4096
_TOPIC_CACHE_MAX_LENGTH: Final = 256
_topic_cache: dict[bytes, str] = {}


def _decode_topic_name(raw: bytes) -> str:
    """Decode a PUBLISH topic name; validity beyond UTF-8 is checked by the caller."""
    try:
        topic = raw.decode()
    except UnicodeDecodeError:
        raise MalformedPacket("topic name is not well-formed UTF-8 [MQTT-1.5.4-1]") from None
    if "\x00" in topic:
        raise MalformedPacket("topic name contains U+0000 [MQTT-1.5.4-2]")
    if topic and "+" not in topic and "#" not in topic and len(raw) <= _TOPIC_CACHE_MAX_LENGTH:
        if len(_topic_cache) >= _TOPIC_CACHE_SIZE:
            _topic_cache.clear()
        _topic_cache[raw] = topic
    return topic


_user_property_cache: dict[bytes, tuple[str, str]] = {}


def _decode_user_property(data: bytes, pos: int, end: int) -> tuple[tuple[str, str], int]:
    """Read a user property (name and value strings) through a bounded cache."""
    start = pos
    if pos + 2 <= end:
        value_at = pos + 2 + ((data[pos] << 8) | data[pos + 1])
        if value_at + 2 <= end:
            stop = value_at + 2 + ((data[value_at] << 8) | data[value_at + 1])
            if stop <= end:
                pair = _user_property_cache.get(data[start:stop])
                if pair is not None:
                    return pair, stop
    key, pos = _read_utf8(data, start, end, "user property name")
    value, stop = _read_utf8(data, pos, end, "user property value")
    if stop - start <= _TOPIC_CACHE_MAX_LENGTH:
        if len(_user_property_cache) >= _TOPIC_CACHE_SIZE:
            _user_property_cache.clear()
        _user_property_cache[data[start:stop]] = (key, value)
    return (key, value), stop


# ---------------------------------------------------------------------------
# The property limits


class PropertyLimit:
    """How many repeatable properties of one property block the decoders build.

    Made by :func:`property_limit` from the ``max_user_properties``,
    ``max_user_property_bytes`` and ``max_subscription_identifiers``
    arguments of ``PacketReader`` and ``decode_packet``; their docstrings
    state the contract. A property block is *past the user-property limit*
    once it holds more than ``count`` User Properties, or their names and
    values take more than ``size`` UTF-8 bytes together; a PUBLISH's block
    is *past the Subscription Identifier limit* once it holds more than
    ``identifiers`` of them (no other packet's: a SUBSCRIBE carries one, and
    a second is a Protocol Error that must stay one).

    From then on, ``skip(data, pos, end, users, identifiers)`` is called
    instead of building the property whose identifier is at ``pos``: it
    walks that property and those directly after it as long as each is a
    User Property (when ``users``) or a Subscription Identifier (when
    ``identifiers``), checks each as :func:`_decode_properties` would, and
    returns the position of the first property it did not walk, or ``end``.
    So a flood that mixes both kinds is walked in one call, once both are
    past their limits. Each twin brings its own ``skip`` (the reference's is
    :func:`_skip_properties`); both raise what the reference's readers
    raise, in the same order.

    A limit is never changed once made: :func:`property_limit` hands the
    same one to every reader with the same values.
    """

    __slots__ = ("count", "identifiers", "size", "skip")

    def __init__(
        self,
        count: int,
        size: int,
        identifiers: int,
        skip: Callable[[bytes, int, int, bool, bool], int],
    ) -> None:
        self.count = count
        self.size = size
        self.identifiers = identifiers
        self.skip = skip


def _limit_value(value: int | None, name: str) -> int:
    if value is None:
        return sys.maxsize
    number = operator.index(value)
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    # The compiled twin keeps the limits as C integers; no block can reach
    # sys.maxsize properties or bytes, so clamping changes nothing.
    return min(number, sys.maxsize)


def property_limit(
    max_user_properties: int | None,
    max_user_property_bytes: int | None,
    max_subscription_identifiers: int | None,
    skip: Callable[[bytes, int, int, bool, bool], int],
) -> PropertyLimit | None:
    """The limit for these arguments, or None when none is set.

    :raises TypeError: for a value that is not an integer.
    :raises ValueError: for a negative value.
    """
    count = _limit_value(max_user_properties, "max_user_properties")
    size = _limit_value(max_user_property_bytes, "max_user_property_bytes")
    identifiers = _limit_value(max_subscription_identifiers, "max_subscription_identifiers")
    if (
        max_user_properties is None
        and max_user_property_bytes is None
        and max_subscription_identifiers is None
    ):
        return None
    # Never changed once made: every reader with the same limits shares one
    # (a server makes a reader per connection, with the config's limits).
    key = (count, size, identifiers, skip)
    limit = _LIMITS.get(key)
    if limit is None:
        if len(_LIMITS) >= 64:
            _LIMITS.clear()
        limit = _LIMITS[key] = PropertyLimit(count, size, identifiers, skip)
    return limit


#: The limits made so far, by their values (see property_limit).
_LIMITS: dict[tuple[int, int, int, Callable[..., int]], PropertyLimit] = {}


_SUBSCRIPTION_IDENTIFIER: Final = PROPERTIES[0x0B]

# A run of Subscription Identifiers that _decode_properties accepts: each a
# Variable Byte Integer of one to four bytes whose last byte is 0x01-0x7F. A
# last byte 0x00 is either not minimally encoded [MQTT-1.5.5-1] or the value
# 0, a Protocol Error (5.0 section 3.3.2.3.8); four bytes cannot exceed
# 268,435,455. Possessive: the engine keeps no backtracking state per item.
_SUBSCRIPTION_IDENTIFIER_RUN: Final = re.compile(rb"(?:\x0b[\x80-\xff]{0,3}[\x01-\x7f])*+")


def _skip_properties(data: bytes, pos: int, end: int, users: bool, identifiers: bool) -> int:
    """Check properties from ``pos`` (an identifier) without keeping them.

    The reference ``PropertyLimit.skip``. Each User Property (when
    ``users``) goes through :func:`_read_utf8` (bounds, well-formed UTF-8
    [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2]) and the strings it built are
    dropped at once. A run of Subscription Identifiers (when
    ``identifiers``) is matched by :data:`_SUBSCRIPTION_IDENTIFIER_RUN`,
    which builds nothing; one it does not match is read as
    :func:`_decode_properties` reads it, which raises its error. So a packet
    past a limit is accepted or refused exactly as without it.
    """
    run = _SUBSCRIPTION_IDENTIFIER_RUN.match
    spec = _SUBSCRIPTION_IDENTIFIER
    while pos < end:
        identifier = data[pos]
        if identifier == 0x26 and users:
            pos = _read_utf8(data, pos + 1, end, "user property name")[1]
            pos = _read_utf8(data, pos, end, "user property value")[1]
        elif identifier == 0x0B and identifiers:
            match = run(data, pos, end)  # it always matches, if only nothing
            after = match.end() if match else pos
            if after == pos:
                value, pos = _read_varint(data, pos + 1, end)
                if not spec.min_value <= value <= spec.max_value:
                    raise RemoteProtocolError(f"{spec.identifier.name} has invalid value {value}")
            else:
                pos = after
        else:
            break
    return pos


# ---------------------------------------------------------------------------
# Properties


def _decode_properties(
    data: bytes, pos: int, end: int, kind: int, limit: PropertyLimit | None
) -> tuple[dict[str, Any], int]:
    """Read a property length and the properties after it; return (fields, position).

    With a ``limit``, User Properties and a PUBLISH's Subscription
    Identifiers past it are checked but not built (see
    :class:`PropertyLimit`); nothing else changes.
    """
    length, pos = _read_varint(data, pos, end)
    if not length:
        return {}, pos
    stop = pos + length
    if stop > end:
        raise MalformedPacket("property length runs past the end of the packet")
    table = PROPERTIES_BY_KIND[kind]
    fields: dict[str, Any] = {}
    # User Properties built so far, and the UTF-8 bytes of their names and values.
    kept = kept_bytes = 0
    # Subscription Identifiers built so far, and how many may be. Only a
    # PUBLISH's are limited: SUBSCRIBE must still refuse a second one.
    identifiers = 0
    max_identifiers = sys.maxsize
    if limit is not None and kind == PacketType.PUBLISH:
        max_identifiers = limit.identifiers
    while pos < stop:
        identifier = data[pos]
        pos += 1
        spec = table.get(identifier)
        if spec is None:
            # Section 2.2.2.2: an identifier not valid for the packet is malformed.
            known = PROPERTIES.get(identifier)
            where = "WILL" if kind == WILL else PacketType(kind).name
            if known is None:
                raise MalformedPacket(f"unknown property identifier 0x{identifier:02X}")
            raise MalformedPacket(f"{known.identifier.name} is not allowed in {where}")
        wire_type = spec.wire_type
        value: Any
        if wire_type is WireType.UTF8_PAIR:
            if limit is not None and (kept > limit.count or kept_bytes > limit.size):
                # Past the limit: the kept ones already say so; the rest are
                # only checked, and so are the Subscription Identifiers among
                # them once those are past their limit too.
                pos = limit.skip(data, pos - 1, stop, True, identifiers > max_identifiers)
                continue
            start = pos
            value, pos = _decode_user_property(data, pos, stop)
            kept += 1
            kept_bytes += pos - start - 4  # less the two length prefixes
        elif wire_type is WireType.UTF8_STRING:
            value, pos = _read_utf8(data, pos, stop, spec.identifier.name)
        elif wire_type is WireType.BINARY:
            value, pos = _read_binary(data, pos, stop, spec.identifier.name)
        else:
            if wire_type is WireType.FOUR_BYTE_INT:
                if pos + 4 > stop:
                    raise MalformedPacket(f"{spec.identifier.name} runs past the properties")
                value = int.from_bytes(data[pos : pos + 4], "big")
                pos += 4
            elif wire_type is WireType.TWO_BYTE_INT:
                value = _read_u16(data, pos, stop, spec.identifier.name)
                pos += 2
            elif wire_type is WireType.BYTE:
                if pos >= stop:
                    raise MalformedPacket(f"{spec.identifier.name} runs past the properties")
                value = data[pos]
                pos += 1
            else:
                # The Subscription Identifier, the one Variable Byte Integer.
                if identifiers > max_identifiers:
                    # Past the limit, as for User Properties above.
                    assert limit is not None
                    users = kept > limit.count or kept_bytes > limit.size
                    pos = limit.skip(data, pos - 1, stop, users, True)
                    continue
                value, pos = _read_varint(data, pos, stop)
                identifiers += 1
            if not spec.min_value <= value <= spec.max_value:
                if identifier == 0x23:
                    # 5.0 section 3.3.4: "A Topic Alias value of 0 [...] is a Protocol
                    # Error, the receiver uses DISCONNECT with Reason Code of 0x94".
                    raise TopicAliasInvalid("TOPIC_ALIAS has invalid value 0")
                # E.g. Receive Maximum 0, Subscription Identifier 0, a flag
                # other than 0 or 1: each is a Protocol Error.
                raise RemoteProtocolError(f"{spec.identifier.name} has invalid value {value}")
        field = spec.field
        if spec.repeatable:
            if kind == PacketType.SUBSCRIBE and field == "subscription_identifiers":
                # SUBSCRIBE carries at most one Subscription Identifier.
                if "subscription_identifier" in fields:
                    raise RemoteProtocolError("SUBSCRIPTION_IDENTIFIER included more than once")
                fields["subscription_identifier"] = value
            elif field in fields:
                fields[field].append(value)
            else:
                fields[field] = [value]
        elif field in fields:
            # Section 2.2.2.2: other properties may appear at most once.
            raise RemoteProtocolError(f"{spec.identifier.name} included more than once")
        else:
            fields[field] = value
    if pos != stop:
        raise MalformedPacket("property overruns the property length")
    for field, value in fields.items():
        if type(value) is list:
            fields[field] = tuple(value)
        elif field in BOOLEAN_FIELDS:
            fields[field] = bool(value)
    if "maximum_qos" in fields:
        fields["maximum_qos"] = _QOS[fields["maximum_qos"]]
    response_topic = fields.get("response_topic")
    if response_topic is not None:
        # [MQTT-3.3.2-13] [MQTT-3.3.2-14] the Response Topic must be a topic
        # name, not a filter. A wildcard (or an empty name) there breaks a
        # rule of the packet's form, not a name this server declines, so it is
        # a Protocol Error, 0x82, and not Topic Name invalid, 0x90 (that code
        # is for the PUBLISH's own Topic Name, section 3.3.2.1).
        try:
            validate_topic_name(response_topic, error=RemoteProtocolError)
        except RemoteProtocolError as error:
            raise RemoteProtocolError(
                f"Response Topic: {error}", ReasonCode.PROTOCOL_ERROR
            ) from None
    if "authentication_data" in fields and "authentication_method" not in fields:
        raise RemoteProtocolError("authentication data without an authentication method")
    return fields, pos


# ---------------------------------------------------------------------------
# The PUBLISH property block, read inline

# PUBLISH property blocks read recently by the inline path below, raw bytes
# (the length byte included) -> (the fields they give, and the user property
# count and size the limit checks saw). A stream repeats its properties (an
# expiry, a few user properties): a hit is one lookup instead of a walk over
# the block. Only blocks the inline path read whole are kept (so each was
# fully validated), and the cache is emptied when full: at most
# _PUBLISH_BLOCK_CACHE_SIZE blocks of at most 128 bytes. The fields dict and
# the tuples in it are shared by the packets, which cannot change them.
_PUBLISH_BLOCK_CACHE_SIZE: Final = 1024
_publish_block_cache: dict[bytes, tuple[dict[str, Any], int, int]] = {}


def _read_publish_properties(
    data: bytes, pos: int, end: int, state: dict[str, Any], limit: PropertyLimit | None
) -> int:
    """Read the PUBLISH property block into ``state``; return the position after it.

    The common properties (message expiry, user properties) are read inline.
    Anything else or anything unusual (a property not allowed in PUBLISH, a
    repeat, an overrun, user properties past the ``limit``) goes to the
    general ``_decode_properties``, which reads the whole block again and
    raises the precise error, so both paths accept exactly the same bytes.
    """
    start = pos
    length = data[pos] if pos < end else 0x80
    stop = pos + 1 + length
    if length < 0x80 and stop <= end:
        # The caller (_decode._decode_publish) has looked the block up in
        # _publish_block_cache: this is a block it did not have, or one past
        # the limit.
        block = data[start:stop]
        pos += 1
        expiry_seen = False
        user_properties: tuple[tuple[str, str], ...] = ()
        user_bytes = needed_bytes = 0
        while pos < stop:
            identifier = data[pos]
            if identifier == 0x26:
                if limit is not None and (
                    len(user_properties) > limit.count or user_bytes > limit.size
                ):
                    break
                # User property: two length-prefixed strings, looked up whole.
                pair = None
                if pos + 3 <= stop:
                    value_at = pos + 3 + ((data[pos + 1] << 8) | data[pos + 2])
                    if value_at + 2 <= stop:
                        pair_end = value_at + 2 + ((data[value_at] << 8) | data[value_at + 1])
                        if pair_end <= stop:
                            pair = _user_property_cache.get(data[pos + 1 : pair_end])
                if pair is None:
                    pair, pair_end = _decode_user_property(data, pos + 1, stop)
                needed_bytes = user_bytes
                user_properties += (pair,)
                user_bytes += pair_end - pos - 5  # less the identifier and two lengths
                pos = pair_end
            elif identifier == 0x02 and pos + 5 <= stop and not expiry_seen:
                state["message_expiry_interval"] = _unpack_u32(data, pos + 1)[0]
                expiry_seen = True
                pos += 5
            else:
                break
        else:
            if user_properties:
                state["user_properties"] = user_properties
            fields: dict[str, Any] = {}
            if expiry_seen:
                fields["message_expiry_interval"] = state["message_expiry_interval"]
            if user_properties:
                fields["user_properties"] = user_properties
            if len(_publish_block_cache) >= _PUBLISH_BLOCK_CACHE_SIZE:
                _publish_block_cache.clear()
            # The limit checks this block passed: the count and size of the
            # user properties before its last one (see the loop above).
            _publish_block_cache[block] = (fields, max(len(user_properties) - 1, 0), needed_bytes)
            return pos
    properties, pos = _decode_properties(data, start, end, PacketType.PUBLISH, limit)
    state.update(properties)
    return pos
