"""Protocol constants: versions, packet types, QoS levels, reason codes and properties."""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "PacketType",
    "PropertyId",
    "ProtocolVersion",
    "QoS",
    "ReasonCode",
    "RetainHandling",
]


class ProtocolVersion(IntEnum):
    """The protocol level byte carried in CONNECT."""

    MQTT_3_1 = 3
    MQTT_3_1_1 = 4
    MQTT_5_0 = 5


class PacketType(IntEnum):
    """The control packet type: the high nibble of the first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class QoS(IntEnum):
    """Quality of service of a message delivery."""

    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1
    EXACTLY_ONCE = 2


class RetainHandling(IntEnum):
    """Subscription option: when retained messages are sent on subscribe (MQTT 5)."""

    SEND_ON_SUBSCRIBE = 0
    SEND_IF_NEW_SUBSCRIPTION = 1
    DO_NOT_SEND = 2


class PropertyId(IntEnum):
    """MQTT 5 property identifiers (section 2.2.2.2 of the specification)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIERS_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


class ReasonCode(IntEnum):
    """Every MQTT 5 reason code (section 2.4 of the specification).

    Values below 0x80 report success, 0x80 and above failure. Some values have
    more than one name depending on the packet (0x00 is ``SUCCESS`` in an ack,
    ``NORMAL_DISCONNECTION`` in DISCONNECT and ``GRANTED_QOS_0`` in SUBACK);
    those names are aliases of one member.

    MQTT 3.1 and 3.1.1 have no reason codes; their CONNACK return codes and
    SUBACK codes map onto this enum with :meth:`from_connack_return_code`,
    :meth:`to_connack_return_code` and :meth:`to_suback_v3`.
    """

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

    @property
    def is_failure(self) -> bool:
        """True for reason codes 0x80 and above."""
        return self >= 0x80

    @classmethod
    def from_connack_return_code(cls, return_code: int) -> ReasonCode:
        """Map an MQTT 3.1/3.1.1 CONNACK return code (0-5) to a reason code.

        Raises :class:`ValueError` for values the 3.1.1 specification reserves.
        """
        try:
            return _V3_CONNACK_TO_REASON[return_code]
        except KeyError:
            raise ValueError(f"reserved CONNACK return code {return_code}") from None

    def to_connack_return_code(self) -> int:
        """Map this reason code to the closest MQTT 3.1/3.1.1 CONNACK return code.

        The six codes that exist in 3.1.1 map exactly; any other failure maps to
        3 (server unavailable), the 3.1.1 code for "not now, not for you".
        """
        code = _REASON_TO_V3_CONNACK.get(self)
        if code is not None:
            return code
        if self.is_failure:
            return 3
        raise ValueError(f"{self.name} is not a CONNACK reason code")

    def to_suback_v3(self) -> int:
        """Map this reason code to an MQTT 3.1.1 SUBACK return code (0, 1, 2 or 0x80)."""
        if self in (0x00, 0x01, 0x02):
            return int(self)
        if self.is_failure:
            return 0x80
        raise ValueError(f"{self.name} is not a SUBACK reason code")


_V3_CONNACK_TO_REASON: dict[int, ReasonCode] = {
    0: ReasonCode.SUCCESS,
    1: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    2: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    3: ReasonCode.SERVER_UNAVAILABLE,
    4: ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    5: ReasonCode.NOT_AUTHORIZED,
}
_REASON_TO_V3_CONNACK: dict[ReasonCode, int] = {
    reason: code for code, reason in _V3_CONNACK_TO_REASON.items()
}
