"""Example-based tests of PacketReader, the incremental stream reader.

Every test takes the ``codec`` fixture and builds its reader with
``codec.PacketReader`` so that each codec implementation is tested.
"""

from __future__ import annotations

import types

import pytest

from mqttproto import (
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    MalformedPacket,
    PacketTooLarge,
    PingReqPacket,
    PingRespPacket,
    ProtocolVersion,
    PubAckPacket,
    PublishPacket,
    QoS,
    ReasonCode,
    RemoteProtocolError,
    SubscribePacket,
    Subscription,
    UnsupportedProtocolVersion,
)

V3_1 = ProtocolVersion.MQTT_3_1
V3_1_1 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
VERSIONS = [V3_1, V3_1_1, V5]
versions = pytest.mark.parametrize("version", VERSIONS, ids=["3.1", "3.1.1", "5.0"])

PUBLISH = PublishPacket(
    topic="sensors/kitchen/temp", payload=b"21.5", qos=QoS.AT_LEAST_ONCE, packet_id=7
)
PUBLISH_V5 = PublishPacket(
    topic="a/é/😀",
    payload=b"x" * 200,  # a two-byte remaining length
    qos=QoS.EXACTLY_ONCE,
    packet_id=65535,
    message_expiry_interval=3600,
    user_properties=(("k", "1"), ("k", "2")),
    subscription_identifiers=(1, 268_435_455),
)

# A PUBLISH header claiming the largest remaining length there is.
HUGE_CLAIM = b"\x30\xff\xff\xff\x7f"


def connect(version: ProtocolVersion) -> ConnectPacket:
    return ConnectPacket(client_id="client", protocol_version=version)


def publish_of_size(codec: types.ModuleType, size: int) -> tuple[PublishPacket, bytes]:
    """A QoS 0 MQTT 5 PUBLISH whose whole encoding is exactly ``size`` bytes."""
    for payload_size in range(max(0, size - 10), size):
        packet = PublishPacket(topic="t", payload=b"p" * payload_size)
        data = codec.encode_packet(packet, version=V5)
        if len(data) == size:
            return packet, data
    raise AssertionError(f"no PUBLISH of {size} bytes")


# ---------------------------------------------------------------------------
# Incremental feeding


@versions
def test_returns_nothing_until_complete(codec: types.ModuleType, version: ProtocolVersion) -> None:
    data = codec.encode_packet(PUBLISH, version=version)
    reader = codec.PacketReader(version=version)
    for index, byte in enumerate(data[:-1]):
        assert reader.feed(bytes((byte,))) == []
        assert reader.buffered == index + 1
    assert reader.feed(data[-1:]) == [PUBLISH]
    assert reader.buffered == 0


def test_incomplete_size_is_the_declared_size_once_the_fixed_header_is_in(
    codec: types.ModuleType,
) -> None:
    """What the servers' input budget reserves: the whole packet's size as
    soon as its fixed header says it, 0 before and after."""
    big = codec.encode_packet(PublishPacket("t", b"x" * 200_000), version=V5)
    ack = codec.encode_packet(PubAckPacket(packet_id=1), version=V5)
    reader = codec.PacketReader(version=V5)
    assert reader.incomplete_size == 0
    assert reader.feed(big[:2]) == [] and reader.incomplete_size == 0  # length incomplete
    assert reader.feed(big[2:10]) == [] and reader.incomplete_size == len(big)
    assert reader.feed(big[10:-1]) == [] and reader.incomplete_size == len(big)
    assert len(reader.feed(big[-1:] + ack + big[:4])) == 2
    assert reader.incomplete_size == len(big)  # the next one
    assert len(reader.feed(big[4:])) == 1 and reader.incomplete_size == 0


def test_incomplete_size_is_0_after_a_refusal(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5, max_packet_size=100)
    with pytest.raises(PacketTooLarge):
        reader.feed(b"\x30\xff\x01")
    assert reader.incomplete_size == 0


def test_empty_feed(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5)
    assert reader.feed(b"") == []
    assert reader.feed(b"\xc0") == []
    assert reader.feed(b"") == []
    assert reader.buffered == 1
    assert reader.feed(b"\x00") == [PingReqPacket()]
    assert reader.feed(b"") == []


def test_several_packets_in_one_feed(codec: types.ModuleType) -> None:
    packets = [
        PUBLISH_V5,
        PubAckPacket(packet_id=3),
        PingReqPacket(),
        PingRespPacket(),
        SubscribePacket(packet_id=9, subscriptions=[Subscription("a/+/#", QoS.EXACTLY_ONCE)]),
        DisconnectPacket(reason_code=ReasonCode.SERVER_SHUTTING_DOWN, reason_string="bye"),
    ]
    stream = b"".join(codec.encode_packet(p, version=V5) for p in packets)
    reader = codec.PacketReader(version=V5)
    assert reader.feed(stream) == packets
    assert reader.buffered == 0


def test_complete_packets_and_a_partial_one(codec: types.ModuleType) -> None:
    first = codec.encode_packet(PUBLISH_V5, version=V5)
    second = codec.encode_packet(PubAckPacket(packet_id=1), version=V5)
    reader = codec.PacketReader(version=V5)
    assert reader.feed(first + second[:1]) == [PUBLISH_V5]
    assert reader.buffered == 1
    assert reader.feed(second[1:] + first[:3]) == [PubAckPacket(packet_id=1)]
    assert reader.buffered == 3
    assert reader.feed(first[3:]) == [PUBLISH_V5]
    assert reader.buffered == 0


@pytest.mark.parametrize("packet", [PUBLISH, PUBLISH_V5], ids=["short", "long"])
def test_split_at_every_offset(codec: types.ModuleType, packet: PublishPacket) -> None:
    data = codec.encode_packet(packet, version=V5)
    stream = data + data
    for cut in range(len(stream) + 1):
        reader = codec.PacketReader(version=V5)
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == [packet, packet], cut
        assert reader.buffered == 0


def test_split_in_three_at_every_offset_pair(codec: types.ModuleType) -> None:
    data = codec.encode_packet(PUBLISH, version=V3_1_1)
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            reader = codec.PacketReader(version=V3_1_1)
            result = (
                reader.feed(data[:first])
                + reader.feed(data[first:second])
                + reader.feed(data[second:])
            )
            assert result == [PUBLISH], (first, second)


@pytest.mark.parametrize("kind", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_feed_accepts_bytes_like(codec: types.ModuleType, kind: type) -> None:
    data = codec.encode_packet(PUBLISH_V5, version=V5) * 2
    reader = codec.PacketReader(version=V5)
    assert reader.feed(kind(data[:10])) == []
    result = reader.feed(kind(data[10:]))
    assert result == [PUBLISH_V5, PUBLISH_V5]
    assert all(type(p.payload) is bytes for p in result)


def test_feed_does_not_keep_a_reference_to_a_mutable_buffer(codec: types.ModuleType) -> None:
    data = codec.encode_packet(PUBLISH_V5, version=V5)
    buffer = bytearray(data[:20])
    reader = codec.PacketReader(version=V5)
    assert reader.feed(buffer) == []
    buffer[:] = b"\xff" * len(buffer)  # the caller reuses its read buffer
    assert reader.feed(data[20:]) == [PUBLISH_V5]


def test_large_packet_in_many_chunks(codec: types.ModuleType) -> None:
    """A 1 MB PUBLISH arriving in 1000 reads comes out once, intact."""
    packet = PublishPacket(
        topic="big", payload=bytes(range(256)) * 4096, qos=QoS.AT_LEAST_ONCE, packet_id=1
    )
    data = codec.encode_packet(packet, version=V5)
    assert len(data) > 1_000_000
    chunk_size = -(-len(data) // 1000)
    reader = codec.PacketReader(version=V5, max_packet_size=len(data))
    fed = 0
    for start in range(0, len(data) - chunk_size, chunk_size):
        assert reader.feed(data[start : start + chunk_size]) == []
        fed += chunk_size
        assert reader.buffered == fed
    result = reader.feed(data[fed:])
    assert result == [packet]
    assert reader.buffered == 0


# ---------------------------------------------------------------------------
# Maximum packet size


# Whole packet sizes around the remaining length encodings: 129 is the largest
# packet with a one-byte remaining length (127), 131 the smallest with two.
@pytest.mark.parametrize("size", [8, 128, 129, 131, 300, 16_386, 16_388])
def test_max_packet_size_counts_the_whole_packet(codec: types.ModuleType, size: int) -> None:
    """A packet of exactly the maximum is accepted; one byte over is refused."""
    packet, data = publish_of_size(codec, size)
    assert len(data) == size

    reader = codec.PacketReader(version=V5, max_packet_size=size)
    assert reader.feed(data) == [packet]
    reader = codec.PacketReader(version=V5, max_packet_size=size)
    assert [p for i in range(size) for p in reader.feed(data[i : i + 1])] == [packet]

    # The remaining length alone would fit: the fixed header must count.
    reader = codec.PacketReader(version=V5, max_packet_size=size - 1)
    with pytest.raises(PacketTooLarge) as info:
        reader.feed(data)
    assert info.value.reason_code == ReasonCode.PACKET_TOO_LARGE == 0x95
    assert reader.buffered == 0


def test_max_packet_size_checked_from_the_fixed_header(codec: types.ModuleType) -> None:
    """The claim is refused as soon as the fixed header is complete."""
    _packet, data = publish_of_size(codec, 300)
    header = data[:3]  # type byte and a two-byte remaining length
    reader = codec.PacketReader(version=V5, max_packet_size=299)
    assert reader.feed(header[:2]) == []
    with pytest.raises(PacketTooLarge):
        reader.feed(header[2:])
    assert reader.buffered == 0


def test_huge_claim_refused_before_buffering(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5, max_packet_size=1024)
    with pytest.raises(PacketTooLarge) as info:
        reader.feed(HUGE_CLAIM)
    assert info.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert reader.buffered == 0


def test_huge_claim_after_a_good_packet(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5, max_packet_size=1024)
    assert reader.feed(b"\xc0\x00") == [PingReqPacket()]
    with pytest.raises(PacketTooLarge):
        reader.feed(HUGE_CLAIM)
    assert reader.buffered == 0


def test_huge_claim_without_a_maximum_waits(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5)
    assert reader.feed(HUGE_CLAIM) == []
    assert reader.buffered == len(HUGE_CLAIM)
    assert reader.feed(b"\x00\x01t" + b"p" * 100) == []
    assert reader.buffered == len(HUGE_CLAIM) + 103


# ---------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        # Remaining length of five bytes [MQTT-1.5.5-1].
        (b"\x30\xff\xff\xff\xff\x01", MalformedPacket, ReasonCode.MALFORMED_PACKET),
        # Remaining length not minimally encoded (0 in two bytes).
        (b"\xc0\x80\x00", MalformedPacket, ReasonCode.MALFORMED_PACKET),
        # Reserved packet type 0.
        (b"\x00\x00", MalformedPacket, ReasonCode.MALFORMED_PACKET),
        # PINGREQ with a body.
        (b"\xc0\x01\x00", MalformedPacket, ReasonCode.MALFORMED_PACKET),
        # PUBLISH QoS 3.
        (b"\x36\x05\x00\x01t\x00\x01", MalformedPacket, ReasonCode.MALFORMED_PACKET),
        # PUBACK with packet identifier 0.
        (b"\x40\x02\x00\x00", RemoteProtocolError, ReasonCode.PROTOCOL_ERROR),
    ],
    ids=["long-length", "non-minimal-length", "type-0", "pingreq-body", "qos-3", "packet-id-0"],
)
def test_malformed_input(
    codec: types.ModuleType, data: bytes, error: type[RemoteProtocolError], reason: ReasonCode
) -> None:
    reader = codec.PacketReader(version=V3_1_1)
    with pytest.raises(error) as info:
        reader.feed(data)
    assert info.value.reason_code == reason


def test_auth_is_malformed_before_mqtt5(codec: types.ModuleType) -> None:
    for version in (V3_1, V3_1_1):
        with pytest.raises(MalformedPacket):
            codec.PacketReader(version=version).feed(b"\xf0\x00")
    assert codec.PacketReader(version=V5).feed(b"\xf0\x00") != []


def test_error_is_sticky(codec: types.ModuleType) -> None:
    good = codec.encode_packet(PubAckPacket(packet_id=1), version=V5)
    reader = codec.PacketReader(version=V5)
    assert reader.feed(good) == [PubAckPacket(packet_id=1)]
    with pytest.raises(MalformedPacket) as first:
        reader.feed(b"\x00\x00")
    for later in (good, b"", b"\xc0", b"\x00\x00"):
        with pytest.raises(MalformedPacket) as again:
            reader.feed(later)
        assert str(again.value) == str(first.value)
        assert again.value.reason_code == first.value.reason_code
    assert reader.buffered == 0


def test_sticky_packet_too_large(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5, max_packet_size=16)
    with pytest.raises(PacketTooLarge):
        reader.feed(HUGE_CLAIM)
    with pytest.raises(PacketTooLarge):
        reader.feed(b"\xc0\x00")


def test_error_drops_the_packets_of_the_same_feed(codec: types.ModuleType) -> None:
    good = codec.encode_packet(PingReqPacket(), version=V5)
    reader = codec.PacketReader(version=V5)
    with pytest.raises(MalformedPacket):
        reader.feed(good + b"\x00\x00")
    reader = codec.PacketReader(version=V5)
    assert reader.feed(good) == [PingReqPacket()]
    with pytest.raises(MalformedPacket):
        reader.feed(b"\x00\x00")


# ---------------------------------------------------------------------------
# A reader without a version (a server before CONNECT)


@versions
def test_adopts_the_connect_level(codec: types.ModuleType, version: ProtocolVersion) -> None:
    reader = codec.PacketReader()
    assert reader.version is None
    first = connect(version)
    data = codec.encode_packet(first, version=version)
    assert reader.feed(data[:-1]) == []
    assert reader.version is None
    following = codec.encode_packet(PUBLISH, version=version)
    assert reader.feed(data[-1:] + following) == [first, PUBLISH]
    assert reader.version is version


def test_connect_and_following_packets_in_one_feed(codec: types.ModuleType) -> None:
    """The packets after CONNECT in the same feed decode with its level."""
    first = connect(V5)
    packets = [first, PUBLISH_V5, DisconnectPacket(reason_code=ReasonCode.QUOTA_EXCEEDED)]
    stream = b"".join(codec.encode_packet(p, version=V5) for p in packets)
    reader = codec.PacketReader()
    assert reader.feed(stream) == packets
    assert reader.version is V5


def test_v3_level_then_v5_only_packet(codec: types.ModuleType) -> None:
    """After a 3.1.1 CONNECT, AUTH (type 15) is malformed."""
    reader = codec.PacketReader()
    assert reader.feed(codec.encode_packet(connect(V3_1_1), version=V3_1_1)) == [connect(V3_1_1)]
    with pytest.raises(MalformedPacket):
        reader.feed(b"\xf0\x00")


@pytest.mark.parametrize(
    "packet",
    [PUBLISH, PingReqPacket(), ConnAckPacket(), DisconnectPacket()],
    ids=["publish", "pingreq", "connack", "disconnect"],
)
def test_first_packet_must_be_connect(codec: types.ModuleType, packet: object) -> None:
    reader = codec.PacketReader()
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(codec.encode_packet(packet, version=V3_1_1))
    assert info.value.reason_code == ReasonCode.PROTOCOL_ERROR == 0x82
    assert reader.version is None
    with pytest.raises(RemoteProtocolError):
        reader.feed(codec.encode_packet(connect(V3_1_1), version=V3_1_1))


@pytest.mark.parametrize(
    ("data", "level"),
    [
        (b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", 6),
        (b"\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00", 3),  # 3.1 level, 3.1.1 name
        (b"\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x00", 4),  # 3.1.1 level, 3.1 name
    ],
    ids=["level-6", "mqtt-name-level-3", "mqisdp-name-level-4"],
)
def test_unsupported_protocol(codec: types.ModuleType, data: bytes, level: int) -> None:
    reader = codec.PacketReader()
    with pytest.raises(UnsupportedProtocolVersion) as info:
        reader.feed(data)
    assert info.value.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
    assert info.value.protocol_level == level
    assert reader.version is None


# ---------------------------------------------------------------------------
# Construction


@versions
def test_version_property(codec: types.ModuleType, version: ProtocolVersion) -> None:
    reader = codec.PacketReader(version=version)
    assert reader.version is version
    # A plain int is accepted and reported as the enum member.
    reader = codec.PacketReader(version=int(version))  # type: ignore[arg-type]
    assert reader.version is version
    assert type(reader.version) is ProtocolVersion
    assert codec.PacketReader(version=version, max_packet_size=2).version is version


def test_default_reader(codec: types.ModuleType) -> None:
    reader = codec.PacketReader()
    assert reader.version is None
    assert reader.buffered == 0


@pytest.mark.parametrize("version", [0, 1, 2, 6, 255], ids=str)
def test_unknown_version_refused(codec: types.ModuleType, version: int) -> None:
    with pytest.raises(ValueError):
        codec.PacketReader(version=version)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -1], ids=str)
def test_bad_max_packet_size_refused(codec: types.ModuleType, size: int) -> None:
    with pytest.raises(ValueError):
        codec.PacketReader(max_packet_size=size)
    with pytest.raises(ValueError):
        codec.PacketReader(version=V5, max_packet_size=size)


def test_smallest_max_packet_size(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5, max_packet_size=2)
    assert reader.feed(b"\xc0\x00\xd0\x00") == [PingReqPacket(), PingRespPacket()]
    with pytest.raises(PacketTooLarge):
        reader.feed(b"\x40\x02\x00\x01")


def test_first_packet_refused_at_its_first_byte(codec: types.ModuleType) -> None:
    # [MQTT-3.1.0-1]: a server reader refuses a non-CONNECT type byte at once,
    # so a peer cannot make it buffer a body before CONNECT.
    reader = codec.PacketReader()
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(b"\x30")
    assert info.value.reason_code == ReasonCode.PROTOCOL_ERROR
    assert reader.buffered == 0


def test_sticky_error_does_not_grow_its_traceback(codec: types.ModuleType) -> None:
    reader = codec.PacketReader(version=V5)
    with pytest.raises(MalformedPacket):
        reader.feed(b"\x00\x00")
    depths = []
    for _ in range(5):
        with pytest.raises(MalformedPacket) as info:
            reader.feed(b"")
        depth, tb = 0, info.value.__traceback__
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)
    assert len(set(depths)) == 1


def test_decode_packet_refuses_an_unknown_version(codec: types.ModuleType) -> None:
    with pytest.raises(ValueError):
        codec.decode_packet(b"\xc0\x00", version=7)


def test_packets_before_an_error_are_on_the_exception(codec: types.ModuleType) -> None:
    """feed() returns nothing when it raises; the packets complete before the
    faulty one are in ``preceding_packets``, in order; a broken reader's later
    raises carry none."""
    v5 = ProtocolVersion.MQTT_5_0
    good = [PingRespPacket(), PublishPacket("a", b"1")]
    stream = b"".join(codec.encode_packet(p, version=v5) for p in good) + b"\x30\x02\x00\x05"
    reader = codec.PacketReader(version=v5)
    with pytest.raises(MalformedPacket) as info:
        reader.feed(stream)
    assert info.value.preceding_packets == good
    with pytest.raises(MalformedPacket) as again:
        reader.feed(b"\xc0\x00")
    assert again.value.preceding_packets == []
