"""Tests of the packet classes, the enums, the errors and the public names."""

from __future__ import annotations

import pickle
from typing import Any

import attrs
import pytest

import mqttproto
from mqttproto import (
    AuthPacket,
    ClientIdentifierNotValid,
    ConnAckPacket,
    ConnectPacket,
    ConnectRefusal,
    DisconnectPacket,
    LocalProtocolError,
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    PacketType,
    PingReqPacket,
    PingRespPacket,
    ProtocolError,
    ProtocolVersion,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    QoS,
    ReasonCode,
    ReceiveMaximumExceeded,
    RemoteProtocolError,
    RetainHandling,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    TopicAliasInvalid,
    UnsubAckPacket,
    UnsubscribePacket,
    UnsupportedProtocolVersion,
    Will,
)

EXAMPLES: list[Any] = [
    ConnectPacket(client_id="c", will=Will(topic="w", payload=b"bye")),
    ConnAckPacket(session_present=True),
    PublishPacket(topic="t", payload=b"p", qos=QoS.AT_LEAST_ONCE, packet_id=1),
    PubAckPacket(packet_id=1),
    PubRecPacket(packet_id=1),
    PubRelPacket(packet_id=1),
    PubCompPacket(packet_id=1),
    SubscribePacket(packet_id=1, subscriptions=(Subscription("a/#"),)),
    SubAckPacket(packet_id=1, reason_codes=(ReasonCode.GRANTED_QOS_1,)),
    UnsubscribePacket(packet_id=1, topic_filters=("a/#",)),
    UnsubAckPacket(packet_id=1),
    PingReqPacket(),
    PingRespPacket(),
    DisconnectPacket(),
    AuthPacket(),
    Will(topic="w"),
    Subscription("a/+"),
]
example_ids = [type(p).__name__ for p in EXAMPLES]
examples = pytest.mark.parametrize("packet", EXAMPLES, ids=example_ids)


# ---------------------------------------------------------------------------
# Frozen attrs classes


@examples
def test_frozen(packet: Any) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        packet.not_a_field = 1
    for field in attrs.fields(type(packet)):  # none for PINGREQ and PINGRESP
        before = getattr(packet, field.name)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(packet, field.name, before)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            delattr(packet, field.name)
        assert getattr(packet, field.name) is before


def test_frozen_publish_fields() -> None:
    packet = PublishPacket(topic="t", qos=QoS.AT_LEAST_ONCE, packet_id=1)
    for field, value in [("duplicate", True), ("topic", "u"), ("payload", b"x"), ("qos", 0)]:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(packet, field, value)
    assert packet == PublishPacket(topic="t", qos=QoS.AT_LEAST_ONCE, packet_id=1)


def test_evolve_for_a_resend() -> None:
    packet = PublishPacket(topic="t", payload=b"p", qos=QoS.EXACTLY_ONCE, packet_id=5)
    resend = attrs.evolve(packet, duplicate=True)
    assert resend is not packet
    assert resend.duplicate is True
    assert packet.duplicate is False
    assert resend != packet
    assert attrs.evolve(resend, duplicate=False) == packet
    assert (resend.topic, resend.payload, resend.qos, resend.packet_id) == ("t", b"p", 2, 5)


def test_evolve_keeps_converters() -> None:
    packet = PublishPacket(topic="t")
    evolved = attrs.evolve(packet, user_properties=[("a", "1")], subscription_identifiers=[3])
    assert evolved.user_properties == (("a", "1"),)
    assert evolved.subscription_identifiers == (3,)
    assert packet.user_properties == ()
    assert packet.subscription_identifiers == ()


@examples
def test_equality_and_hash(packet: Any) -> None:
    copy = attrs.evolve(packet)
    assert copy == packet
    assert not copy != packet  # noqa: SIM202 - checks __ne__
    assert hash(copy) == hash(packet)
    assert len({packet, copy}) == 1
    assert packet != object()
    assert packet != None  # noqa: E711 - checks __eq__ against None


def test_inequality() -> None:
    assert PublishPacket(topic="a") != PublishPacket(topic="b")
    assert PublishPacket(topic="a") != PublishPacket(topic="a", user_properties=[("k", "v")])
    assert PublishPacket(topic="a") != PublishPacket(topic="a", content_type="")
    assert ConnAckPacket() != ConnAckPacket(reason_code=ReasonCode.NOT_AUTHORIZED)


def test_acks_of_different_types_differ() -> None:
    """PUBACK, PUBREC, PUBREL and PUBCOMP share a shape but are not equal."""
    acks = [cls(packet_id=1) for cls in (PubAckPacket, PubRecPacket, PubRelPacket, PubCompPacket)]
    for i, first in enumerate(acks):
        for j, second in enumerate(acks):
            assert (first == second) is (i == j)
    assert PingReqPacket() != PingRespPacket()


def test_packet_types() -> None:
    expected = {
        ConnectPacket: 1, ConnAckPacket: 2, PublishPacket: 3, PubAckPacket: 4,
        PubRecPacket: 5, PubRelPacket: 6, PubCompPacket: 7, SubscribePacket: 8,
        SubAckPacket: 9, UnsubscribePacket: 10, UnsubAckPacket: 11, PingReqPacket: 12,
        PingRespPacket: 13, DisconnectPacket: 14, AuthPacket: 15,
    }  # fmt: skip
    for cls, value in expected.items():
        assert cls.packet_type == value
        assert isinstance(cls.packet_type, PacketType)
    assert PacketType.AUTH.name == "AUTH"
    # packet_type is a class constant, not a field.
    assert "packet_type" not in {f.name for f in attrs.fields(PublishPacket)}


def test_defaults() -> None:
    connect = ConnectPacket()
    assert connect.protocol_version == ProtocolVersion.MQTT_5_0
    assert connect.clean_start is True
    assert connect.keep_alive == 60
    assert connect.session_expiry_interval is None
    assert connect.user_properties == ()
    publish = PublishPacket(topic="t")
    assert publish.qos == QoS.AT_MOST_ONCE
    assert publish.packet_id is None
    assert publish.subscription_identifiers == ()
    assert DisconnectPacket().reason_code == ReasonCode.NORMAL_DISCONNECTION
    assert UnsubAckPacket(packet_id=1).reason_codes == ()
    sub = Subscription("a")
    assert (sub.max_qos, sub.no_local, sub.retain_as_published) == (0, False, False)
    assert sub.retain_handling == RetainHandling.SEND_ON_SUBSCRIBE


def test_properties_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        PubAckPacket(1, ReasonCode.SUCCESS, "reason")  # type: ignore[misc]
    assert PubAckPacket(1, ReasonCode.SUCCESS, reason_string="r").reason_string == "r"


# ---------------------------------------------------------------------------
# Converters: sequences become tuples


def test_user_properties_list_becomes_tuple() -> None:
    pairs = [["b", "2"], ("a", "1")]
    packet = PublishPacket(topic="t", user_properties=pairs)
    assert packet.user_properties == (("b", "2"), ("a", "1"))
    assert type(packet.user_properties) is tuple
    assert all(type(pair) is tuple for pair in packet.user_properties)
    pairs.append(("c", "3"))  # the packet keeps no reference to the list
    assert len(packet.user_properties) == 2
    hash(packet)


def test_user_properties_from_a_generator() -> None:
    packet = DisconnectPacket(user_properties=((k, v) for k, v in [("x", "1"), ("x", "2")]))
    assert packet.user_properties == (("x", "1"), ("x", "2"))


def test_repeated_user_property_keys_keep_order() -> None:
    pairs = [("k", "3"), ("a", "x"), ("k", "1"), ("k", "2"), ("a", "x")]
    for cls, kwargs in [
        (PublishPacket, {"topic": "t"}),
        (ConnectPacket, {}),
        (Will, {"topic": "t"}),
        (SubAckPacket, {"packet_id": 1, "reason_codes": [0]}),
        (AuthPacket, {}),
    ]:
        packet = cls(**kwargs, user_properties=pairs)
        assert packet.user_properties == tuple(pairs)
    assert PublishPacket(topic="t", user_properties=pairs) != PublishPacket(
        topic="t", user_properties=sorted(pairs)
    )


def test_sequences_become_tuples() -> None:
    subscribe = SubscribePacket(packet_id=1, subscriptions=[Subscription("a"), Subscription("b")])
    assert subscribe.subscriptions == (Subscription("a"), Subscription("b"))
    assert type(subscribe.subscriptions) is tuple
    suback = SubAckPacket(packet_id=1, reason_codes=[ReasonCode.GRANTED_QOS_0])
    assert type(suback.reason_codes) is tuple
    unsubscribe = UnsubscribePacket(packet_id=1, topic_filters=["a", "b"])
    assert unsubscribe.topic_filters == ("a", "b")
    unsuback = UnsubAckPacket(packet_id=1, reason_codes=[ReasonCode.SUCCESS])
    assert type(unsuback.reason_codes) is tuple
    publish = PublishPacket(topic="t", subscription_identifiers=[1, 2])
    assert publish.subscription_identifiers == (1, 2)
    # Equal whether built from a list or a tuple, and hashable.
    assert subscribe == SubscribePacket(
        packet_id=1, subscriptions=(Subscription("a"), Subscription("b"))
    )
    assert len({subscribe, suback, unsubscribe, unsuback, publish}) == 5


# ---------------------------------------------------------------------------
# Enums


def test_protocol_version_values() -> None:
    assert [int(v) for v in ProtocolVersion] == [3, 4, 5]
    assert ProtocolVersion.MQTT_3_1 == 3
    assert ProtocolVersion.MQTT_3_1_1 == 4
    assert ProtocolVersion.MQTT_5_0 == 5
    assert ProtocolVersion(4) is ProtocolVersion.MQTT_3_1_1
    with pytest.raises(ValueError):
        ProtocolVersion(6)


def test_qos_and_retain_handling_values() -> None:
    assert [int(q) for q in QoS] == [0, 1, 2]
    assert [int(r) for r in RetainHandling] == [0, 1, 2]


def test_reason_code_aliases() -> None:
    assert ReasonCode.SUCCESS is ReasonCode.NORMAL_DISCONNECTION is ReasonCode.GRANTED_QOS_0
    assert ReasonCode(0x00) is ReasonCode.SUCCESS
    assert ReasonCode(0x95) is ReasonCode.PACKET_TOO_LARGE


@pytest.mark.parametrize("code", list(ReasonCode), ids=lambda c: c.name)
def test_is_failure(code: ReasonCode) -> None:
    assert code.is_failure is (code >= 0x80)


V3_CONNACK = [
    (0, ReasonCode.SUCCESS),
    (1, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION),
    (2, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID),
    (3, ReasonCode.SERVER_UNAVAILABLE),
    (4, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
    (5, ReasonCode.NOT_AUTHORIZED),
]


@pytest.mark.parametrize(("return_code", "reason"), V3_CONNACK)
def test_connack_return_codes_map_exactly(return_code: int, reason: ReasonCode) -> None:
    assert ReasonCode.from_connack_return_code(return_code) is reason
    assert reason.to_connack_return_code() == return_code


@pytest.mark.parametrize("return_code", [6, 7, 0x80, 255, -1])
def test_reserved_connack_return_code(return_code: int) -> None:
    with pytest.raises(ValueError):
        ReasonCode.from_connack_return_code(return_code)


@pytest.mark.parametrize(
    "reason",
    [c for c in ReasonCode if c.is_failure and c not in dict(V3_CONNACK).values()],
    ids=lambda c: c.name,
)
def test_other_failures_map_to_server_unavailable(reason: ReasonCode) -> None:
    """Lossy: every failure 3.1.1 cannot name becomes 3 (server unavailable)."""
    assert reason.to_connack_return_code() == 3
    assert ReasonCode.from_connack_return_code(3) is ReasonCode.SERVER_UNAVAILABLE


@pytest.mark.parametrize("reason", [c for c in ReasonCode if 0 < c < 0x80], ids=lambda c: c.name)
def test_other_successes_are_not_connack_codes(reason: ReasonCode) -> None:
    with pytest.raises(ValueError):
        reason.to_connack_return_code()


@pytest.mark.parametrize("reason", list(ReasonCode), ids=lambda c: c.name)
def test_to_suback_v3(reason: ReasonCode) -> None:
    if reason in (ReasonCode.GRANTED_QOS_0, ReasonCode.GRANTED_QOS_1, ReasonCode.GRANTED_QOS_2):
        assert reason.to_suback_v3() == int(reason)
    elif reason.is_failure:
        assert reason.to_suback_v3() == 0x80
    else:
        with pytest.raises(ValueError):
            reason.to_suback_v3()


def test_to_suback_v3_examples() -> None:
    assert ReasonCode.GRANTED_QOS_2.to_suback_v3() == 2
    assert ReasonCode.UNSPECIFIED_ERROR.to_suback_v3() == 0x80
    assert ReasonCode.NOT_AUTHORIZED.to_suback_v3() == 0x80
    assert ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED.to_suback_v3() == 0x80
    with pytest.raises(ValueError):
        ReasonCode.NO_SUBSCRIPTION_EXISTED.to_suback_v3()


# ---------------------------------------------------------------------------
# Errors

ERROR_DEFAULTS = [
    (ProtocolError, ReasonCode.PROTOCOL_ERROR),
    (LocalProtocolError, ReasonCode.PROTOCOL_ERROR),
    (RemoteProtocolError, ReasonCode.PROTOCOL_ERROR),
    (MalformedPacket, ReasonCode.MALFORMED_PACKET),
    (PacketTooLarge, ReasonCode.PACKET_TOO_LARGE),
    (UnsupportedProtocolVersion, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION),
    (ClientIdentifierNotValid, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID),
    (ReceiveMaximumExceeded, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED),
    (TopicAliasInvalid, ReasonCode.TOPIC_ALIAS_INVALID),
]
errors = pytest.mark.parametrize(
    ("cls", "default"), ERROR_DEFAULTS, ids=[cls.__name__ for cls, _ in ERROR_DEFAULTS]
)


@errors
def test_error_default_reason_code(cls: type[ProtocolError], default: ReasonCode) -> None:
    error = cls("went wrong")
    assert error.reason_code is default
    assert str(error) == "went wrong"
    assert isinstance(error, MQTTError)
    assert isinstance(error, Exception)


@errors
def test_error_explicit_reason_code(cls: type[ProtocolError], default: ReasonCode) -> None:
    error = cls("bad topic", ReasonCode.TOPIC_NAME_INVALID)
    assert error.reason_code is ReasonCode.TOPIC_NAME_INVALID


@errors
@pytest.mark.parametrize("reason", [None, ReasonCode.QUOTA_EXCEEDED], ids=["default", "explicit"])
def test_error_pickles(
    cls: type[ProtocolError], default: ReasonCode, reason: ReasonCode | None
) -> None:
    error = cls("message with ünïcode", reason)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error) == "message with ünïcode"
    assert copy.args == error.args
    assert copy.reason_code is error.reason_code
    assert copy.reason_code is (default if reason is None else reason)


def test_error_hierarchy() -> None:
    assert issubclass(ProtocolError, MQTTError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    for cls in (MalformedPacket, PacketTooLarge, UnsupportedProtocolVersion,
                ClientIdentifierNotValid, ConnectRefusal, ReceiveMaximumExceeded,
                TopicAliasInvalid):  # fmt: skip
        assert issubclass(cls, RemoteProtocolError)
        assert not issubclass(cls, LocalProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    # Both CONNECT refusals share the base a server catches to answer CONNACK.
    assert issubclass(UnsupportedProtocolVersion, ConnectRefusal)
    assert issubclass(ClientIdentifierNotValid, ConnectRefusal)


@pytest.mark.parametrize("cls", [UnsupportedProtocolVersion, ClientIdentifierNotValid])
def test_connect_refusal_knows_the_version_to_answer_in(cls: type[ConnectRefusal]) -> None:
    error = cls("refused", protocol_level=4)
    assert error.protocol_version is ProtocolVersion.MQTT_3_1_1
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (copy.reason_code, copy.protocol_level) == (error.reason_code, 4)


@pytest.mark.parametrize(
    ("level", "version"),
    [(None, None), (3, ProtocolVersion.MQTT_3_1), (5, ProtocolVersion.MQTT_5_0), (7, None)],
    ids=["none", "3", "5", "7"],
)
def test_unsupported_protocol_version(level: int | None, version: ProtocolVersion | None) -> None:
    error = UnsupportedProtocolVersion("no", protocol_level=level)
    assert error.protocol_level == level
    assert error.protocol_version is version
    assert error.reason_code is ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UnsupportedProtocolVersion
    assert (str(copy), copy.reason_code, copy.protocol_level) == ("no", error.reason_code, level)
    assert copy.protocol_version is version


def test_unsupported_protocol_version_default_level() -> None:
    error = UnsupportedProtocolVersion("no")
    assert error.protocol_level is None
    assert error.protocol_version is None
    explicit = UnsupportedProtocolVersion("no", ReasonCode.PROTOCOL_ERROR, 9)
    assert (explicit.reason_code, explicit.protocol_level) == (ReasonCode.PROTOCOL_ERROR, 9)
    copy = pickle.loads(pickle.dumps(explicit))
    assert (copy.reason_code, copy.protocol_level) == (ReasonCode.PROTOCOL_ERROR, 9)


# ---------------------------------------------------------------------------
# Public names


@pytest.mark.parametrize("name", mqttproto.__all__)
def test_public_name_importable(name: str) -> None:
    assert hasattr(mqttproto, name)
    namespace: dict[str, Any] = {}
    exec(f"from mqttproto import {name}", namespace)
    assert namespace[name] is getattr(mqttproto, name)


def test_star_import() -> None:
    namespace: dict[str, Any] = {}
    exec("from mqttproto import *", namespace)
    assert set(mqttproto.__all__) <= set(namespace)


def test_all_is_unique_and_complete() -> None:
    assert len(mqttproto.__all__) == len(set(mqttproto.__all__))
    expected = {
        "AuthPacket", "ConnAckPacket", "ConnectPacket", "DisconnectPacket", "PingReqPacket",
        "PingRespPacket", "PubAckPacket", "PubCompPacket", "PubRecPacket", "PubRelPacket",
        "PublishPacket", "SubAckPacket", "SubscribePacket", "Subscription", "UnsubAckPacket",
        "UnsubscribePacket", "Will", "Packet", "ProtocolVersion", "PacketType", "QoS",
        "ReasonCode", "RetainHandling", "PropertyId", "MQTTError", "ProtocolError",
        "LocalProtocolError", "RemoteProtocolError", "MalformedPacket", "PacketTooLarge",
        "UnsupportedProtocolVersion", "ReceiveMaximumExceeded", "TopicAliasInvalid",
        "PacketReader", "decode_packet", "encode_packet", "codec_implementation",
    }  # fmt: skip
    assert expected <= set(mqttproto.__all__)
    assert mqttproto.codec_implementation() in ("python", "cython")
