"""``encode_ack`` and ``encode_publish_split``: encoding without a packet per send.

Both promise what ``encode_packet`` gives:

- ``encode_ack(packet_type, packet_id, reason_code, version=...)`` returns the
  bytes of ``encode_packet(cls(packet_id, reason_code), version=...)`` for the
  acknowledgement class of ``packet_type``, or raises what that raises;
- ``encode_publish_split(packet, version=...)`` returns ``(head, tail)`` with
  ``head + id.to_bytes(2, "big") + tail == encode_packet(attrs.evolve(packet,
  packet_id=id), version=...)`` for every packet identifier ``id`` (QoS 0:
  the whole packet and ``b""``), and refuses what ``encode_packet`` refuses,
  except a QoS 1/2 packet's own identifier, which it ignores;
- ``PreparedPublish(packet, version=...)`` holds that split as ``head`` and
  ``tail``, with ``packet`` and ``version`` as given, ``v5``, the packet's
  ``qos`` and ``size``, the bytes on the wire; it refuses what
  ``encode_publish_split`` refuses, and no attribute can be set or deleted.

Every test takes the ``codec`` fixture, so both twins are held to this.
"""

from __future__ import annotations

import copy
import gc
import inspect
import pickle
import types
import weakref
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import PUBACK_CODES, PUBREL_CODES, VERSIONS, publish_packets
from test_encode_errors import _V5_ONLY_FIELDS, REFUSALS, _label

from mqttproto import codec as public_codec
from mqttproto._codec_common import PLAIN_PUBLISH
from mqttproto.enums import PacketType, ProtocolVersion, QoS, ReasonCode
from mqttproto.errors import LocalProtocolError
from mqttproto.packets import (
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
)

V31 = ProtocolVersion.MQTT_3_1
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
VERSION_IDS = {V31: "3.1", V311: "3.1.1", V5: "5.0"}

codec_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """The result, or the exception's class and message."""
    try:
        return ("returned", fn())
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def test_public_names() -> None:
    """Both are exported from mqttproto.codec (and mqttproto, for encode_ack)."""
    import mqttproto

    assert public_codec.encode_ack is mqttproto.encode_ack
    assert callable(public_codec.encode_publish_split)
    assert public_codec.PreparedPublish is mqttproto.PreparedPublish


# ---------------------------------------------------------------------------
# encode_ack

ACKS: list[tuple[PacketType, type[Any], tuple[ReasonCode, ...]]] = [
    (PacketType.PUBACK, PubAckPacket, PUBACK_CODES),
    (PacketType.PUBREC, PubRecPacket, PUBACK_CODES),
    (PacketType.PUBREL, PubRelPacket, PUBREL_CODES),
    (PacketType.PUBCOMP, PubCompPacket, PUBREL_CODES),
]
ACK_IDS = [kind.name for kind, _, _ in ACKS]
PACKET_IDS = (1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x1234, 0xFFFE, 0xFFFF)


@pytest.mark.parametrize(("kind", "cls", "codes"), ACKS, ids=ACK_IDS)
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
def test_ack_is_encode_packet(
    codec: types.ModuleType,
    kind: PacketType,
    cls: type[Any],
    codes: tuple[ReasonCode, ...],
    version: ProtocolVersion,
) -> None:
    """Every allowed reason code (5.0; success alone before), every kind of id."""
    allowed = codes if version == V5 else (ReasonCode.SUCCESS,)
    for packet_id in PACKET_IDS:
        expected = codec.encode_packet(cls(packet_id), version=version)
        assert codec.encode_ack(kind, packet_id, version=version) == expected
        assert codec.encode_ack(int(kind), packet_id, 0, version=version) == expected
        for code in allowed:
            expected = codec.encode_packet(cls(packet_id, code), version=version)
            got = codec.encode_ack(kind, packet_id, code, version=version)
            assert type(got) is bytes
            assert got == expected
            # Plain ints are the same arguments.
            assert codec.encode_ack(int(kind), packet_id, int(code), version=version) == expected
            # Success is the short form (section 3.4.2.1), any other code the long one.
            assert len(got) == (4 if code == ReasonCode.SUCCESS else 5)
            assert got[2:4] == packet_id.to_bytes(2, "big")


def test_ack_known_bytes(codec: types.ModuleType) -> None:
    """A few spelled out, independent of encode_packet."""
    assert codec.encode_ack(PacketType.PUBACK, 1, version=V311) == b"\x40\x02\x00\x01"
    assert codec.encode_ack(PacketType.PUBREC, 0x1234, version=V31) == b"\x50\x02\x12\x34"
    # PUBREL's fixed header flags are 0010 [MQTT-3.6.1-1].
    assert codec.encode_ack(PacketType.PUBREL, 0xFFFF, version=V5) == b"\x62\x02\xff\xff"
    assert (
        codec.encode_ack(PacketType.PUBCOMP, 7, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, version=V5)
        == b"\x70\x03\x00\x07\x92"
    )
    assert codec.encode_ack(PacketType.PUBACK, 9, 0x97, version=V5) == b"\x40\x03\x00\x09\x97"


def _refusal(fn: Callable[[], Any], error: type[Exception] = LocalProtocolError) -> str:
    with pytest.raises(error) as info:
        fn()
    assert type(info.value) is error
    return str(info.value)


@pytest.mark.parametrize(("kind", "cls", "codes"), ACKS, ids=ACK_IDS)
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
@pytest.mark.parametrize("packet_id", [0, -1, 0x10000, 2**70, None, 1.0, True, "1"])
def test_ack_bad_packet_id(
    codec: types.ModuleType,
    kind: PacketType,
    cls: type[Any],
    codes: tuple[ReasonCode, ...],
    version: ProtocolVersion,
    packet_id: Any,
) -> None:
    message = _refusal(lambda: codec.encode_ack(kind, packet_id, version=version))
    assert "packet identifier" in message
    assert message == _refusal(lambda: codec.encode_packet(cls(packet_id), version=version))


@pytest.mark.parametrize(("kind", "cls", "codes"), ACKS, ids=ACK_IDS)
def test_ack_code_not_allowed(
    codec: types.ModuleType, kind: PacketType, cls: type[Any], codes: tuple[ReasonCode, ...]
) -> None:
    """Every other reason code, and values that are no reason code at all, in 5.0."""
    refused: list[Any] = [code for code in ReasonCode if code not in codes]
    refused += [0x100, -1, 2**70, None, 0.0, 16.0, False, True, "0", b"\x00"]
    for code in refused:
        message = _refusal(lambda code=code: codec.encode_ack(kind, 1, code, version=V5))
        assert "reason code" in message, message
        assert message == _refusal(lambda code=code: codec.encode_packet(cls(1, code), version=V5))


@pytest.mark.parametrize(("kind", "cls", "codes"), ACKS, ids=ACK_IDS)
@pytest.mark.parametrize("version", [V31, V311], ids=VERSION_IDS.get)
def test_ack_code_before_5(
    codec: types.ModuleType,
    kind: PacketType,
    cls: type[Any],
    codes: tuple[ReasonCode, ...],
    version: ProtocolVersion,
) -> None:
    """Reason codes exist in MQTT 5 only: any other than success is refused."""
    for code in [*codes[1:], ReasonCode.SERVER_BUSY, 0x10, 1, None, True]:
        message = _refusal(lambda code=code: codec.encode_ack(kind, 1, code, version=version))
        assert "MQTT 5 only" in message
        assert message == _refusal(
            lambda code=code: codec.encode_packet(cls(1, code), version=version)
        )


@pytest.mark.parametrize(
    "packet_type",
    [kind for kind in PacketType if kind not in (4, 5, 6, 7)] + [0, 3, 8, 16, -4, None, "PUBACK"],
)
def test_ack_not_an_ack(codec: types.ModuleType, packet_type: Any) -> None:
    for version in VERSIONS:
        message = _refusal(
            lambda version=version: codec.encode_ack(packet_type, 1, version=version), ValueError
        )
        assert "not a publish acknowledgement" in message
    # Before the other arguments are looked at.
    _refusal(lambda: codec.encode_ack(packet_type, 0, 0x80, version=7), ValueError)


@pytest.mark.parametrize("version", [7, 2, None, "5", 5.5, 6])
def test_ack_unknown_version(codec: types.ModuleType, version: Any) -> None:
    message = _refusal(lambda: codec.encode_ack(PacketType.PUBACK, 1, version=version), ValueError)
    assert message == _refusal(
        lambda: codec.encode_packet(PubAckPacket(1), version=version), ValueError
    )
    # The version is checked before the packet identifier, as encode_packet does.
    message = _refusal(lambda: codec.encode_ack(PacketType.PUBACK, 0, version=version), ValueError)
    assert "version" in message


def test_ack_version_as_int(codec: types.ModuleType) -> None:
    """A version given as its int is the same version (as for encode_packet)."""
    for version in VERSIONS:
        for kind, cls, codes in ACKS:
            for code in codes if version == V5 else codes[:1]:
                assert codec.encode_ack(kind, 3, code, version=int(version)) == (
                    codec.encode_packet(cls(3, code), version=version)
                )


# Arguments of every shape, good and bad: encode_ack answers as encode_packet
# answers for the packet built from them, result or exception and message.
ANY_VALUE = st.sampled_from(
    [None, True, False, 0, 1, 2, 0x10, 0x80, 0x92, 0x97, 0xFF, 0x100, 0xFFFF, 0x10000, -1,
     2**70, 1.0, 0.0, "1", b"\x01", ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS,
     ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, ReasonCode.QUOTA_EXCEEDED, ReasonCode.SERVER_BUSY,
     QoS.AT_LEAST_ONCE]
)  # fmt: skip


@codec_settings
@given(
    ack=st.sampled_from(ACKS),
    as_int=st.booleans(),
    packet_id=st.integers(-2, 0x10001) | ANY_VALUE,
    reason_code=st.sampled_from(list(ReasonCode)) | st.integers(-1, 0x100) | ANY_VALUE,
    version=st.sampled_from([*VERSIONS, 3, 4, 5, 7, None]),
)
@example(ack=ACKS[0], as_int=False, packet_id=0, reason_code=0x80, version=7)
@example(ack=ACKS[2], as_int=True, packet_id=None, reason_code=None, version=V5)
@example(ack=ACKS[1], as_int=False, packet_id=1, reason_code=False, version=V311)
def test_ack_matches_encode_packet(
    codec: types.ModuleType,
    ack: tuple[PacketType, type[Any], tuple[ReasonCode, ...]],
    as_int: bool,
    packet_id: Any,
    reason_code: Any,
    version: Any,
) -> None:
    kind, cls, _ = ack
    packet_type = int(kind) if as_int else kind
    assert outcome(
        lambda: codec.encode_ack(packet_type, packet_id, reason_code, version=version)
    ) == outcome(lambda: codec.encode_packet(cls(packet_id, reason_code), version=version))


# ---------------------------------------------------------------------------
# encode_publish_split

SPLICE_IDS = st.lists(
    st.sampled_from((1, 0xFF, 0x100, 0xFFFF)) | st.integers(1, 0xFFFF), min_size=1, max_size=12
)
FULL = PublishPacket(
    "a/b",
    b"\x00payload\xff" * 20,
    QoS.EXACTLY_ONCE,
    retain=True,
    duplicate=True,
    packet_id=9,
    payload_format_indicator=1,
    message_expiry_interval=0xFFFFFFFF,
    topic_alias=0xFFFF,
    response_topic="re/sponse",
    correlation_data=b"\x00\x01",
    user_properties=(("k", "v"), ("é", ""), ("k", "v2")),
    subscription_identifiers=(1, 127, 128, 16_384, 2_097_152, 268_435_455),
    content_type="text/plain",
)


def check_split(
    codec: types.ModuleType, packet: PublishPacket, version: ProtocolVersion, ids: list[int]
) -> tuple[bytes, bytes]:
    head, tail = codec.encode_publish_split(packet, version=version)
    assert type(head) is bytes
    assert type(tail) is bytes
    if not packet.qos:
        assert tail == b""
        assert head == codec.encode_packet(packet, version=version)
        return head, tail
    for packet_id in {*ids, 1, 0xFFFF}:
        expected = codec.encode_packet(attrs.evolve(packet, packet_id=packet_id), version=version)
        assert head + packet_id.to_bytes(2, "big") + tail == expected
    return head, tail


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
@codec_settings
@given(data=st.data())
def test_split_identity(codec: types.ModuleType, version: ProtocolVersion, data: Any) -> None:
    packet = data.draw(publish_packets(version), label="packet")
    ids = data.draw(SPLICE_IDS, label="ids")
    head, tail = check_split(codec, packet, version, ids)
    if packet.qos:
        # The packet's own identifier is ignored: any, or none, gives the same.
        for own in (None, 0, 0x10000, "x", 1.5, ids[0]):
            assert codec.encode_publish_split(
                attrs.evolve(packet, packet_id=own), version=version
            ) == (head, tail)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
@pytest.mark.parametrize("qos", list(QoS), ids=[q.name for q in QoS])
@pytest.mark.parametrize("retain", [False, True], ids=["", "retain"])
@pytest.mark.parametrize("duplicate", [False, True], ids=["", "dup"])
def test_split_flags(
    codec: types.ModuleType, version: ProtocolVersion, qos: QoS, retain: bool, duplicate: bool
) -> None:
    """QoS, retain and DUP land in the head's first byte; long packets too."""
    if duplicate and not qos:
        return  # refused, [MQTT-3.3.1-2]: test_split_refuses
    fields: dict[str, Any] = {}
    if version == V5:
        fields = {
            name: getattr(FULL, name)
            for name in ("payload_format_indicator", "message_expiry_interval", "topic_alias",
                         "response_topic", "correlation_data", "user_properties",
                         "subscription_identifiers", "content_type")
        }  # fmt: skip
    for topic, payload in (("t", b""), ("a/b", bytes(200)), ("x" * 300, bytes(20_000))):
        packet = PublishPacket(
            topic,
            payload,
            qos,
            retain=retain,
            duplicate=duplicate,
            packet_id=5 if qos else None,
            **fields,
        )
        head, _ = check_split(codec, packet, version, [1, 0x1234, 0xFFFF])
        assert head[0] == 0x30 | (qos << 1) | (0x08 if duplicate else 0) | (1 if retain else 0)


def test_split_known_bytes(codec: types.ModuleType) -> None:
    """Every PUBLISH property, spelled out: in the order of their identifiers."""
    packet = PublishPacket(
        "a",
        b"p",
        QoS.AT_LEAST_ONCE,
        packet_id=None,
        payload_format_indicator=1,
        message_expiry_interval=0x01020304,
        content_type="c",
        response_topic="r",
        correlation_data=b"d",
        subscription_identifiers=(1, 128),
        topic_alias=5,
        user_properties=(("k", "v"),),
    )
    head, tail = codec.encode_publish_split(packet, version=V5)
    assert head == b"\x32\x29\x00\x01a"
    assert tail == bytes.fromhex(
        "22"  # property length, 34
        "0101"  # Payload Format Indicator
        "0201020304"  # Message Expiry Interval
        "03000163"  # Content Type "c"
        "08000172"  # Response Topic "r"
        "09000164"  # Correlation Data b"d"
        "0b01" "0b8001"  # Subscription Identifiers 1 and 128
        "230005"  # Topic Alias
        "260001" "6b" "000176"  # User Property ("k", "v")
        "70"  # payload
    )  # fmt: skip
    assert codec.encode_packet(attrs.evolve(packet, packet_id=0x0102), version=V5) == (
        head + b"\x01\x02" + tail
    )


def test_split_empty_topic_with_alias(codec: types.ModuleType) -> None:
    """In 5.0 a Topic Alias may stand for the topic name [MQTT-3.3.2-1]."""
    packet = PublishPacket("", b"p", QoS.AT_LEAST_ONCE, packet_id=3, topic_alias=2)
    head, tail = check_split(codec, packet, V5, [3])
    assert head == b"\x32\x09\x00\x00"
    assert tail == b"\x03\x23\x00\x02p"


# The PUBLISH rows of test_encode_errors, and every MQTT 5 field on 3.1/3.1.1.
PUBLISH_REFUSALS: list[tuple[str, ProtocolVersion, PublishPacket]] = [
    (_label(r), r.version, r.packet) for r in REFUSALS if type(r.packet) is PublishPacket
] + [
    (f"{field}[{VERSION_IDS[version]}]", version, PublishPacket("t", **{field: value}))
    for field, value in _V5_ONLY_FIELDS[PublishPacket].items()
    for version in (V31, V311)
]


def _refused_for_its_id(packet: PublishPacket) -> bool:
    """QoS 1/2 with a bad identifier: the split does not use that identifier."""
    packet_id = packet.packet_id
    return packet.qos in (1, 2) and not (type(packet_id) is int and 0 < packet_id <= 0xFFFF)


@pytest.mark.parametrize(
    ("version", "packet"),
    [(version, packet) for _, version, packet in PUBLISH_REFUSALS],
    ids=[label for label, _, _ in PUBLISH_REFUSALS],
)
@pytest.mark.parametrize("qos", [None, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE])
def test_split_refuses(
    codec: types.ModuleType, version: ProtocolVersion, packet: PublishPacket, qos: QoS | None
) -> None:
    """What encode_packet refuses, the split refuses with the same message;
    the same packet at QoS 1 and 2 too (where a row refused only for its QoS
    becomes a packet to split)."""
    if qos is not None:
        packet = attrs.evolve(packet, qos=qos, packet_id=packet.packet_id or 1)
    refused = outcome(lambda: codec.encode_packet(packet, version=version))
    if refused[0] == "returned":
        assert qos is not None
        check_split(codec, packet, version, [1, 2, 0xFFFF])
        return
    if _refused_for_its_id(packet):
        assert refused[0] == "raised"
        assert "packet identifier" in refused[2]
        check_split(codec, packet, version, [1, 2, 0xFFFF])
        return
    assert refused[:2] == ("raised", LocalProtocolError)
    assert outcome(lambda: codec.encode_publish_split(packet, version=version)) == refused


def test_split_refuses_not_a_publish(codec: types.ModuleType) -> None:
    for thing in (None, PubAckPacket(1), SubAckPacket(1, [ReasonCode.SUCCESS]), "t", object()):
        message = _refusal(
            lambda thing=thing: codec.encode_publish_split(thing, version=V5), TypeError
        )
        assert "not a PUBLISH packet" in message


@pytest.mark.parametrize("version", [7, 2, None, "5", 5.5])
@pytest.mark.parametrize(
    "packet",
    [
        PublishPacket("t"),
        PublishPacket("t", packet_id=1),  # refused for QoS 0, but the version comes first
        PublishPacket("t", qos=QoS.AT_LEAST_ONCE),
    ],
)
def test_split_unknown_version(
    codec: types.ModuleType, version: Any, packet: PublishPacket
) -> None:
    message = _refusal(lambda: codec.encode_publish_split(packet, version=version), ValueError)
    assert message == _refusal(
        lambda: codec.encode_packet(PublishPacket("t"), version=version), ValueError
    )


def test_split_version_as_int(codec: types.ModuleType) -> None:
    for version in VERSIONS:
        packet = FULL if version == V5 else PublishPacket("a", b"x", QoS.AT_LEAST_ONCE)
        assert codec.encode_publish_split(packet, version=int(version)) == (
            codec.encode_publish_split(packet, version=version)
        )


def test_split_refusal_does_not_poison(codec: types.ModuleType) -> None:
    """After a refusal the next split is whole and right."""
    _refusal(lambda: codec.encode_publish_split(PublishPacket("a/+", qos=1), version=V5))
    check_split(codec, PublishPacket("a", b"x", QoS.AT_LEAST_ONCE), V5, [1, 2])
    check_split(codec, FULL, V5, [3])


# ---------------------------------------------------------------------------
# PreparedPublish

ATTRIBUTES = ("packet", "version", "v5", "qos", "head", "tail", "size")


def check_prepared(
    codec: types.ModuleType, packet: PublishPacket, version: Any, ids: list[int]
) -> Any:
    """Every attribute as promised, and head + identifier + tail the packet."""
    prepared = codec.PreparedPublish(packet, version=version)
    assert type(prepared) is codec.PreparedPublish
    assert prepared.packet is packet
    assert prepared.version is version
    assert prepared.v5 is (version == V5)
    assert prepared.qos is packet.qos
    assert (prepared.head, prepared.tail) == codec.encode_publish_split(packet, version=version)
    assert type(prepared.head) is bytes
    assert type(prepared.tail) is bytes
    assert type(prepared.size) is int
    assert repr(prepared) == f"PreparedPublish({packet!r}, version={version!r})"
    # prepare_publish() builds the same object without the class call.
    made = codec.prepare_publish(packet, version)
    assert type(made) is codec.PreparedPublish
    for name in ATTRIBUTES:
        assert getattr(made, name) == getattr(prepared, name), name
    assert made.packet is packet and made.version is version and made.qos is packet.qos
    if not packet.qos:
        assert prepared.tail == b""
        assert prepared.head == codec.encode_packet(packet, version=version)
        assert prepared.size == len(prepared.head)
        return prepared
    for packet_id in {*ids, 1, 0xFFFF}:
        expected = codec.encode_packet(attrs.evolve(packet, packet_id=packet_id), version=version)
        spliced = prepared.head + prepared.packet_id_bytes(packet_id) + prepared.tail
        assert spliced == expected
        assert prepared.size == len(expected)
    return prepared


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
@codec_settings
@given(data=st.data())
def test_prepared_is_encode_packet(
    codec: types.ModuleType, version: ProtocolVersion, data: Any
) -> None:
    packet = data.draw(publish_packets(version), label="packet")
    check_prepared(codec, packet, version, data.draw(SPLICE_IDS, label="ids"))
    if packet.qos:
        # The packet's own identifier is ignored, as by encode_publish_split.
        for own in (None, 0, 0x10000, "x"):
            other = attrs.evolve(packet, packet_id=own)
            prepared = check_prepared(codec, other, version, [2])
            assert prepared.packet is other


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
@pytest.mark.parametrize("qos", list(QoS), ids=[q.name for q in QoS])
def test_prepared_sizes(codec: types.ModuleType, version: ProtocolVersion, qos: QoS) -> None:
    """Across the lengths of the Remaining Length's one, two and three bytes."""
    fields: dict[str, Any] = {}
    if version == V5:
        fields = {"user_properties": FULL.user_properties, "topic_alias": 3}
    for topic, payload in (("t", b""), ("a/b", bytes(200)), ("x" * 300, bytes(20_000))):
        packet = PublishPacket(topic, payload, qos, packet_id=5 if qos else None, **fields)
        prepared = check_prepared(codec, packet, version, [0x1234])
        assert prepared.head[0] == 0x30 | (qos << 1)


def test_prepared_versions(codec: types.ModuleType) -> None:
    """A version given as its int is that version; 3.1 and 3.1.1 are not 5.0."""
    packet = PublishPacket("a", b"x", QoS.AT_LEAST_ONCE, packet_id=1)
    for version in (*VERSIONS, 3, 4, 5):
        prepared = check_prepared(codec, packet, version, [7])
        assert prepared.v5 is (version == 5)


def test_prepared_qos_is_the_packets(codec: types.ModuleType) -> None:
    """``qos`` is the packet's own value, a QoS member or an int; it compares
    and counts as the QoS does."""
    for qos in (*QoS, 0, 1, 2):
        packet = PublishPacket("a", qos=qos, packet_id=1 if qos else None)
        prepared = check_prepared(codec, packet, V5, [3])
        assert prepared.qos == qos
        assert int(prepared.qos) == qos
        assert bool(prepared.qos) is (qos != 0)


@pytest.mark.parametrize(
    ("version", "packet"),
    [(version, packet) for _, version, packet in PUBLISH_REFUSALS],
    ids=[label for label, _, _ in PUBLISH_REFUSALS],
)
@pytest.mark.parametrize("qos", [None, QoS.AT_LEAST_ONCE])
def test_prepared_refuses(
    codec: types.ModuleType, version: ProtocolVersion, packet: PublishPacket, qos: QoS | None
) -> None:
    """What encode_packet refuses, PreparedPublish refuses with the same
    error (a QoS 1/2 packet's own identifier aside, as for the split)."""
    if qos is not None:
        packet = attrs.evolve(packet, qos=qos, packet_id=packet.packet_id or 1)
    refused = outcome(lambda: codec.encode_packet(packet, version=version))
    if refused[0] == "returned" or _refused_for_its_id(packet):
        check_prepared(codec, packet, version, [1, 2])
        return
    assert refused[:2] == ("raised", LocalProtocolError)
    assert outcome(lambda: codec.PreparedPublish(packet, version=version)) == refused
    assert outcome(lambda: codec.prepare_publish(packet, version)) == refused


def test_prepared_refuses_not_a_publish(codec: types.ModuleType) -> None:
    for thing in (None, PubAckPacket(1), SubAckPacket(1, [ReasonCode.SUCCESS]), "t", object()):
        message = _refusal(lambda thing=thing: codec.PreparedPublish(thing, version=V5), TypeError)
        assert message == _refusal(lambda thing=thing: codec.prepare_publish(thing, V5), TypeError)
        assert message == _refusal(
            lambda thing=thing: codec.encode_publish_split(thing, version=V5), TypeError
        )


@pytest.mark.parametrize("version", [7, 2, None, "5", 5.5])
def test_prepared_unknown_version(codec: types.ModuleType, version: Any) -> None:
    for packet in (PublishPacket("t"), PublishPacket("t", qos=QoS.AT_LEAST_ONCE)):
        message = _refusal(
            lambda packet=packet: codec.PreparedPublish(packet, version=version), ValueError
        )
        assert message == _refusal(
            lambda packet=packet: codec.prepare_publish(packet, version), ValueError
        )
        assert message == _refusal(
            lambda packet=packet: codec.encode_packet(packet, version=version), ValueError
        )


def test_prepared_arguments(codec: types.ModuleType) -> None:
    """``PreparedPublish(packet, *, version)``: the version by keyword only."""
    packet = PublishPacket("t")
    parameters = inspect.signature(codec.PreparedPublish).parameters
    assert [(p.name, p.kind) for p in parameters.values()] == [
        ("packet", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("version", inspect.Parameter.KEYWORD_ONLY),
    ]
    assert codec.PreparedPublish(packet=packet, version=V5).head == (
        codec.PreparedPublish(packet, version=V5).head
    )
    for call in (
        lambda: codec.PreparedPublish(packet, V5),
        lambda: codec.PreparedPublish(packet),
        lambda: codec.PreparedPublish(version=V5),
        lambda: codec.PreparedPublish(packet, version=V5, qos=1),
    ):
        _refusal(call, TypeError)


@pytest.mark.parametrize("name", [*ATTRIBUTES, "packet_id_bytes", "other"])
def test_prepared_is_immutable(codec: types.ModuleType, name: str) -> None:
    prepared = codec.PreparedPublish(FULL, version=V5)
    before = [getattr(prepared, attribute) for attribute in ATTRIBUTES]
    with pytest.raises(AttributeError):
        setattr(prepared, name, b"x")
    with pytest.raises(AttributeError):
        delattr(prepared, name)
    assert [getattr(prepared, attribute) for attribute in ATTRIBUTES] == before
    assert not hasattr(prepared, "other")


def test_prepared_packet_id_bytes(codec: types.ModuleType) -> None:
    """The two bytes between head and tail, from the class or an instance,
    the same as mqttproto.codec.packet_id_bytes."""
    prepared = codec.PreparedPublish(FULL, version=V5)
    for packet_id in (1, 0xFF, 0x100, 0x1234, 0xFFFF):
        expected = packet_id.to_bytes(2, "big")
        assert prepared.packet_id_bytes(packet_id) == expected
        assert codec.PreparedPublish.packet_id_bytes(packet_id) == expected
        assert public_codec.packet_id_bytes(packet_id) == expected


def test_prepared_copies(codec: types.ModuleType) -> None:
    """copy, deepcopy and pickle give an equal PreparedPublish of the same twin."""
    prepared = codec.PreparedPublish(FULL, version=V5)
    for other in (
        copy.copy(prepared),
        copy.deepcopy(prepared),
        pickle.loads(pickle.dumps(prepared)),
    ):
        assert type(other) is codec.PreparedPublish
        assert [getattr(other, name) for name in ATTRIBUTES] == [
            getattr(prepared, name) for name in ATTRIBUTES
        ]


def test_prepared_in_a_cycle_is_collected(codec: types.ModuleType) -> None:
    """A PreparedPublish referred to by what its packet holds is freed by
    the garbage collector (a packet's fields may be any object: the split
    ignores a QoS 1 packet's identifier)."""

    class Holder:
        prepared: Any = None

    holder = Holder()
    packet = PublishPacket("t", b"x", QoS.AT_LEAST_ONCE, packet_id=holder)  # type: ignore[arg-type]
    holder.prepared = codec.PreparedPublish(packet, version=V5)
    alive = weakref.ref(holder)
    del holder, packet
    gc.collect()
    assert alive() is None


# A decoded PUBLISH holds in its __dict__ its topic, its payload and only the
# fields that differ from their defaults: the hot paths of the server role and
# the broker take a length of PLAIN_PUBLISH for QoS 0, no flags, no property.


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS.get)
@codec_settings
@given(data=st.data())
def test_decoded_publish_holds_only_what_differs_from_defaults(
    codec: types.ModuleType, version: ProtocolVersion, data: Any
) -> None:
    packet = data.draw(publish_packets(version), label="packet")
    if packet.qos and packet.packet_id is None:
        packet = attrs.evolve(packet, packet_id=1)
    decoded = codec.decode_packet(codec.encode_packet(packet, version=version), version=version)
    defaults = {f.name: f.default for f in attrs.fields(PublishPacket)}
    differing = {
        name for name, value in defaults.items() if getattr(decoded, name) != value
    }
    assert set(vars(decoded)) == {"topic", "payload"} | differing
    plain = not differing - {"topic", "payload"}
    assert (len(vars(decoded)) == PLAIN_PUBLISH) is plain
    # Built any other way, a packet holds every field: never taken for plain.
    assert len(vars(attrs.evolve(decoded))) > PLAIN_PUBLISH
    assert len(vars(PublishPacket("t"))) > PLAIN_PUBLISH
