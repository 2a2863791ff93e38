"""``encode_packet`` refuses packets that may not be sent, with LocalProtocolError.

A refused encode raises :class:`~mqttproto.LocalProtocolError` itself (never a
``TypeError``, ``ValueError`` or a remote error class), and its message names
the offending field so that the caller can tell what to fix.
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple

import attrs
import pytest

from mqttproto.enums import ProtocolVersion, QoS, ReasonCode, RetainHandling
from mqttproto.errors import LocalProtocolError
from mqttproto.packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
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

V31 = ProtocolVersion.MQTT_3_1
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
RC = ReasonCode


class Refusal(NamedTuple):
    id: str
    version: ProtocolVersion
    packet: Any
    #: What the error message must mention (compared case-insensitively, with
    #: "_" read as a space): the field, or the words the codec uses for it.
    mentions: str


def _refused(codec: types.ModuleType, packet: Any, version: ProtocolVersion) -> LocalProtocolError:
    with pytest.raises(LocalProtocolError) as info:
        codec.encode_packet(packet, version=version)
    assert type(info.value) is LocalProtocolError
    return info.value


def _mentions(message: str, words: str) -> bool:
    def norm(text: str) -> str:
        return text.lower().replace("_", " ")

    return norm(words) in norm(message)


def connect(version: ProtocolVersion, **fields: Any) -> ConnectPacket:
    fields.setdefault("client_id", "c")
    return ConnectPacket(protocol_version=version, **fields)


# ---------------------------------------------------------------------------
# Every MQTT 5 property field of every packet class, set on a 3.1 / 3.1.1 packet.
#
# Each row: the packet built with one MQTT 5 field set to a valid 5.0 value.
# test_every_property_field_is_listed checks that no field of the packet
# classes is missing from this table.

_V5_ONLY_FIELDS: dict[type, dict[str, Any]] = {
    ConnectPacket: {
        "session_expiry_interval": 10,
        "receive_maximum": 10,
        "maximum_packet_size": 1000,
        "topic_alias_maximum": 5,
        "request_response_information": True,
        "request_problem_information": False,
        "user_properties": [("a", "b")],
        "authentication_method": "m",
        "authentication_data": b"d",
    },
    Will: {
        "will_delay_interval": 5,
        "payload_format_indicator": 1,
        "message_expiry_interval": 5,
        "content_type": "text/plain",
        "response_topic": "r",
        "correlation_data": b"x",
        "user_properties": [("a", "b")],
    },
    ConnAckPacket: {
        "session_expiry_interval": 10,
        "receive_maximum": 10,
        "maximum_qos": QoS.AT_LEAST_ONCE,
        "retain_available": True,
        "maximum_packet_size": 1000,
        "assigned_client_identifier": "id",
        "topic_alias_maximum": 5,
        "reason_string": "r",
        "user_properties": [("a", "b")],
        "wildcard_subscription_available": False,
        "subscription_identifiers_available": False,
        "shared_subscription_available": False,
        "server_keep_alive": 30,
        "response_information": "ri",
        "server_reference": "s",
        "authentication_method": "m",
        "authentication_data": b"d",
    },
    PublishPacket: {
        "payload_format_indicator": 0,
        "message_expiry_interval": 0,
        "topic_alias": 1,
        "response_topic": "r",
        "correlation_data": b"",
        "user_properties": [("a", "b")],
        "subscription_identifiers": [1],
        "content_type": "",
    },
    **{
        cls: {
            "reason_code": code,
            "reason_string": "r",
            "user_properties": [("a", "b")],
        }
        for cls, code in (
            (PubAckPacket, RC.NO_MATCHING_SUBSCRIBERS),
            (PubRecPacket, RC.UNSPECIFIED_ERROR),
            (PubRelPacket, RC.PACKET_IDENTIFIER_NOT_FOUND),
            (PubCompPacket, RC.PACKET_IDENTIFIER_NOT_FOUND),
        )
    },
    SubscribePacket: {"subscription_identifier": 1, "user_properties": [("a", "b")]},
    SubAckPacket: {"reason_string": "r", "user_properties": [("a", "b")]},
    UnsubscribePacket: {"user_properties": [("a", "b")]},
    UnsubAckPacket: {
        "reason_codes": [RC.SUCCESS],
        "reason_string": "r",
        "user_properties": [("a", "b")],
    },
    DisconnectPacket: {
        "reason_code": RC.DISCONNECT_WITH_WILL_MESSAGE,
        "session_expiry_interval": 10,
        "reason_string": "r",
        "user_properties": [("a", "b")],
        "server_reference": "s",
    },
    Subscription: {
        "no_local": True,
        "retain_as_published": True,
        "retain_handling": RetainHandling.SEND_IF_NEW_SUBSCRIPTION,
    },
}

# The fields that exist in every version, per class (everything else is 5.0 only).
_COMMON_FIELDS: dict[type, set[str]] = {
    ConnectPacket: {
        "client_id", "protocol_version", "clean_start", "keep_alive", "username",
        "password", "will",
        # 3.1/3.1.1 only: mosquitto's bridge flag (tests/test_bridge_config.py).
        "bridge",
    },
    Will: {"topic", "payload", "qos", "retain"},
    ConnAckPacket: {"session_present", "reason_code"},
    PublishPacket: {"topic", "payload", "qos", "retain", "duplicate", "packet_id"},
    PubAckPacket: {"packet_id"},
    PubRecPacket: {"packet_id"},
    PubRelPacket: {"packet_id"},
    PubCompPacket: {"packet_id"},
    SubscribePacket: {"packet_id", "subscriptions"},
    SubAckPacket: {"packet_id", "reason_codes"},
    UnsubscribePacket: {"packet_id", "topic_filters"},
    UnsubAckPacket: {"packet_id"},
    DisconnectPacket: set(),
    Subscription: {"topic_filter", "max_qos"},
}


def _with_v5_field(cls: type, field: str, value: Any, version: ProtocolVersion) -> Any:
    """A packet valid for ``version`` except for one MQTT 5 field."""
    if cls is Will:
        return connect(version, will=Will(topic="w", **{field: value}))
    if cls is Subscription:
        return SubscribePacket(1, [Subscription("a", **{field: value})])
    if cls is ConnectPacket:
        return connect(version, **{field: value})
    if cls in (ConnAckPacket, DisconnectPacket):
        return cls(**{field: value})
    if cls is PublishPacket:
        return PublishPacket(topic="t", **{field: value})
    if cls is SubscribePacket:
        return SubscribePacket(1, [Subscription("a")], **{field: value})
    if cls is SubAckPacket:
        return SubAckPacket(1, [RC.GRANTED_QOS_0], **{field: value})
    if cls is UnsubscribePacket:
        return UnsubscribePacket(1, ["a"], **{field: value})
    return cls(packet_id=1, **{field: value})


_V5_ONLY_ROWS = [
    (cls, field, value)
    for cls, fields in _V5_ONLY_FIELDS.items()
    for field, value in fields.items()
]


def test_every_property_field_is_listed() -> None:
    """No MQTT 5 field of a packet class escapes the parametrized test below."""
    for cls, common in _COMMON_FIELDS.items():
        names = {field.name for field in attrs.fields(cls)}
        assert names - common == set(_V5_ONLY_FIELDS[cls]), cls.__name__


@pytest.mark.parametrize("version", [V31, V311], ids=["3.1", "3.1.1"])
@pytest.mark.parametrize(
    ("cls", "field", "value"),
    _V5_ONLY_ROWS,
    ids=[f"{cls.__name__}.{field}" for cls, field, _ in _V5_ONLY_ROWS],
)
def test_v5_only_field_before_5(
    codec: types.ModuleType, version: ProtocolVersion, cls: type, field: str, value: Any
) -> None:
    packet = _with_v5_field(cls, field, value, version)
    error = _refused(codec, packet, version)
    # The message names the field; the ack and DISCONNECT reason code checks
    # say "reason codes".
    assert _mentions(str(error), field) or _mentions(str(error), "reason code"), str(error)
    # The same packet is fine in 5.0 (a CONNECT's version is part of the
    # packet; Authentication Data alone is refused in 5.0 too).
    if field == "authentication_data":
        packet = attrs.evolve(packet, authentication_method="m")
    if cls is UnsubAckPacket and not packet.reason_codes:
        packet = attrs.evolve(packet, reason_codes=[RC.SUCCESS])  # required in 5.0
    if cls not in (ConnectPacket, Will):
        codec.encode_packet(packet, version=V5)
    else:
        codec.encode_packet(attrs.evolve(packet, protocol_version=V5), version=V5)


# ---------------------------------------------------------------------------
# Everything else.

_LONG = "x" * 65_536

REFUSALS: list[Refusal] = [
    # PUBLISH
    Refusal("publish-topic-plus", V311, PublishPacket(topic="a/+"), "topic"),
    Refusal("publish-topic-hash", V5, PublishPacket(topic="#"), "topic"),
    Refusal("publish-topic-empty", V311, PublishPacket(topic=""), "topic"),
    Refusal("publish-topic-empty-without-alias", V5, PublishPacket(topic=""), "topic"),
    Refusal("publish-topic-empty-alias-before-5", V311, PublishPacket(topic="", topic_alias=1),
            "topic"),
    Refusal("publish-qos1-without-packet-id", V311, PublishPacket(topic="t", qos=QoS.AT_LEAST_ONCE),
            "packet identifier"),
    Refusal("publish-qos2-without-packet-id", V5, PublishPacket(topic="t", qos=QoS.EXACTLY_ONCE),
            "packet identifier"),
    Refusal("publish-qos0-with-packet-id", V311, PublishPacket(topic="t", packet_id=1),
            "packet identifier"),
    Refusal("publish-qos0-with-packet-id", V5, PublishPacket(topic="t", packet_id=1),
            "packet identifier"),
    Refusal("publish-dup-on-qos0", V311, PublishPacket(topic="t", duplicate=True), "dup"),
    Refusal("publish-dup-on-qos0", V5, PublishPacket(topic="t", duplicate=True), "dup"),
    Refusal("publish-packet-id-0", V311, PublishPacket(topic="t", qos=1, packet_id=0),
            "packet identifier"),
    Refusal("publish-packet-id-65536", V5, PublishPacket(topic="t", qos=2, packet_id=65_536),
            "packet identifier"),
    Refusal("publish-qos-3", V311, PublishPacket(topic="t", qos=3, packet_id=1), "qos"),  # type: ignore[arg-type]
    Refusal("publish-qos-3", V5, PublishPacket(topic="t", qos=3, packet_id=1), "qos"),  # type: ignore[arg-type]
    Refusal("publish-topic-u0000", V311, PublishPacket(topic="a\x00b"), "topic"),
    Refusal("publish-topic-u0000", V5, PublishPacket(topic="a\x00b"), "topic"),
    Refusal("publish-topic-lone-surrogate", V311, PublishPacket(topic="a\ud800"), "topic"),
    Refusal("publish-topic-lone-surrogate", V5, PublishPacket(topic="\udfff"), "topic"),
    Refusal("publish-topic-too-long", V5, PublishPacket(topic=_LONG), "topic"),
    Refusal("publish-topic-too-long-multibyte", V311, PublishPacket(topic="é" * 32_768),
            "topic"),
    Refusal("publish-topic-alias-0", V5, PublishPacket(topic="t", topic_alias=0), "topic_alias"),
    Refusal("publish-topic-alias-65536", V5, PublishPacket(topic="t", topic_alias=65_536),
            "topic_alias"),
    Refusal("publish-message-expiry-2**32", V5,
            PublishPacket(topic="t", message_expiry_interval=2**32), "message_expiry_interval"),
    Refusal("publish-message-expiry-negative", V5,
            PublishPacket(topic="t", message_expiry_interval=-1), "message_expiry_interval"),
    Refusal("publish-payload-format-indicator-2", V5,
            PublishPacket(topic="t", payload_format_indicator=2), "payload_format_indicator"),
    Refusal("publish-subscription-identifier-0", V5,
            PublishPacket(topic="t", subscription_identifiers=[0]), "subscription identifier"),
    Refusal("publish-subscription-identifier-2**28", V5,
            PublishPacket(topic="t", subscription_identifiers=[1, 2**28]),
            "subscription identifier"),
    Refusal("publish-response-topic-wildcard", V5,
            PublishPacket(topic="t", response_topic="r/#"), "topic"),
    Refusal("publish-content-type-u0000", V5, PublishPacket(topic="t", content_type="a\x00"),
            "content_type"),
    Refusal("publish-content-type-lone-surrogate", V5,
            PublishPacket(topic="t", content_type="\ud800"), "content_type"),
    Refusal("publish-user-property-u0000", V5,
            PublishPacket(topic="t", user_properties=[("k\x00", "v")]), "user property"),
    Refusal("publish-user-property-lone-surrogate", V5,
            PublishPacket(topic="t", user_properties=[("k", "\udc00")]), "user property"),
    Refusal("publish-user-property-too-long", V5,
            PublishPacket(topic="t", user_properties=[("k", _LONG)]), "user property"),
    Refusal("publish-correlation-data-too-long", V5,
            PublishPacket(topic="t", correlation_data=bytes(65_536)), "correlation_data"),
    # Acks
    *[
        Refusal(f"{cls.__name__}-packet-id-{pid}", version, cls(packet_id=pid),
                "packet identifier")
        for cls in (PubAckPacket, PubRecPacket, PubRelPacket, PubCompPacket)
        for pid, version in ((0, V311), (65_536, V5))
    ],
    Refusal("puback-reason-code", V5,
            PubAckPacket(1, reason_code=RC.PACKET_IDENTIFIER_NOT_FOUND), "reason code"),
    Refusal("pubrec-reason-code", V5, PubRecPacket(1, reason_code=RC.SERVER_BUSY),
            "reason code"),
    Refusal("pubrel-reason-code", V5, PubRelPacket(1, reason_code=RC.QUOTA_EXCEEDED),
            "reason code"),
    Refusal("pubcomp-reason-code", V5,
            PubCompPacket(1, reason_code=RC.NO_MATCHING_SUBSCRIBERS), "reason code"),
    Refusal("puback-reason-string-u0000", V5, PubAckPacket(1, reason_string="\x00"),
            "reason_string"),
    # CONNECT
    Refusal("connect-version-mismatch-5-as-3.1.1", V311, ConnectPacket(protocol_version=V5),
            "protocol version"),
    Refusal("connect-version-mismatch-3.1.1-as-5", V5,
            ConnectPacket(protocol_version=V311), "protocol version"),
    Refusal("connect-version-mismatch-3.1-as-3.1.1", V311,
            ConnectPacket(client_id="c", protocol_version=V31), "protocol version"),
    Refusal("connect-password-without-username", V311, connect(V311, password=b"p"),
            "password"),
    Refusal("connect-password-without-username", V31, connect(V31, password=b"p"), "password"),
    Refusal("connect-empty-client-id-without-clean-start", V311,
            ConnectPacket(client_id="", protocol_version=V311, clean_start=False),
            "client identifier"),
    Refusal("connect-3.1-empty-client-id", V31, ConnectPacket(client_id="", protocol_version=V31),
            "client identifier"),
    Refusal("connect-3.1-client-id-over-23", V31,
            ConnectPacket(client_id="c" * 24, protocol_version=V31), "client identifier"),
    Refusal("connect-client-id-u0000", V5, ConnectPacket(client_id="a\x00"),
            "client identifier"),
    Refusal("connect-client-id-lone-surrogate", V311, connect(V311, client_id="\ud800"),
            "client identifier"),
    Refusal("connect-client-id-too-long", V5, ConnectPacket(client_id=_LONG),
            "client identifier"),
    Refusal("connect-username-u0000", V311, connect(V311, username="u\x00"), "user name"),
    Refusal("connect-password-too-long", V5, connect(V5, password=bytes(65_536)), "password"),
    Refusal("connect-keep-alive-65536", V311, connect(V311, keep_alive=65_536), "keep_alive"),
    Refusal("connect-receive-maximum-0", V5, connect(V5, receive_maximum=0), "receive_maximum"),
    Refusal("connect-maximum-packet-size-0", V5, connect(V5, maximum_packet_size=0),
            "maximum_packet_size"),
    Refusal("connect-session-expiry-2**32", V5, connect(V5, session_expiry_interval=2**32),
            "session_expiry_interval"),
    Refusal("connect-topic-alias-maximum-65536", V5, connect(V5, topic_alias_maximum=65_536),
            "topic_alias_maximum"),
    Refusal("connect-authentication-data-without-method", V5,
            connect(V5, authentication_data=b"d"), "authentication"),
    Refusal("connect-user-property-lone-surrogate", V5,
            connect(V5, user_properties=[("\ud800", "v")]), "user property"),
    Refusal("connect-will-topic-wildcard", V311, connect(V311, will=Will(topic="w/+")), "topic"),
    Refusal("connect-will-topic-empty", V5, connect(V5, will=Will(topic="")), "topic"),
    Refusal("connect-will-topic-u0000", V5, connect(V5, will=Will(topic="w\x00")), "topic"),
    Refusal("connect-will-qos-3", V311, connect(V311, will=Will(topic="w", qos=3)), "qos"),  # type: ignore[arg-type]
    Refusal("connect-will-message-expiry-2**32", V5,
            connect(V5, will=Will(topic="w", message_expiry_interval=2**32)),
            "message_expiry_interval"),
    Refusal("connect-will-payload-too-long", V311,
            connect(V311, will=Will(topic="w", payload=bytes(65_536))), "will payload"),
    # CONNACK
    Refusal("connack-session-present-with-refusal", V311,
            ConnAckPacket(session_present=True, reason_code=RC.NOT_AUTHORIZED), "session present"),
    Refusal("connack-session-present-with-refusal", V5,
            ConnAckPacket(session_present=True, reason_code=RC.BANNED), "session present"),
    Refusal("connack-3.1-session-present", V31, ConnAckPacket(session_present=True),
            "session present"),
    Refusal("connack-reason-code", V5, ConnAckPacket(reason_code=RC.GRANTED_QOS_1),
            "reason code"),
    Refusal("connack-reason-code", V311, ConnAckPacket(reason_code=RC.GRANTED_QOS_2),
            "reason code"),
    Refusal("connack-receive-maximum-0", V5, ConnAckPacket(receive_maximum=0), "receive_maximum"),
    Refusal("connack-maximum-qos-2", V5, ConnAckPacket(maximum_qos=QoS.EXACTLY_ONCE),
            "maximum_qos"),
    Refusal("connack-server-keep-alive-65536", V5, ConnAckPacket(server_keep_alive=65_536),
            "server_keep_alive"),
    Refusal("connack-assigned-client-identifier-u0000", V5,
            ConnAckPacket(assigned_client_identifier="\x00"), "assigned_client_identifier"),
    # SUBSCRIBE
    Refusal("subscribe-empty", V311, SubscribePacket(1, []), "subscription"),
    Refusal("subscribe-empty", V5, SubscribePacket(1, []), "subscription"),
    Refusal("subscribe-packet-id-0", V5, SubscribePacket(0, [Subscription("a")]),
            "packet identifier"),
    Refusal("subscribe-packet-id-65536", V311, SubscribePacket(65_536, [Subscription("a")]),
            "packet identifier"),
    Refusal("subscribe-qos-3", V311, SubscribePacket(1, [Subscription("a", 3)]), "qos"),  # type: ignore[arg-type]
    Refusal("subscribe-retain-handling-3", V5,
            SubscribePacket(1, [Subscription("a", retain_handling=3)]), "retain handling"),  # type: ignore[arg-type]
    Refusal("subscribe-no-local-on-shared", V5,
            SubscribePacket(1, [Subscription("$share/g/a", no_local=True)]), "no local"),
    Refusal("subscribe-shared-without-filter", V5, SubscribePacket(1, [Subscription("$share/g")]),
            "shared subscription"),
    Refusal("subscribe-shared-empty-share-name", V5,
            SubscribePacket(1, [Subscription("$share//a")]), "sharename"),
    Refusal("subscribe-filter-invalid", V311, SubscribePacket(1, [Subscription("a/#/b")]),
            "topic filter"),
    Refusal("subscribe-filter-empty", V5, SubscribePacket(1, [Subscription("")]),
            "topic filter"),
    Refusal("subscribe-filter-u0000", V5, SubscribePacket(1, [Subscription("a\x00")]),
            "topic filter"),
    Refusal("subscribe-filter-lone-surrogate", V311,
            SubscribePacket(1, [Subscription("\ud800")]), "topic filter"),
    Refusal("subscribe-subscription-identifier-0", V5,
            SubscribePacket(1, [Subscription("a")], subscription_identifier=0),
            "subscription identifier"),
    Refusal("subscribe-subscription-identifier-2**28", V5,
            SubscribePacket(1, [Subscription("a")], subscription_identifier=2**28),
            "subscription identifier"),
    # SUBACK
    Refusal("suback-empty", V311, SubAckPacket(1, []), "reason code"),
    Refusal("suback-empty", V5, SubAckPacket(1, []), "reason code"),
    Refusal("suback-reason-code", V5, SubAckPacket(1, [RC.NO_MATCHING_SUBSCRIBERS]),
            "reason code"),
    Refusal("suback-reason-code", V311, SubAckPacket(1, [RC.NO_SUBSCRIPTION_EXISTED]),
            "reason code"),
    # UNSUBSCRIBE, UNSUBACK
    Refusal("unsubscribe-empty", V311, UnsubscribePacket(1, []), "topic filter"),
    Refusal("unsubscribe-empty", V5, UnsubscribePacket(1, []), "topic filter"),
    Refusal("unsubscribe-filter-invalid", V5, UnsubscribePacket(1, ["a+"]), "topic filter"),
    Refusal("unsubscribe-packet-id-0", V311, UnsubscribePacket(0, ["a"]), "packet identifier"),
    Refusal("unsuback-5.0-without-codes", V5, UnsubAckPacket(1), "reason code"),
    Refusal("unsuback-reason-code", V5, UnsubAckPacket(1, [RC.GRANTED_QOS_2]), "reason code"),
    Refusal("unsuback-packet-id-0", V311, UnsubAckPacket(0), "packet identifier"),
    # DISCONNECT
    Refusal("disconnect-reason-code", V5,
            DisconnectPacket(reason_code=RC.CONTINUE_AUTHENTICATION), "reason code"),
    Refusal("disconnect-server-reference-u0000", V5, DisconnectPacket(server_reference="\x00"),
            "server_reference"),
    # AUTH
    Refusal("auth-before-5", V311, AuthPacket(), "auth"),
    Refusal("auth-before-5", V31, AuthPacket(), "auth"),
    Refusal("auth-reason-code", V5, AuthPacket(reason_code=RC.NOT_AUTHORIZED), "reason code"),
    Refusal("auth-data-without-method", V5, AuthPacket(authentication_data=b"d"),
            "authentication"),
]


def _label(refusal: Refusal) -> str:
    version = {V31: "3.1", V311: "3.1.1", V5: "5.0"}[refusal.version]
    return f"{refusal.id}[{version}]"


def test_refusal_ids_are_unique() -> None:
    labels = [_label(refusal) for refusal in REFUSALS]
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize("refusal", REFUSALS, ids=[_label(r) for r in REFUSALS])
def test_refused(codec: types.ModuleType, refusal: Refusal) -> None:
    error = _refused(codec, refusal.packet, refusal.version)
    assert _mentions(str(error), refusal.mentions), str(error)


def test_refusal_does_not_poison_later_encodes(codec: types.ModuleType) -> None:
    """A refused packet leaves the encoder as it was: the valid form still encodes."""
    _refused(codec, PublishPacket(topic="t", packet_id=1), V5)
    assert codec.encode_packet(PublishPacket(topic="t"), version=V5) == b"\x30\x04\x00\x01t\x00"
    _refused(codec, PublishPacket(topic="t/+"), V5)
    _refused(codec, PublishPacket(topic="t/+"), V5)
    _refused(codec, PublishPacket(topic="t", user_properties=[("a\x00", "b")]), V5)
    _refused(codec, PublishPacket(topic="t", user_properties=[("a\x00", "b")]), V5)
