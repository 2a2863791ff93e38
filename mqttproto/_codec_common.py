"""Tables and helpers shared by the pure-Python decoder and encoder."""

from __future__ import annotations

import struct
from typing import Any, Final

from .enums import ProtocolVersion, QoS, ReasonCode, RetainHandling

# The largest Remaining Length a four-byte variable byte integer can hold.
MAX_REMAINING_LENGTH: Final = 268_435_455

_V5: Final = 5
_new = object.__new__
_u16 = struct.Struct(">H").pack
_u32 = struct.Struct(">I").pack
_unpack_u32 = struct.Struct(">I").unpack_from

_QOS: Final = (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE)
_RETAIN_HANDLING: Final = tuple(RetainHandling)
_REASON: Final[dict[int, ReasonCode]] = {int(code): code for code in ReasonCode}
_VERSIONS: Final[dict[int, ProtocolVersion]] = {int(v): v for v in ProtocolVersion}


#: How many fields a decoded PUBLISH holds in its ``__dict__`` when it is
#: plain: QoS 0, no DUP or retain flag, no property. The decoders (both
#: twins) write ``topic`` and ``payload`` always and any other field only when
#: it differs from its default, so this one length says it; a packet built
#: any other way (``PublishPacket(...)``, ``attrs.evolve``) holds every field
#: and is never taken for plain. The hot paths of the server role and the
#: broker read it instead of five attributes.
PLAIN_PUBLISH = 2


def _build(cls: type[Any], fields: dict[str, Any]) -> Any:
    """Create a packet from already-validated values, without running __init__.

    Packets are frozen dict-backed attrs classes whose defaults are class
    attributes (see ``packets._packet``), so ``fields`` needs only the values
    the bytes carried. Only the decoder uses this, after checking every value:
    the result equals what ``cls(**fields)`` would build.
    """
    obj = _new(cls)
    obj.__dict__.update(fields)
    return obj


# ---------------------------------------------------------------------------
# Reason codes allowed per packet (MQTT 5, section 2.4 and each packet's table)

_C = ReasonCode
_PUBACK_CODES: Final = frozenset({
    _C.SUCCESS, _C.NO_MATCHING_SUBSCRIBERS, _C.UNSPECIFIED_ERROR,
    _C.IMPLEMENTATION_SPECIFIC_ERROR, _C.NOT_AUTHORIZED, _C.TOPIC_NAME_INVALID,
    _C.PACKET_IDENTIFIER_IN_USE, _C.QUOTA_EXCEEDED, _C.PAYLOAD_FORMAT_INVALID,
})  # fmt: skip
_PUBREL_CODES: Final = frozenset({_C.SUCCESS, _C.PACKET_IDENTIFIER_NOT_FOUND})
_CONNACK_CODES: Final = frozenset({
    _C.SUCCESS, _C.UNSPECIFIED_ERROR, _C.MALFORMED_PACKET, _C.PROTOCOL_ERROR,
    _C.IMPLEMENTATION_SPECIFIC_ERROR, _C.UNSUPPORTED_PROTOCOL_VERSION,
    _C.CLIENT_IDENTIFIER_NOT_VALID, _C.BAD_USER_NAME_OR_PASSWORD, _C.NOT_AUTHORIZED,
    _C.SERVER_UNAVAILABLE, _C.SERVER_BUSY, _C.BANNED, _C.BAD_AUTHENTICATION_METHOD,
    _C.TOPIC_NAME_INVALID, _C.PACKET_TOO_LARGE, _C.QUOTA_EXCEEDED,
    _C.PAYLOAD_FORMAT_INVALID, _C.RETAIN_NOT_SUPPORTED, _C.QOS_NOT_SUPPORTED,
    _C.USE_ANOTHER_SERVER, _C.SERVER_MOVED, _C.CONNECTION_RATE_EXCEEDED,
})  # fmt: skip
_SUBACK_CODES: Final = frozenset({
    _C.GRANTED_QOS_0, _C.GRANTED_QOS_1, _C.GRANTED_QOS_2, _C.UNSPECIFIED_ERROR,
    _C.IMPLEMENTATION_SPECIFIC_ERROR, _C.NOT_AUTHORIZED, _C.TOPIC_FILTER_INVALID,
    _C.PACKET_IDENTIFIER_IN_USE, _C.QUOTA_EXCEEDED,
    _C.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, _C.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
    _C.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
})  # fmt: skip
_SUBACK_V3_CODES: Final = frozenset({0x00, 0x01, 0x02, 0x80})
_UNSUBACK_CODES: Final = frozenset({
    _C.SUCCESS, _C.NO_SUBSCRIPTION_EXISTED, _C.UNSPECIFIED_ERROR,
    _C.IMPLEMENTATION_SPECIFIC_ERROR, _C.NOT_AUTHORIZED, _C.TOPIC_FILTER_INVALID,
    _C.PACKET_IDENTIFIER_IN_USE,
})  # fmt: skip
_DISCONNECT_CODES: Final = frozenset({
    _C.NORMAL_DISCONNECTION, _C.DISCONNECT_WITH_WILL_MESSAGE, _C.UNSPECIFIED_ERROR,
    _C.MALFORMED_PACKET, _C.PROTOCOL_ERROR, _C.IMPLEMENTATION_SPECIFIC_ERROR,
    _C.NOT_AUTHORIZED, _C.SERVER_BUSY, _C.SERVER_SHUTTING_DOWN,
    _C.KEEP_ALIVE_TIMEOUT, _C.SESSION_TAKEN_OVER, _C.TOPIC_FILTER_INVALID,
    _C.TOPIC_NAME_INVALID, _C.RECEIVE_MAXIMUM_EXCEEDED, _C.TOPIC_ALIAS_INVALID,
    _C.PACKET_TOO_LARGE, _C.MESSAGE_RATE_TOO_HIGH, _C.QUOTA_EXCEEDED,
    _C.ADMINISTRATIVE_ACTION, _C.PAYLOAD_FORMAT_INVALID, _C.RETAIN_NOT_SUPPORTED,
    _C.QOS_NOT_SUPPORTED, _C.USE_ANOTHER_SERVER, _C.SERVER_MOVED,
    _C.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, _C.CONNECTION_RATE_EXCEEDED,
    _C.MAXIMUM_CONNECT_TIME, _C.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
    _C.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
})  # fmt: skip
_AUTH_CODES: Final = frozenset({_C.SUCCESS, _C.CONTINUE_AUTHENTICATION, _C.RE_AUTHENTICATE})
