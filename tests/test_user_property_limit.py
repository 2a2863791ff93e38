"""The user-property limit of ``PacketReader`` and ``decode_packet``.

With ``max_user_properties`` / ``max_user_property_bytes``, the
``user_properties`` of each property block stop growing once they are past
the limit: they are the shortest prefix of the whole list that is past it.
Nothing else changes: every other field, and every error, is what decoding
without the limit gives (the property test at the end holds both twins to
that for mutated packets). What it buys: a flood of user properties builds
only that prefix.

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
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    MalformedPacket,
    Packet,
    ProtocolVersion,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    QoS,
    ReasonCode,
    RemoteProtocolError,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    TopicAliasInvalid,
    UnsubAckPacket,
    UnsubscribePacket,
    Will,
)

V5 = ProtocolVersion.MQTT_5_0
RC = ReasonCode
Pairs = tuple[tuple[str, str], ...]

# The codec fixture is function-scoped but stateless (it is a module).
codec_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def props(count: int, name: str = "k", value: str = "v") -> Pairs:
    return tuple((f"{name}{i}", value) for i in range(count))


def past(pairs: Pairs, count: int | None, size: int | None) -> Pairs:
    """The shortest prefix of ``pairs`` past the limit, or all of them (the contract)."""
    kept: list[tuple[str, str]] = []
    total = 0
    for name, value in pairs:
        if (count is not None and len(kept) > count) or (size is not None and total > size):
            break
        kept.append((name, value))
        total += len(name.encode()) + len(value.encode())
    return tuple(kept)


def limited(packet: Any, count: int | None, size: int | None) -> Any:
    """``packet`` as a reader with this limit returns it: each block's list cut."""
    if not hasattr(packet, "user_properties"):
        return packet
    changes: dict[str, Any] = {"user_properties": past(packet.user_properties, count, size)}
    will = getattr(packet, "will", None)
    if will is not None:
        changes["will"] = attrs.evolve(
            will, user_properties=past(will.user_properties, count, size)
        )
    return attrs.evolve(packet, **changes)


def decode_both_ways(codec: types.ModuleType, data: bytes, **limits: Any) -> Packet:
    """Decode with ``decode_packet`` and with a reader; both must agree."""
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


def _pair(name: bytes, value: bytes) -> bytes:
    return b"\x26" + len(name).to_bytes(2, "big") + name + len(value).to_bytes(2, "big") + value


def publish_with_block(
    block: bytes, *, topic: bytes = b"t", packet_id: int = 7, declared: int | None = None
) -> bytes:
    """A QoS 1 PUBLISH with ``block`` as its property block and payload ``payload``."""
    length = len(block) if declared is None else declared
    body = (
        len(topic).to_bytes(2, "big")
        + topic
        + packet_id.to_bytes(2, "big")
        + _varint(length)
        + block
        + b"payload"
    )
    return b"\x32" + _varint(len(body)) + body


# ---------------------------------------------------------------------------
# What is kept


# 5 pairs fit the inline PUBLISH path (a property block under 128 bytes);
# 40 and 1000 take the general one.
@pytest.mark.parametrize("count", [5, 40, 1000])
@pytest.mark.parametrize("limit", [0, 1, 3, 4])
def test_count_limit_keeps_the_first_past_it(
    codec: types.ModuleType, count: int, limit: int
) -> None:
    packet = PublishPacket(
        "t", b"payload", QoS.AT_LEAST_ONCE, packet_id=7, user_properties=props(count)
    )
    data = codec.encode_packet(packet, version=V5)
    got = decode_both_ways(codec, data, max_user_properties=limit)
    assert got.user_properties == props(count)[: limit + 1]
    assert got == attrs.evolve(packet, user_properties=got.user_properties)


@pytest.mark.parametrize("count", [0, 1, 4])
def test_within_the_count_limit_everything_is_kept(codec: types.ModuleType, count: int) -> None:
    packet = PublishPacket("t", b"", user_properties=props(count))
    data = codec.encode_packet(packet, version=V5)
    assert decode_both_ways(codec, data, max_user_properties=4) == packet


@pytest.mark.parametrize("limit", [0, 2, 3, 4, 5, 6, 99, 100, 101, 2000])
def test_byte_limit_keeps_up_to_the_one_that_crosses_it(
    codec: types.ModuleType, limit: int
) -> None:
    # 2, 4 and 6 UTF-8 bytes, then 100; the names and values count, not the
    # identifiers or length prefixes.
    pairs = (("é", ""), ("ab", "é"), ("", "€é"), ("k", "v" * 99), ("x", "y"))
    packet = PublishPacket("t", b"", user_properties=pairs * 20)
    data = codec.encode_packet(packet, version=V5)
    got = decode_both_ways(codec, data, max_user_property_bytes=limit)
    assert got.user_properties == past(pairs * 20, None, limit)
    total = sum(len(n.encode()) + len(v.encode()) for n, v in got.user_properties)
    assert total > limit
    assert total - sum(len(s.encode()) for s in got.user_properties[-1]) <= limit


def test_both_limits_at_once_stop_at_the_first_crossed(codec: types.ModuleType) -> None:
    pairs = (("a", "b" * 10),) * 10
    data = codec.encode_packet(PublishPacket("t", b"", user_properties=pairs), version=V5)
    got = decode_both_ways(codec, data, max_user_properties=5, max_user_property_bytes=30)
    assert got.user_properties == pairs[:3]  # 33 bytes after three
    got = decode_both_ways(codec, data, max_user_properties=1, max_user_property_bytes=30)
    assert got.user_properties == pairs[:2]


def test_a_block_read_before_without_a_limit_is_limited_now(codec: types.ModuleType) -> None:
    """The decoders remember recent PUBLISH property blocks (the pure one
    whole, with what its limit checks saw): the same bytes read again by a
    reader with a limit are cut as if never seen."""
    pairs = (("a", "bcd"), ("e", "f"), ("gh", "i"), ("j", "k"))  # 4, 2, 3 and 2 bytes
    data = codec.encode_packet(
        PublishPacket("t", b"", message_expiry_interval=5, user_properties=pairs), version=V5
    )
    for _ in range(2):
        assert decode_both_ways(codec, data).user_properties == pairs
    for count in (None, 0, 1, 2, 3, 4):
        for size in (None, 0, 3, 4, 5, 6, 8, 9, 11):
            for _ in range(2):
                got = decode_both_ways(
                    codec, data, max_user_properties=count, max_user_property_bytes=size
                )
                assert got.user_properties == past(pairs, count, size), (count, size)
                assert got.message_expiry_interval == 5
        assert decode_both_ways(codec, data).user_properties == pairs


def test_no_limit_is_the_default(codec: types.ModuleType) -> None:
    packet = PublishPacket("t", b"", user_properties=props(500))
    data = codec.encode_packet(packet, version=V5)
    limits = {"max_user_properties": None, "max_user_property_bytes": None}
    assert decode_both_ways(codec, data) == packet
    assert decode_both_ways(codec, data, **limits) == packet


# Every packet that has a property block, with 10 user properties in each.
TEN = props(10)
EVERY_BLOCK: list[Packet] = [
    ConnectPacket(
        "c",
        user_properties=TEN,
        will=Will("w/t", b"x", user_properties=props(10, "w")),
        session_expiry_interval=9,
    ),
    ConnAckPacket(False, RC.SUCCESS, user_properties=TEN, maximum_qos=QoS.AT_LEAST_ONCE),
    PublishPacket("t", b"x", QoS.EXACTLY_ONCE, packet_id=3, user_properties=TEN, topic_alias=2),
    PubAckPacket(1, RC.QUOTA_EXCEEDED, user_properties=TEN, reason_string="r"),
    PubRecPacket(2, RC.SUCCESS, user_properties=TEN),
    PubRelPacket(3, RC.SUCCESS, user_properties=TEN),
    PubCompPacket(4, RC.SUCCESS, user_properties=TEN),
    SubscribePacket(5, (Subscription("a/#"),), user_properties=TEN, subscription_identifier=7),
    SubAckPacket(6, (RC.GRANTED_QOS_1,), user_properties=TEN),
    UnsubscribePacket(7, ("a/#",), user_properties=TEN),
    UnsubAckPacket(8, (RC.SUCCESS,), user_properties=TEN),
    DisconnectPacket(RC.NORMAL_DISCONNECTION, user_properties=TEN),
    AuthPacket(
        RC.CONTINUE_AUTHENTICATION,
        authentication_method="m",
        authentication_data=b"d",
        user_properties=TEN,
    ),
]


@pytest.mark.parametrize("packet", EVERY_BLOCK, ids=lambda p: type(p).__name__)
def test_every_property_block_is_limited_on_its_own(
    codec: types.ModuleType, packet: Packet
) -> None:
    data = codec.encode_packet(packet, version=V5)
    got = decode_both_ways(codec, data, max_user_properties=2)
    assert got == limited(packet, 2, None)
    assert got.user_properties == TEN[:3]  # type: ignore[attr-defined]
    if isinstance(packet, ConnectPacket):
        # The will's block counts on its own, not after the CONNECT's ten.
        assert got.will.user_properties == props(3, "w")  # type: ignore[attr-defined]
        server = codec.PacketReader(max_user_properties=2)  # a server before CONNECT
        assert server.feed(data) == [got]


def test_properties_after_the_limit_are_still_read(codec: types.ModuleType) -> None:
    packet = PublishPacket(
        "",
        b"payload",
        QoS.AT_LEAST_ONCE,
        packet_id=9,
        user_properties=props(300),
        topic_alias=5,
        message_expiry_interval=60,
        content_type="text/plain",
        response_topic="re/ply",
        correlation_data=b"\x00\x01",
        payload_format_indicator=1,
    )
    # The user properties first, so that every other property comes after
    # the limit is passed (the encoder would write them last).
    block = b"".join(_pair(n.encode(), v.encode()) for n, v in props(300)) + (
        b"\x23\x00\x05"  # topic alias 5 (the topic is empty)
        b"\x02\x00\x00\x00\x3c"  # message expiry 60
        b"\x03\x00\x0atext/plain"
        b"\x08\x00\x06re/ply"
        b"\x09\x00\x02\x00\x01"  # correlation data
        b"\x01\x01"  # payload format indicator
    )
    data = publish_with_block(block, topic=b"", packet_id=9)
    assert codec.decode_packet(data, version=V5) == packet
    got = decode_both_ways(codec, data, max_user_properties=10)
    assert got == attrs.evolve(packet, user_properties=props(11))


# ---------------------------------------------------------------------------
# Errors: the same with and without the limit


FLOOD = b"".join(_pair(b"k%d" % i, b"v") for i in range(300))

# Each is a flood of 300 valid user properties and then something wrong.
AFTER_THE_FLOOD: list[tuple[str, bytes, type[RemoteProtocolError], RC]] = [
    ("name-not-utf8", FLOOD + _pair(b"\xff", b"v"), MalformedPacket, RC.MALFORMED_PACKET),
    ("value-not-utf8", FLOOD + _pair(b"k", b"a\x80"), MalformedPacket, RC.MALFORMED_PACKET),
    ("surrogate", FLOOD + _pair(b"k", b"\xed\xa0\x80"), MalformedPacket, RC.MALFORMED_PACKET),
    ("overlong-nul", FLOOD + _pair(b"\xc0\x80", b""), MalformedPacket, RC.MALFORMED_PACKET),
    ("truncated-sequence", FLOOD + _pair(b"\xe2\x82", b""), MalformedPacket, RC.MALFORMED_PACKET),
    ("past-u10ffff", FLOOD + _pair(b"\xf4\x90\x80\x80", b""), MalformedPacket, RC.MALFORMED_PACKET),
    ("nul-in-name", FLOOD + _pair(b"a\x00", b"v"), MalformedPacket, RC.MALFORMED_PACKET),
    ("nul-in-value", FLOOD + _pair(b"k", b"\x00"), MalformedPacket, RC.MALFORMED_PACKET),
    ("name-overruns", FLOOD + b"\x26\x00\x09abc", MalformedPacket, RC.MALFORMED_PACKET),
    ("value-overruns", FLOOD + b"\x26\x00\x01a\x00\x05ab", MalformedPacket, RC.MALFORMED_PACKET),
    ("no-name-length", FLOOD + b"\x26\x00", MalformedPacket, RC.MALFORMED_PACKET),
    ("no-value-length", FLOOD + b"\x26\x00\x01a", MalformedPacket, RC.MALFORMED_PACKET),
    ("unknown-identifier", FLOOD + b"\x7f", MalformedPacket, RC.MALFORMED_PACKET),
    ("not-in-publish", FLOOD + b"\x11\x00\x00\x00\x01", MalformedPacket, RC.MALFORMED_PACKET),
    ("duplicate", b"\x01\x01" + FLOOD + b"\x01\x00", RemoteProtocolError, RC.PROTOCOL_ERROR),
    ("topic-alias-0", FLOOD + b"\x23\x00\x00", TopicAliasInvalid, RC.TOPIC_ALIAS_INVALID),
    ("bad-flag", FLOOD + b"\x01\x02", RemoteProtocolError, RC.PROTOCOL_ERROR),
    ("response-filter", FLOOD + b"\x08\x00\x01#", RemoteProtocolError, RC.PROTOCOL_ERROR),
]


@pytest.mark.parametrize(
    ("block", "error", "code"),
    [case[1:] for case in AFTER_THE_FLOOD],
    ids=[case[0] for case in AFTER_THE_FLOOD],
)
@pytest.mark.parametrize(
    "limits",
    [{"max_user_properties": 10}, {"max_user_property_bytes": 50}, {"max_user_properties": 0}],
    ids=["count", "bytes", "zero"],
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
        # building the properties would have.
        assert str(exc) == str(without.value)


def test_the_block_length_still_binds_the_walk(codec: types.ModuleType) -> None:
    """A block whose declared length ends inside a user property past the limit."""
    data = publish_with_block(FLOOD + _pair(b"name", b"value"), declared=len(FLOOD) + 5)
    for limits in ({}, {"max_user_properties": 3}):
        with pytest.raises(MalformedPacket, match="user property name runs past"):
            codec.decode_packet(data, version=V5, **limits)


# ---------------------------------------------------------------------------
# What a flood costs


def flood_of_distinct_pairs(size: int) -> PublishPacket:
    """A QoS 1 PUBLISH of about ``size`` bytes, every user property different."""
    pairs = tuple((format(i, "x"), "") for i in range(size // 10))
    return PublishPacket("t", b"", QoS.AT_LEAST_ONCE, packet_id=7, user_properties=pairs)


def peak_while(fn: Any) -> tuple[Any, int]:
    """``fn()`` and the most Python heap it held at once (tracemalloc)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_flood_builds_only_what_the_limit_keeps(codec: types.ModuleType) -> None:
    """1 MiB of distinct user properties: the limit bounds the objects built."""
    packet = flood_of_distinct_pairs(1024 * 1024)
    data = codec.encode_packet(packet, version=V5)
    assert len(data) <= 1024 * 1024
    assert len(packet.user_properties) > 100_000
    got, peak = peak_while(
        lambda: codec.PacketReader(version=V5, max_user_properties=64).feed(data)
    )
    assert got == [attrs.evolve(packet, user_properties=packet.user_properties[:65])]
    # 65 tuples and their strings take a few KiB; the bound leaves room for
    # the decoder's cache of recent user properties growing its table.
    assert peak < len(data) // 4


def test_without_a_limit_a_flood_builds_every_property(codec: types.ModuleType) -> None:
    """What the bound above is measured against (on 64 KiB, to keep it quick)."""
    packet = flood_of_distinct_pairs(64 * 1024)
    data = codec.encode_packet(packet, version=V5)
    whole, peak = peak_while(lambda: codec.PacketReader(version=V5).feed(data))
    assert whole == [packet]
    # A tuple and two strings for each of the >6,000 properties.
    assert peak > 8 * len(data)


# ---------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize("name", ["max_user_properties", "max_user_property_bytes"])
def test_limit_arguments_are_checked(codec: types.ModuleType, name: str) -> None:
    data = codec.encode_packet(PublishPacket("t", b""), version=V5)
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
# The contract, for mutated packets: the limit changes nothing but the lists


SEED_PACKETS: list[Packet] = [
    *EVERY_BLOCK,
    PublishPacket("a/b", b"p", QoS.AT_LEAST_ONCE, packet_id=1, user_properties=props(40, "é", "€")),
    PublishPacket("a", b"", user_properties=props(3), message_expiry_interval=5),
]


def outcome(fn: Any) -> tuple[Any, ...]:
    try:
        value = fn()
    except RemoteProtocolError as exc:
        return ("raised", type(exc), exc.reason_code, str(exc))
    return ("returned", value)


@codec_settings
@given(
    seed=st.sampled_from(SEED_PACKETS),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.booleans()), max_size=3
    ),
    count=st.none() | st.integers(0, 12),
    size=st.none() | st.integers(0, 120),
)
@example(seed=SEED_PACKETS[13], edits=[], count=3, size=None)
def test_the_limit_changes_nothing_but_user_properties(
    codec: types.ModuleType,
    seed: Packet,
    edits: list[tuple[int, int, bool]],
    count: int | None,
    size: int | None,
) -> None:
    data = bytearray(codec.encode_packet(seed, version=V5))
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
    cut = outcome(
        lambda: codec.decode_packet(
            framed, version=V5, max_user_properties=count, max_user_property_bytes=size
        )
    )
    if whole[0] == "returned":
        assert cut == ("returned", limited(whole[1], count, size))
    else:
        assert cut == whole
