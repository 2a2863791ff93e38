"""The Subscription Identifier limit of ``PacketReader`` and ``decode_packet``.

With ``max_subscription_identifiers``, the ``subscription_identifiers`` of a
PUBLISH stop growing once they are past the limit: they are its first
``max_subscription_identifiers + 1``. The rest are checked as always but not
built. Nothing else changes: every other field, every error, and every
other packet (a SUBSCRIBE carries at most one, and a second must still be a
Protocol Error). The property test at the end holds both twins to that for
mutated packets, with the user-property limit at the same time. What it
buys: a flood of Subscription Identifiers builds only that prefix.

Every test takes the ``codec`` fixture, so each implementation is tested.
"""

from __future__ import annotations

import tracemalloc
import types
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mqttproto import (
    ConnectPacket,
    MalformedPacket,
    Packet,
    ProtocolVersion,
    PubAckPacket,
    PublishPacket,
    QoS,
    ReasonCode,
    RemoteProtocolError,
    SubscribePacket,
    Subscription,
    TopicAliasInvalid,
    Will,
)

V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
RC = ReasonCode

# The codec fixture is function-scoped but stateless (it is a module).
codec_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def decode_both_ways(codec: types.ModuleType, data: bytes, **limits: Any) -> Packet:
    """Decode with ``decode_packet`` and with a reader, whole and bytewise; all must agree."""
    packet = codec.decode_packet(data, version=V5, **limits)
    reader = codec.PacketReader(version=V5, **limits)
    assert reader.feed(data) == [packet]
    bytewise = codec.PacketReader(version=V5, **limits)
    assert [p for i in range(len(data)) for p in bytewise.feed(data[i : i + 1])] == [packet]
    return packet  # type: ignore[no-any-return]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _sid(value: int) -> bytes:
    """One Subscription Identifier property."""
    return b"\x0b" + _varint(value)


def _pair(name: bytes, value: bytes) -> bytes:
    return b"\x26" + len(name).to_bytes(2, "big") + name + len(value).to_bytes(2, "big") + value


def publish_with_block(
    block: bytes,
    *,
    topic: bytes = b"t",
    qos: int = 1,
    packet_id: int = 7,
    declared: int | None = None,
) -> bytes:
    """A PUBLISH with ``block`` as its property block and payload ``payload``."""
    length = len(block) if declared is None else declared
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += _varint(length) + block + b"payload"
    return _frame(0x30 | qos << 1, body)


IDS = tuple(range(1, 1001))  # 1 to 127 take one byte, the rest two


# ---------------------------------------------------------------------------
# What is kept


@pytest.mark.parametrize("count", [2, 5, 1000])
@pytest.mark.parametrize("limit", [0, 1, 3])
def test_the_first_past_the_limit_are_kept(codec: types.ModuleType, count: int, limit: int) -> None:
    packet = PublishPacket(
        "t", b"payload", QoS.AT_LEAST_ONCE, packet_id=7, subscription_identifiers=IDS[:count]
    )
    data = codec.encode_packet(packet, version=V5)
    got = decode_both_ways(codec, data, max_subscription_identifiers=limit)
    assert got == attrs.evolve(packet, subscription_identifiers=IDS[: min(count, limit + 1)])


@pytest.mark.parametrize("count", [0, 1, 4])
def test_within_the_limit_everything_is_kept(codec: types.ModuleType, count: int) -> None:
    packet = PublishPacket("t", b"", subscription_identifiers=IDS[:count])
    data = codec.encode_packet(packet, version=V5)
    assert decode_both_ways(codec, data, max_subscription_identifiers=4) == packet


def test_no_limit_is_the_default(codec: types.ModuleType) -> None:
    packet = PublishPacket("t", b"", subscription_identifiers=IDS)
    data = codec.encode_packet(packet, version=V5)
    assert decode_both_ways(codec, data) == packet
    assert decode_both_ways(codec, data, max_subscription_identifiers=None) == packet


def test_every_width_and_the_largest_value_are_walked(codec: types.ModuleType) -> None:
    """Identifiers of one to four bytes, past the limit: walked, not refused."""
    values = (1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455) * 3
    packet = PublishPacket("t", b"", subscription_identifiers=values)
    data = codec.encode_packet(packet, version=V5)
    assert decode_both_ways(codec, data) == packet
    got = decode_both_ways(codec, data, max_subscription_identifiers=0)
    assert got == attrs.evolve(packet, subscription_identifiers=(1,))


def test_a_mqtt_3_publish_has_no_properties_to_limit(codec: types.ModuleType) -> None:
    packet = PublishPacket("t", b"\x0b\x01\x0b\x01", QoS.AT_LEAST_ONCE, packet_id=1)
    data = codec.encode_packet(packet, version=V311)
    for limits in ({}, {"max_subscription_identifiers": 0}):
        assert codec.decode_packet(data, version=V311, **limits) == packet
        assert codec.PacketReader(version=V311, **limits).feed(data) == [packet]


def test_properties_after_the_limit_are_still_read(codec: types.ModuleType) -> None:
    pairs = tuple((f"k{i}", "v") for i in range(5))
    packet = PublishPacket(
        "",
        b"payload",
        QoS.AT_LEAST_ONCE,
        packet_id=9,
        subscription_identifiers=IDS[:300],
        user_properties=pairs,
        topic_alias=5,
        message_expiry_interval=60,
        content_type="text/plain",
        response_topic="re/ply",
        correlation_data=b"\x00\x01",
        payload_format_indicator=1,
    )
    # The identifiers first, then every other property, with User
    # Properties in between (the encoder would write them in its own order).
    block = (
        b"".join(_sid(v) for v in IDS[:150])
        + b"\x23\x00\x05"  # topic alias 5 (the topic is empty)
        + b"".join(_sid(v) for v in IDS[150:300])
        + b"\x02\x00\x00\x00\x3c"  # message expiry 60
        + b"".join(_pair(n.encode(), v.encode()) for n, v in pairs)
        + b"\x03\x00\x0atext/plain"
        + b"\x08\x00\x06re/ply"
        + b"\x09\x00\x02\x00\x01"  # correlation data
        + b"\x01\x01"  # payload format indicator
    )
    data = publish_with_block(block, topic=b"", packet_id=9)
    assert codec.decode_packet(data, version=V5) == packet
    got = decode_both_ways(codec, data, max_subscription_identifiers=2)
    assert got == attrs.evolve(packet, subscription_identifiers=IDS[:3])


@pytest.mark.parametrize(
    ("limits", "identifiers", "users"),
    [
        ({"max_subscription_identifiers": 0}, 1, 200),
        ({"max_user_properties": 2}, 200, 3),
        ({"max_subscription_identifiers": 0, "max_user_properties": 2}, 1, 3),
        ({"max_subscription_identifiers": 5, "max_user_property_bytes": 10}, 6, 4),
    ],
    ids=["identifiers", "users", "both", "both-bytes"],
)
def test_identifiers_and_user_properties_in_turn(
    codec: types.ModuleType, limits: dict[str, int], identifiers: int, users: int
) -> None:
    """Each list is cut by its own limit, wherever the other kind comes between."""
    pairs = tuple((f"k{i}", "v") for i in range(200))  # 3 bytes each
    block = b"".join(
        _sid(v) + _pair(n.encode(), v2.encode()) for v, (n, v2) in zip(IDS, pairs, strict=False)
    )
    data = publish_with_block(block)
    packet = PublishPacket(
        "t",
        b"payload",
        QoS.AT_LEAST_ONCE,
        packet_id=7,
        subscription_identifiers=IDS[:200],
        user_properties=pairs,
    )
    assert codec.decode_packet(data, version=V5) == packet
    got = decode_both_ways(codec, data, **limits)
    assert got == attrs.evolve(
        packet, subscription_identifiers=IDS[:identifiers], user_properties=pairs[:users]
    )


# ---------------------------------------------------------------------------
# Only PUBLISH is limited


@pytest.mark.parametrize("limit", [0, 1])
def test_subscribe_keeps_its_one_identifier(codec: types.ModuleType, limit: int) -> None:
    packet = SubscribePacket(5, (Subscription("a/#"),), subscription_identifier=268_435_455)
    data = codec.encode_packet(packet, version=V5)
    assert decode_both_ways(codec, data, max_subscription_identifiers=limit) == packet
    server = codec.PacketReader(max_subscription_identifiers=limit)
    connect = codec.encode_packet(ConnectPacket("c"), version=V5)
    assert server.feed(connect + data)[1] == packet


@pytest.mark.parametrize("repeats", [2, 300])
@pytest.mark.parametrize("limit", [None, 0, 1])
def test_a_repeated_identifier_in_subscribe_is_still_a_protocol_error(
    codec: types.ModuleType, repeats: int, limit: int | None
) -> None:
    block = _sid(3) * repeats
    data = _frame(0x82, b"\x00\x05" + _varint(len(block)) + block + b"\x00\x01a\x00")
    reader = codec.PacketReader(version=V5, max_subscription_identifiers=limit)
    for feed in (
        lambda: codec.decode_packet(data, version=V5, max_subscription_identifiers=limit),
        lambda: reader.feed(data),
    ):
        with pytest.raises(RemoteProtocolError) as caught:
            feed()  # type: ignore[no-untyped-call]
        assert type(caught.value) is RemoteProtocolError
        assert caught.value.reason_code == RC.PROTOCOL_ERROR
        assert str(caught.value) == "SUBSCRIPTION_IDENTIFIER included more than once"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # A PUBACK's property block with Subscription Identifiers in it.
        (
            _frame(0x40, b"\x00\x01\x00\x06" + _sid(1) * 3),
            "SUBSCRIPTION_IDENTIFIER is not allowed in PUBACK",
        ),
        # A will's: CONNECT "c", will flag, will properties with two of them.
        (
            _frame(
                0x10,
                b"\x00\x04MQTT\x05\x04\x00\x00\x00\x00\x01c\x04"
                + _sid(1) * 2
                + b"\x00\x01w\x00\x00",
            ),
            "SUBSCRIPTION_IDENTIFIER is not allowed in WILL",
        ),
    ],
    ids=["puback", "will"],
)
def test_identifiers_where_none_belong_are_still_malformed(
    codec: types.ModuleType, data: bytes, message: str
) -> None:
    for limits in ({}, {"max_subscription_identifiers": 0}):
        with pytest.raises(MalformedPacket, match=message):
            codec.decode_packet(data, version=V5, **limits)


# ---------------------------------------------------------------------------
# Errors: the same with and without the limit


FLOOD = b"".join(_sid(v) for v in IDS[:300])

# Each is a flood of 300 valid Subscription Identifiers and then something wrong.
AFTER_THE_FLOOD: list[tuple[str, bytes, type[RemoteProtocolError], RC]] = [
    ("zero", FLOOD + b"\x0b\x00", RemoteProtocolError, RC.PROTOCOL_ERROR),
    ("zero-then-more", FLOOD + b"\x0b\x00" + FLOOD, RemoteProtocolError, RC.PROTOCOL_ERROR),
    ("not-minimal", FLOOD + b"\x0b\x81\x00", MalformedPacket, RC.MALFORMED_PACKET),
    ("not-minimal-4", FLOOD + b"\x0b\x80\x80\x80\x00", MalformedPacket, RC.MALFORMED_PACKET),
    ("five-bytes", FLOOD + b"\x0b\x80\x80\x80\x80\x01", MalformedPacket, RC.MALFORMED_PACKET),
    ("overruns", FLOOD + b"\x0b\x80", MalformedPacket, RC.MALFORMED_PACKET),
    ("overruns-4", FLOOD + b"\x0b\xff\xff\xff", MalformedPacket, RC.MALFORMED_PACKET),
    ("no-value", FLOOD + b"\x0b", MalformedPacket, RC.MALFORMED_PACKET),
    ("unknown-identifier", FLOOD + b"\x7f", MalformedPacket, RC.MALFORMED_PACKET),
    ("not-in-publish", FLOOD + b"\x11\x00\x00\x00\x01", MalformedPacket, RC.MALFORMED_PACKET),
    ("duplicate", b"\x01\x01" + FLOOD + b"\x01\x00", RemoteProtocolError, RC.PROTOCOL_ERROR),
    ("topic-alias-0", FLOOD + b"\x23\x00\x00", TopicAliasInvalid, RC.TOPIC_ALIAS_INVALID),
    ("bad-flag", FLOOD + b"\x01\x02", RemoteProtocolError, RC.PROTOCOL_ERROR),
    ("response-filter", FLOOD + b"\x08\x00\x01#", RemoteProtocolError, RC.PROTOCOL_ERROR),
    ("user-not-utf8", FLOOD + _pair(b"\xff", b"v"), MalformedPacket, RC.MALFORMED_PACKET),
    ("user-nul", FLOOD + _pair(b"k", b"\x00") + FLOOD, MalformedPacket, RC.MALFORMED_PACKET),
    ("user-overruns", FLOOD + b"\x26\x00\x09abc", MalformedPacket, RC.MALFORMED_PACKET),
]


@pytest.mark.parametrize(
    ("block", "error", "code"),
    [case[1:] for case in AFTER_THE_FLOOD],
    ids=[case[0] for case in AFTER_THE_FLOOD],
)
@pytest.mark.parametrize(
    "limits",
    [
        {"max_subscription_identifiers": 0},
        {"max_subscription_identifiers": 10},
        {"max_subscription_identifiers": 0, "max_user_properties": 0},
    ],
    ids=["zero", "ten", "both"],
)
def test_a_packet_past_the_limit_and_malformed_later_is_refused_as_malformed(
    codec: types.ModuleType,
    block: bytes,
    error: type[RemoteProtocolError],
    code: RC,
    limits: dict[str, int],
) -> None:
    data = publish_with_block(block)
    with pytest.raises(error) as without:
        codec.decode_packet(data, version=V5)
    with pytest.raises(error) as limited_error:
        codec.decode_packet(data, version=V5, **limits)
    reader = codec.PacketReader(version=V5, **limits)
    with pytest.raises(error) as read_error:
        reader.feed(data)
    for exc in (without.value, limited_error.value, read_error.value):
        assert type(exc) is error
        assert exc.reason_code == code
        # The same message too: the walk past the limit raises what
        # building the identifiers would have.
        assert str(exc) == str(without.value)


@pytest.mark.parametrize(
    ("topic", "code"),
    [
        (b"a/+", RC.TOPIC_NAME_INVALID),
        (b"", RC.PROTOCOL_ERROR),  # 5.0 section 3.3.2.3.4
        (b"a\x00", RC.MALFORMED_PACKET),
    ],
    ids=["wildcard", "empty-without-alias", "nul"],
)
def test_a_bad_topic_is_refused_as_before(codec: types.ModuleType, topic: bytes, code: RC) -> None:
    """The topic name is checked after the property block, limit or not."""
    data = publish_with_block(FLOOD, topic=topic)
    for limits in ({}, {"max_subscription_identifiers": 0}):
        with pytest.raises(RemoteProtocolError) as caught:
            codec.PacketReader(version=V5, **limits).feed(data)
        assert caught.value.reason_code == code


def test_the_block_length_still_binds_the_walk(codec: types.ModuleType) -> None:
    """A block whose declared length ends inside an identifier past the limit."""
    data = publish_with_block(FLOOD + b"\x0b\x81\x01", declared=len(FLOOD) + 2)
    for limits in ({}, {"max_subscription_identifiers": 3}):
        with pytest.raises(MalformedPacket, match="variable byte integer runs past"):
            codec.decode_packet(data, version=V5, **limits)


def test_packets_before_a_bad_one_are_kept_for_the_connection(codec: types.ModuleType) -> None:
    """``preceding_packets`` are what they would be without the limit."""
    good = publish_with_block(FLOOD, packet_id=1)
    bad = publish_with_block(FLOOD + b"\x0b\x00", packet_id=2)
    reader = codec.PacketReader(version=V5, max_subscription_identifiers=0)
    with pytest.raises(RemoteProtocolError) as caught:
        reader.feed(good + bad)
    (first,) = caught.value.preceding_packets
    assert first == codec.decode_packet(good, version=V5, max_subscription_identifiers=0)
    assert isinstance(first, PublishPacket)
    assert first.subscription_identifiers == (1,)
    with pytest.raises(RemoteProtocolError):
        reader.feed(b"\xc0\x00")  # broken for good, as after any error


# ---------------------------------------------------------------------------
# What a flood costs


def flood_of_distinct_identifiers(size: int) -> bytes:
    """A QoS 1 PUBLISH of about ``size`` bytes of Subscription Identifiers from
    16,384 up: each takes four bytes on the wire and is a new ``int``."""
    count = (size - 32) // 4
    return publish_with_block(b"".join(_sid(16_384 + i) for i in range(count)))


def peak_while(fn: Any) -> tuple[Any, int]:
    """``fn()`` and the most Python heap it held at once (tracemalloc)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_flood_builds_only_what_the_limit_keeps(codec: types.ModuleType) -> None:
    """1 MiB of distinct Subscription Identifiers: the limit bounds what is built."""
    data = flood_of_distinct_identifiers(1024 * 1024)
    assert len(data) <= 1024 * 1024
    (got,), peak = peak_while(
        lambda: codec.PacketReader(version=V5, max_subscription_identifiers=0).feed(data)
    )
    assert got.subscription_identifiers == (16_384,)
    assert got.payload == b"payload"
    # One int and a one-item tuple; the bound only leaves room for the reader.
    assert peak < 64 * 1024


def test_without_a_limit_a_flood_builds_every_identifier(codec: types.ModuleType) -> None:
    """What the bound above is measured against (on 64 KiB, to keep it quick)."""
    data = flood_of_distinct_identifiers(64 * 1024)
    (whole,), peak = peak_while(lambda: codec.PacketReader(version=V5).feed(data))
    assert len(whole.subscription_identifiers) > 16_000
    # An int of 28 bytes and a list and a tuple slot for each 4 bytes of wire.
    assert peak > 8 * len(data)


# ---------------------------------------------------------------------------
# Arguments


def test_limit_argument_is_checked(codec: types.ModuleType) -> None:
    data = codec.encode_packet(PublishPacket("t", b""), version=V5)
    name = "max_subscription_identifiers"
    for bad, error in ((-1, ValueError), (2.5, TypeError), ("3", TypeError)):
        with pytest.raises(error):
            codec.PacketReader(**{name: bad})
        with pytest.raises(error):
            codec.decode_packet(data, version=V5, **{name: bad})
    # Any non-negative whole number goes, however large.
    for good in (0, 1, 2**80):
        reader = codec.PacketReader(version=V5, **{name: good})
        assert reader.feed(data) == [PublishPacket("t", b"")]


# ---------------------------------------------------------------------------
# The contract, for mutated packets: the limits change nothing but the lists


SEED_PACKETS: list[Packet] = [
    PublishPacket(
        "a/b",
        b"p",
        QoS.EXACTLY_ONCE,
        packet_id=1,
        subscription_identifiers=(1, 200, 70_000, 268_435_455) * 5,
        user_properties=(("k", "v"),) * 4,
        topic_alias=3,
    ),
    PublishPacket("a", b"", subscription_identifiers=(5,) * 6, message_expiry_interval=5),
    SubscribePacket(2, (Subscription("s/#"),), subscription_identifier=9),
    ConnectPacket("c", will=Will("w", b"", content_type="x"), user_properties=(("a", "b"),)),
    PubAckPacket(3, RC.SUCCESS, user_properties=(("a", "b"),) * 3),
]
# A PUBLISH with the two kinds in turn, which the encoder does not write.
TURNS = publish_with_block(b"".join(_sid(v) + _pair(b"k", b"v") for v in (1, 130, 20_000) * 3))


def outcome(fn: Any) -> tuple[Any, ...]:
    try:
        value = fn()
    except RemoteProtocolError as exc:
        return ("raised", type(exc), exc.reason_code, str(exc))
    return ("returned", value)


def cut(packet: Any, identifiers: int | None, users: int | None) -> Any:
    """``packet`` as a reader with these limits returns it."""
    if isinstance(packet, PublishPacket) and identifiers is not None:
        kept = packet.subscription_identifiers[: identifiers + 1]
        packet = attrs.evolve(packet, subscription_identifiers=kept)
    if users is not None and hasattr(packet, "user_properties"):
        packet = attrs.evolve(packet, user_properties=packet.user_properties[: users + 1])
        will = getattr(packet, "will", None)
        if will is not None:
            will = attrs.evolve(will, user_properties=will.user_properties[: users + 1])
            packet = attrs.evolve(packet, will=will)
    return packet


@codec_settings
@given(
    seed=st.sampled_from(list(range(len(SEED_PACKETS) + 1))),
    edits=st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.sampled_from([0x00, 0x01, 0x0B, 0x26, 0x7F, 0x80, 0xFF]) | st.integers(0, 255),
            st.booleans(),
        ),
        max_size=3,
    ),
    identifiers=st.none() | st.integers(0, 6),
    users=st.none() | st.integers(0, 3),
)
@example(seed=0, edits=[], identifiers=0, users=None)
@example(seed=len(SEED_PACKETS), edits=[], identifiers=1, users=0)
def test_the_limit_changes_nothing_but_the_lists(
    codec: types.ModuleType,
    seed: int,
    edits: list[tuple[int, int, bool]],
    identifiers: int | None,
    users: int | None,
) -> None:
    if seed < len(SEED_PACKETS):
        data = bytearray(codec.encode_packet(SEED_PACKETS[seed], version=V5))
    else:
        data = bytearray(TURNS)
    for index, byte, insert in edits:
        index %= len(data)
        if index < 2:
            continue  # keep the fixed header, so that the body gets parsed
        if insert:
            data.insert(index, byte)
        else:
            data[index] = byte
    # Re-frame with the right Remaining Length.
    header_end = 1
    while data[header_end] & 0x80:
        header_end += 1
    body = bytes(data[header_end + 1 :])
    framed = bytes(data[:1]) + _varint(len(body)) + body
    whole = outcome(lambda: codec.decode_packet(framed, version=V5))
    limited = outcome(
        lambda: codec.decode_packet(
            framed,
            version=V5,
            max_subscription_identifiers=identifiers,
            max_user_properties=users,
        )
    )
    if whole[0] == "returned":
        assert limited == ("returned", cut(whole[1], identifiers, users))
    else:
        assert limited == whole
