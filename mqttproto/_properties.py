"""The MQTT 5 property table as data (section 2.2.2.2 of the specification).

For every property: its identifier, the packet field it maps to, its wire
type, the packets it may appear in, whether it may repeat, and the values it
may take. The codec reads this table; nothing else in the package hard-codes
which property goes where.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from .enums import PacketType, PropertyId

__all__ = ["PROPERTIES", "PROPERTIES_BY_KIND", "WILL", "PropertySpec", "WireType"]


class WireType(IntEnum):
    BYTE = 1  # one byte with a restricted value set (0/1 flags, maximum QoS)
    TWO_BYTE_INT = 2
    FOUR_BYTE_INT = 3
    VARIABLE_BYTE_INT = 4
    UTF8_STRING = 5
    BINARY = 6
    UTF8_PAIR = 7


# The will properties travel inside CONNECT but form their own property set.
WILL: Final = 0

P = PacketType


class PropertySpec:
    """One row of the property table."""

    __slots__ = (
        "field",
        "identifier",
        "kinds",
        "max_value",
        "min_value",
        "repeatable",
        "wire_type",
    )

    def __init__(
        self,
        identifier: PropertyId,
        field: str,
        wire_type: WireType,
        kinds: tuple[int, ...],
        *,
        min_value: int = 0,
        max_value: int | None = None,
        repeatable: bool = False,
    ) -> None:
        self.identifier = identifier
        self.field = field
        self.wire_type = wire_type
        self.kinds = frozenset(kinds)
        self.repeatable = repeatable
        self.min_value = min_value
        if max_value is None:
            max_value = {
                WireType.BYTE: 1,
                WireType.TWO_BYTE_INT: 0xFFFF,
                WireType.FOUR_BYTE_INT: 0xFFFFFFFF,
                WireType.VARIABLE_BYTE_INT: 268_435_455,
            }.get(wire_type, 0)
        self.max_value = max_value

    def __repr__(self) -> str:
        return f"PropertySpec({self.identifier.name})"


_PUB_ACKS = (P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP)
_WITH_PROPERTIES = (
    P.CONNECT, P.CONNACK, P.PUBLISH, *_PUB_ACKS, P.SUBSCRIBE, P.SUBACK,
    P.UNSUBSCRIBE, P.UNSUBACK, P.DISCONNECT, P.AUTH, WILL,
)  # fmt: skip

Id = PropertyId
W = WireType

PROPERTIES: Final[dict[int, PropertySpec]] = {
    spec.identifier: spec
    for spec in (
        PropertySpec(Id.PAYLOAD_FORMAT_INDICATOR, "payload_format_indicator", W.BYTE,
                     (P.PUBLISH, WILL)),
        PropertySpec(Id.MESSAGE_EXPIRY_INTERVAL, "message_expiry_interval", W.FOUR_BYTE_INT,
                     (P.PUBLISH, WILL)),
        PropertySpec(Id.CONTENT_TYPE, "content_type", W.UTF8_STRING, (P.PUBLISH, WILL)),
        PropertySpec(Id.RESPONSE_TOPIC, "response_topic", W.UTF8_STRING, (P.PUBLISH, WILL)),
        PropertySpec(Id.CORRELATION_DATA, "correlation_data", W.BINARY, (P.PUBLISH, WILL)),
        # PUBLISH may carry several subscription identifiers (one per matching
        # subscription) [MQTT-3.3.4-4]; SUBSCRIBE at most one. The SUBSCRIBE
        # row is handled as a single value by the codec.
        PropertySpec(Id.SUBSCRIPTION_IDENTIFIER, "subscription_identifiers",
                     W.VARIABLE_BYTE_INT, (P.PUBLISH, P.SUBSCRIBE), min_value=1,
                     repeatable=True),
        PropertySpec(Id.SESSION_EXPIRY_INTERVAL, "session_expiry_interval", W.FOUR_BYTE_INT,
                     (P.CONNECT, P.CONNACK, P.DISCONNECT)),
        PropertySpec(Id.ASSIGNED_CLIENT_IDENTIFIER, "assigned_client_identifier",
                     W.UTF8_STRING, (P.CONNACK,)),
        PropertySpec(Id.SERVER_KEEP_ALIVE, "server_keep_alive", W.TWO_BYTE_INT, (P.CONNACK,)),
        PropertySpec(Id.AUTHENTICATION_METHOD, "authentication_method", W.UTF8_STRING,
                     (P.CONNECT, P.CONNACK, P.AUTH)),
        PropertySpec(Id.AUTHENTICATION_DATA, "authentication_data", W.BINARY,
                     (P.CONNECT, P.CONNACK, P.AUTH)),
        PropertySpec(Id.REQUEST_PROBLEM_INFORMATION, "request_problem_information", W.BYTE,
                     (P.CONNECT,)),
        PropertySpec(Id.WILL_DELAY_INTERVAL, "will_delay_interval", W.FOUR_BYTE_INT, (WILL,)),
        PropertySpec(Id.REQUEST_RESPONSE_INFORMATION, "request_response_information", W.BYTE,
                     (P.CONNECT,)),
        PropertySpec(Id.RESPONSE_INFORMATION, "response_information", W.UTF8_STRING,
                     (P.CONNACK,)),
        PropertySpec(Id.SERVER_REFERENCE, "server_reference", W.UTF8_STRING,
                     (P.CONNACK, P.DISCONNECT)),
        PropertySpec(Id.REASON_STRING, "reason_string", W.UTF8_STRING,
                     (P.CONNACK, *_PUB_ACKS, P.SUBACK, P.UNSUBACK, P.DISCONNECT, P.AUTH)),
        PropertySpec(Id.RECEIVE_MAXIMUM, "receive_maximum", W.TWO_BYTE_INT,
                     (P.CONNECT, P.CONNACK), min_value=1),
        PropertySpec(Id.TOPIC_ALIAS_MAXIMUM, "topic_alias_maximum", W.TWO_BYTE_INT,
                     (P.CONNECT, P.CONNACK)),
        PropertySpec(Id.TOPIC_ALIAS, "topic_alias", W.TWO_BYTE_INT, (P.PUBLISH,), min_value=1),
        PropertySpec(Id.MAXIMUM_QOS, "maximum_qos", W.BYTE, (P.CONNACK,)),
        PropertySpec(Id.RETAIN_AVAILABLE, "retain_available", W.BYTE, (P.CONNACK,)),
        PropertySpec(Id.USER_PROPERTY, "user_properties", W.UTF8_PAIR, _WITH_PROPERTIES,
                     repeatable=True),
        PropertySpec(Id.MAXIMUM_PACKET_SIZE, "maximum_packet_size", W.FOUR_BYTE_INT,
                     (P.CONNECT, P.CONNACK), min_value=1),
        PropertySpec(Id.WILDCARD_SUBSCRIPTION_AVAILABLE, "wildcard_subscription_available",
                     W.BYTE, (P.CONNACK,)),
        PropertySpec(Id.SUBSCRIPTION_IDENTIFIERS_AVAILABLE,
                     "subscription_identifiers_available", W.BYTE, (P.CONNACK,)),
        PropertySpec(Id.SHARED_SUBSCRIPTION_AVAILABLE, "shared_subscription_available",
                     W.BYTE, (P.CONNACK,)),
    )
}  # fmt: skip

# Flags that the packet classes expose as bool rather than as 0/1.
BOOLEAN_FIELDS: Final = frozenset(
    {
        "request_problem_information",
        "request_response_information",
        "retain_available",
        "wildcard_subscription_available",
        "subscription_identifiers_available",
        "shared_subscription_available",
    }
)

PROPERTIES_BY_KIND: Final[dict[int, dict[int, PropertySpec]]] = {
    kind: {pid: spec for pid, spec in PROPERTIES.items() if kind in spec.kinds}
    for kind in _WITH_PROPERTIES
}
