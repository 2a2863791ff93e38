"""Differential tests: the compiled codec against the pure-Python reference.

For any input -- arbitrary bytes, mutations of valid and malformed encodings,
generated packets with well-typed and ill-typed field values -- both twins
must give equal results: equal packets (compared by type and repr, so that an
``int`` where the reference has an enum member shows up), or an exception of
the same class with the same reason code (and, for
``UnsupportedProtocolVersion``, the same ``protocol_level``). Encoding must
give equal bytes or the same exception.

Skipped when the compiled twin is not built (the pure pass of CI).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import publish_packets
from test_malformed import CASES
from test_subscription_identifier_limit import (
    AFTER_THE_FLOOD,
    _frame,
    _varint,
    publish_with_block,
)
from test_vectors import DECODE_ONLY, VECTORS

from mqttproto import _codec_py as py
from mqttproto.enums import PacketType, ProtocolVersion, QoS, ReasonCode, RetainHandling
from mqttproto.errors import ProtocolError, UnsupportedProtocolVersion
from mqttproto.packets import ConnectPacket, PublishPacket, SubscribePacket, Subscription, Will

try:
    c: Any = importlib.import_module("mqttproto._codec_c")
except ImportError:  # pragma: no cover - the pure pass of CI
    pytest.skip("the compiled codec is not built", allow_module_level=True)

V31 = ProtocolVersion.MQTT_3_1
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
VERSIONS = (V31, V311, V5)


def test_same_names() -> None:
    """The twin has every entry point of the reference (a missing one would
    make mqttproto fall back to the pure codec as a whole)."""
    assert sorted(c.__all__) == sorted(py.__all__)
    for name in py.__all__:
        assert callable(getattr(c, name)), name
        if name != "PacketReader":
            # Same parameters: names, kinds and defaults (annotations aside).
            ours, theirs = (
                [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
                for f in (getattr(c, name), getattr(py, name))
            )
            assert ours == theirs, name


# ---------------------------------------------------------------------------
# Comparing outcomes


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """What calling ``fn`` gave, in a form two implementations can be compared by."""
    try:
        value = fn()
    except ProtocolError as exc:
        level = exc.protocol_level if isinstance(exc, UnsupportedProtocolVersion) else None
        return ("raised", type(exc), type(exc.reason_code), int(exc.reason_code), level)
    except Exception as exc:
        return ("raised", type(exc))
    return ("returned", _shape(value))


def _shape(value: Any) -> Any:
    """Packets by type and repr (an int where an enum was expected differs)."""
    if isinstance(value, list):
        return [_shape(item) for item in value]
    if isinstance(value, bytes):
        return value
    return (type(value), repr(value))


def assert_same(reference: Callable[[], Any], compiled: Callable[[], Any]) -> tuple[Any, ...]:
    expected = outcome(reference)
    assert outcome(compiled) == expected
    return expected


# ---------------------------------------------------------------------------
# Decoding


def check_decode(data: bytes, version: ProtocolVersion, **limits: int | None) -> None:
    assert_same(
        lambda: py.decode_packet(data, version=version, **limits),
        lambda: c.decode_packet(data, version=version, **limits),
    )


def check_reader(
    data: bytes,
    version: ProtocolVersion | None,
    chunks: list[int],
    max_packet_size: int | None = None,
    **limits: int | None,
) -> None:
    """Feed the same pieces to both readers; compare every step and the state after it."""
    readers = [
        module.PacketReader(version=version, max_packet_size=max_packet_size, **limits)
        for module in (py, c)
    ]
    pieces = []
    pos = 0
    for size in chunks:
        pieces.append(data[pos : pos + size])
        pos += size
    pieces.append(data[pos:])
    pieces.append(b"\xc0\x00")  # after an error: the same error again
    for piece in pieces:
        assert_same(
            lambda piece=piece: readers[0].feed(piece),
            lambda piece=piece: readers[1].feed(piece),
        )
        assert readers[0].buffered == readers[1].buffered
        assert readers[0].version == readers[1].version


# More user properties than the limits below: in a PUBLISH property block
# shorter than 128 bytes (the inline path), and in blocks longer than that
# (the general path) with other properties after them.
FLOOD_SEEDS: list[tuple[bytes, ProtocolVersion | None]] = [
    (
        c.encode_packet(
            PublishPacket(
                "t",
                b"",
                user_properties=[("k", str(i)) for i in range(12)],
                message_expiry_interval=9,
            ),
            version=V5,
        ),
        V5,
    ),
    (
        c.encode_packet(
            PublishPacket(
                "a/b",
                b"p",
                QoS.AT_LEAST_ONCE,
                packet_id=3,
                user_properties=[(f"k{i}", "é" * (i % 3)) for i in range(40)],
                topic_alias=4,
                content_type="c",
            ),
            version=V5,
        ),
        V5,
    ),
    (
        c.encode_packet(
            ConnectPacket(
                "id",
                will=Will("w", b"", user_properties=[("w", str(i)) for i in range(30)]),
                user_properties=[("c", str(i)) for i in range(30)],
            ),
            version=V5,
        ),
        None,
    ),
    (
        c.encode_packet(
            SubscribePacket(
                9,
                (Subscription("s/#"),),
                user_properties=[("€", "v")] * 50,
                subscription_identifier=5,
            ),
            version=V5,
        ),
        V5,
    ),
]


# More Subscription Identifiers than the limits below: in a PUBLISH (one to
# four bytes each, with other properties after them; and in turn with User
# Properties, which the encoder does not write), and in a SUBSCRIBE, which
# carries one and must refuse a second whatever the limit.
_TURNS = b"".join(b"\x0b" + _varint(v) + b"\x26\x00\x01k\x00\x01v" for v in (1, 200, 70_000) * 4)
FLOOD_SEEDS += [
    (
        c.encode_packet(
            PublishPacket(
                "a/b",
                b"p",
                QoS.EXACTLY_ONCE,
                packet_id=4,
                subscription_identifiers=(1, 127, 128, 16_384, 268_435_455) * 4,
                topic_alias=2,
                message_expiry_interval=7,
            ),
            version=V5,
        ),
        V5,
    ),
    (_frame(0x30, b"\x00\x01t" + _varint(len(_TURNS)) + _TURNS + b"x"), V5),
    (_frame(0x82, b"\x00\x09\x06\x0b\x05\x0b\x05\x0b\x05\x00\x01s\x00"), V5),
]

SEEDS: list[tuple[bytes, ProtocolVersion | None]] = (
    [(v.data, v.version) for v in VECTORS + DECODE_ONLY]
    + [
        (case.data, None if case.version is None else ProtocolVersion(case.version))
        for case in CASES
    ]
    + [
        # The benchmark's v5 PUBLISH: message expiry and a user property.
        (
            c.encode_packet(
                PublishPacket(
                    "sensors/building1/floor2/temp",
                    bytes(64),
                    qos=QoS.AT_LEAST_ONCE,
                    packet_id=7,
                    message_expiry_interval=3600,
                    user_properties=(("unit", "celsius"),),
                ),
                version=V5,
            ),
            V5,
        )
    ]
    + FLOOD_SEEDS
)


@st.composite
def mutated(
    draw: st.DrawFn, seeds: list[tuple[bytes, ProtocolVersion | None]] = SEEDS
) -> tuple[bytes, ProtocolVersion | None]:
    """A seed encoding with a few bytes flipped, inserted, deleted or cut."""
    data, version = draw(st.sampled_from(seeds))
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["set", "xor", "insert", "delete", "truncate", "append"]))
        index = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "set" and buf:
            buf[index] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x23, 0x2B]))
        elif op == "xor" and buf:
            buf[index] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf.insert(index, draw(st.integers(0, 255)))
        elif op == "delete" and buf:
            del buf[index]
        elif op == "truncate":
            del buf[index:]
        elif op == "append":
            buf += draw(st.binary(max_size=8))
    return bytes(buf), version


def _fixed_length(data: bytes) -> bytes:
    """Rewrite the Remaining Length to match the body, so the body gets parsed."""
    if len(data) < 2:
        return data
    body = data[2:]
    length = len(body)
    header = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        header.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes((data[0],)) + bytes(header) + body


versions = st.sampled_from(VERSIONS)


@given(data=st.binary(max_size=64), version=versions)
@example(data=b"\x30\x05\x00\x01a\x00", version=V5)
def test_arbitrary_bytes(data: bytes, version: ProtocolVersion) -> None:
    check_decode(data, version)
    check_decode(_fixed_length(data), version)


@given(seed=mutated(), version=versions)
def test_mutated_decode_packet(
    seed: tuple[bytes, ProtocolVersion | None], version: ProtocolVersion
) -> None:
    data, seed_version = seed
    check_decode(data, seed_version or version)
    check_decode(_fixed_length(data), seed_version or version)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.lists(mutated(), min_size=1, max_size=4),
    server=st.booleans(),
    chunks=st.lists(st.integers(0, 12), max_size=8),
    max_packet_size=st.none() | st.integers(2, 80),
)
def test_mutated_stream(
    seed: list[tuple[bytes, ProtocolVersion | None]],
    server: bool,
    chunks: list[int],
    max_packet_size: int | None,
) -> None:
    """Several (mutated) packets in one stream, whole and in chunks."""
    data = b"".join(item[0] for item in seed)
    version = None if server else (seed[0][1] or V5)
    check_reader(data, version, [], max_packet_size)
    check_reader(data, version, chunks, max_packet_size)


# The property limits: for user properties none, a count, a byte size, both;
# for Subscription Identifiers none or a count.
property_limits = st.fixed_dictionaries(
    {
        "max_user_properties": st.none() | st.integers(0, 45),
        "max_user_property_bytes": st.none() | st.integers(0, 200),
        "max_subscription_identifiers": st.none() | st.integers(0, 21),
    }
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.lists(mutated(FLOOD_SEEDS) | mutated(), min_size=1, max_size=3),
    server=st.booleans(),
    chunks=st.lists(st.integers(0, 40), max_size=6),
    limits=property_limits,
)
@example(seed=[FLOOD_SEEDS[0]], server=False, chunks=[], limits={"max_user_properties": 3})
@example(seed=[FLOOD_SEEDS[0]], server=False, chunks=[], limits={"max_user_property_bytes": 5})
@example(seed=[FLOOD_SEEDS[1]], server=False, chunks=[], limits={"max_user_properties": 3})
@example(seed=[FLOOD_SEEDS[2]], server=True, chunks=[], limits={"max_user_property_bytes": 9})
@example(seed=[FLOOD_SEEDS[4]], server=False, chunks=[], limits={"max_subscription_identifiers": 0})
@example(
    seed=[FLOOD_SEEDS[5]],
    server=False,
    chunks=[],
    limits={"max_subscription_identifiers": 1, "max_user_properties": 2},
)
@example(seed=[FLOOD_SEEDS[6]], server=False, chunks=[], limits={"max_subscription_identifiers": 0})
def test_mutated_with_property_limits(
    seed: list[tuple[bytes, ProtocolVersion | None]],
    server: bool,
    chunks: list[int],
    limits: dict[str, int | None],
) -> None:
    """With property limits, both twins keep the same prefixes or raise alike."""
    data = b"".join(item[0] for item in seed)
    version = None if server else (seed[0][1] or V5)
    check_reader(data, version, [], **limits)
    check_reader(data, version, chunks, **limits)
    check_decode(seed[0][0], seed[0][1] or V5, **limits)
    check_decode(_fixed_length(seed[0][0]), seed[0][1] or V5, **limits)


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_seeds_byte_by_byte(index: int) -> None:
    data, version = SEEDS[index]
    check_reader(data, version, [1] * len(data))
    if version is not None:
        check_decode(data, version)


@given(data=st.binary(max_size=300), chunks=st.lists(st.integers(0, 40), max_size=6))
def test_arbitrary_stream(data: bytes, chunks: list[int]) -> None:
    check_reader(data, V5, chunks)
    check_reader(data, None, chunks)


def test_topic_caches_keep_twins_equal() -> None:
    """Repeated, colliding and invalid topics: a cache hit never changes a result."""
    names = [f"t/{i}" for i in range(3000)] + ["t/0", "a/+", "", "t/0", "é/ü", "x" * 300]
    for version in (V311, V5):
        for name in names:
            raw = name.encode()
            body = len(raw).to_bytes(2, "big") + raw + (b"\x00" if version == V5 else b"")
            data = bytes((0x30, len(body))) + body if len(body) < 128 else None
            if data is not None:
                check_decode(data, version)


# ---------------------------------------------------------------------------
# Encoding: generated packets, including ill-typed field values


WEIRD: list[Any] = [
    None, True, False, 0, 1, 2, 3, -1, 0xFFFF, 0x10000, 2**32 - 1, 2**32, 2**70, 1.0,
    "", "a", "a/b", "a/+", "#", "a\x00b", "\ud800", "$share/g/a", "é",
    b"", b"x", bytearray(b"xy"), memoryview(b"z"),
    (), (("a", "b"),), [("a", "b")], ("a", "b"), (("a",),), (("a", 1),), (1, 2), [1],
    QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE,
    ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND,
    ReasonCode.UNSPECIFIED_ERROR, ReasonCode.NORMAL_DISCONNECTION,
    RetainHandling.DO_NOT_SEND, Subscription("a"), (Subscription("a/#"),),
    ProtocolVersion.MQTT_3_1_1,
]  # fmt: skip


def _with_fields(packet: Any, changes: dict[str, Any]) -> Any:
    """A copy of ``packet`` with raw field values, bypassing converters."""
    copy = object.__new__(type(packet))
    copy.__dict__.update(vars(packet))
    copy.__dict__.update(changes)
    return copy


PACKETS: list[Any] = [v.packet for v in VECTORS + DECODE_ONLY]


@st.composite
def encodable(draw: st.DrawFn) -> tuple[Any, ProtocolVersion]:
    packet = draw(st.sampled_from(PACKETS))
    names = sorted(vars(packet)) or ["packet_id"]
    changes = draw(st.dictionaries(st.sampled_from(names), st.sampled_from(WEIRD), max_size=3))
    return _with_fields(packet, changes), draw(versions)


def check_encode(packet: Any, version: Any) -> None:
    result = assert_same(
        lambda: py.encode_packet(packet, version=version),
        lambda: c.encode_packet(packet, version=version),
    )
    if result[0] == "returned" and isinstance(version, ProtocolVersion):
        # What was encoded decodes alike too.
        check_decode(result[1], version)


@given(case=encodable())
def test_encode_generated(case: tuple[Any, ProtocolVersion]) -> None:
    check_encode(*case)


publish_fields = st.fixed_dictionaries(
    {
        "topic": st.sampled_from(["a", "a/b", "sensors/x", "", "a/+", "é/ü", "x" * 200]),
        "payload": st.binary(max_size=200),
        "qos": st.sampled_from([QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE, 0, 1, 2]),
        "retain": st.booleans(),
        "duplicate": st.booleans(),
        "packet_id": st.none() | st.integers(0, 0x10000),
    },
    optional={
        "message_expiry_interval": st.none() | st.integers(-1, 2**32),
        "user_properties": st.lists(
            st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=3
        ).map(tuple),
        "topic_alias": st.none() | st.integers(0, 3),
        "payload_format_indicator": st.none() | st.integers(0, 2),
        "content_type": st.none() | st.text(max_size=4),
        "subscription_identifiers": st.lists(st.integers(0, 300), max_size=2).map(tuple),
        "response_topic": st.none() | st.sampled_from(["r", "r/+", "", "é\x00", "\ud800"]),
        "correlation_data": st.none() | st.binary(max_size=4),
    },
)


@given(fields=publish_fields, version=versions)
def test_encode_publish(fields: dict[str, Any], version: ProtocolVersion) -> None:
    packet = _with_fields(PublishPacket("t"), fields)
    check_encode(packet, version)


@pytest.mark.parametrize("version", [*VERSIONS, 5, 4, 7, None, "5"])
def test_encode_version_argument(version: Any) -> None:
    for packet in PACKETS[:40]:
        check_encode(packet, version)
        check_split(packet, version)


# ---------------------------------------------------------------------------
# encode_publish_split and encode_ack: same bytes, or the same exception with
# the same message (both twins hand every refusal to the reference).


def outcome_with_message(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("returned", fn())
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def check_split(packet: Any, version: Any) -> None:
    result = outcome_with_message(lambda: py.encode_publish_split(packet, version=version))
    assert outcome_with_message(lambda: c.encode_publish_split(packet, version=version)) == result
    if result[0] == "returned" and packet.qos:
        head, tail = result[1]
        with_id = _with_fields(packet, {"packet_id": 0xABCD})
        assert head + b"\xab\xcd" + tail == c.encode_packet(with_id, version=version)


@given(fields=publish_fields, version=versions)
@example(
    fields={
        "topic": "a",
        "payload": b"",
        "qos": 1,
        "retain": False,
        "duplicate": True,
        "packet_id": None,
        "subscription_identifiers": (1, 300),
    },
    version=V5,
)
@example(
    fields={
        "topic": "",
        "payload": b"",
        "qos": 2,
        "retain": True,
        "duplicate": False,
        "packet_id": 0,
        "topic_alias": 1,
    },
    version=V5,
)
@example(
    fields={
        "topic": "a",
        "payload": b"",
        "qos": 0,
        "retain": False,
        "duplicate": False,
        "packet_id": 1,
    },
    version=V311,
)
def test_encode_publish_split(fields: dict[str, Any], version: ProtocolVersion) -> None:
    check_split(_with_fields(PublishPacket("t"), fields), version)


@given(data=st.data(), version=versions)
def test_encode_valid_publish(data: st.DataObject, version: ProtocolVersion) -> None:
    """Valid packets with every property (the strategies of the round trips)."""
    packet = data.draw(publish_packets(version))
    check_encode(packet, version)
    check_split(packet, version)


@given(case=encodable())
def test_encode_publish_split_generated(case: tuple[Any, ProtocolVersion]) -> None:
    """Ill-typed fields, and packets that are no PUBLISH (a TypeError from both)."""
    check_split(*case)


def test_encode_publish_split_not_a_publish() -> None:
    for thing in (None, 1, "x", object(), Subscription("a"), *PACKETS[:10]):
        for version in (V5, 7):
            check_split(thing, version)


# PreparedPublish: the same attributes, or the same exception with the same
# message (the compiled one builds itself in C, or from the reference split).

PREPARED_ATTRIBUTES = ("version", "v5", "head", "tail", "size")


def _prepared(cls: Any, packet: Any, version: Any) -> tuple[Any, ...]:
    prepared = cls(packet, version=version)
    return (
        *(getattr(prepared, name) for name in PREPARED_ATTRIBUTES),
        prepared.packet is packet,
        prepared.qos is packet.qos,
        repr(prepared),
    )


def check_prepared(packet: Any, version: Any) -> None:
    result = outcome_with_message(lambda: _prepared(py.PreparedPublish, packet, version))
    assert outcome_with_message(lambda: _prepared(c.PreparedPublish, packet, version)) == result
    # prepare_publish(), the factory without a class call, in both twins.
    for twin in (py, c):
        made = outcome_with_message(
            lambda twin=twin: _prepared(
                lambda p, version: twin.prepare_publish(p, version), packet, version
            )
        )
        assert made == result
    # Made of the split: the same answer, the same error.
    split = outcome_with_message(lambda: py.encode_publish_split(packet, version=version))
    assert result[0] == split[0]
    if result[0] == "raised":
        assert result == split
    else:
        _, _, head, tail, _, same_packet, same_qos, _ = result[1]
        assert (head, tail) == split[1]
        assert same_packet and same_qos


@given(fields=publish_fields, version=st.sampled_from([*VERSIONS, 3, 4, 5, 7, None]))
def test_prepared_publish(fields: dict[str, Any], version: Any) -> None:
    check_prepared(_with_fields(PublishPacket("t"), fields), version)


@given(data=st.data(), version=versions)
def test_prepared_valid_publish(data: st.DataObject, version: ProtocolVersion) -> None:
    check_prepared(data.draw(publish_packets(version)), version)


@given(case=encodable())
def test_prepared_generated(case: tuple[Any, ProtocolVersion]) -> None:
    """Ill-typed fields, and packets that are no PUBLISH (a TypeError from both)."""
    check_prepared(*case)


def test_prepared_immutable_alike() -> None:
    """Setting or deleting an attribute: the same error, the same message."""
    packet = PublishPacket("t", b"x", QoS.AT_LEAST_ONCE, packet_id=1)
    twins = [twin.PreparedPublish(packet, version=V5) for twin in (py, c)]
    for name in ("packet", "version", "v5", "qos", "head", "tail", "size", "other"):
        for action in (setattr, delattr):
            args = (name, 1) if action is setattr else (name,)
            py_outcome, c_outcome = (
                outcome_with_message(partial(action, twin, *args)) for twin in twins
            )
            assert py_outcome[:2] == ("raised", AttributeError)
            assert c_outcome == py_outcome


ACK_VERSIONS = [*VERSIONS, 3, 4, 5, 7, None, "5", 5.0]


def check_ack(packet_type: Any, packet_id: Any, reason_code: Any, version: Any) -> None:
    assert outcome_with_message(
        lambda: c.encode_ack(packet_type, packet_id, reason_code, version=version)
    ) == outcome_with_message(
        lambda: py.encode_ack(packet_type, packet_id, reason_code, version=version)
    )


@given(
    packet_type=st.sampled_from([*PacketType, 3, 4, 5, 6, 7, 8, 4.0]) | st.sampled_from(WEIRD),
    packet_id=st.integers(-1, 0x10000) | st.sampled_from(WEIRD),
    reason_code=st.sampled_from([*ReasonCode, 0x100, -1, 0.0, 16.0]) | st.sampled_from(WEIRD),
    version=st.sampled_from(ACK_VERSIONS),
)
def test_encode_ack(packet_type: Any, packet_id: Any, reason_code: Any, version: Any) -> None:
    check_ack(packet_type, packet_id, reason_code, version)


def test_encode_ack_every_code() -> None:
    """Every (type, code, version): the allowed ones encoded, the rest refused alike."""
    for packet_type in (*PacketType, 0, 16):
        for code in [*ReasonCode, 0x100]:
            for version in ACK_VERSIONS:
                for packet_id in (1, 0xFFFF, 0):
                    check_ack(packet_type, packet_id, code, version)


def test_encode_not_a_packet() -> None:
    for thing in (None, 1, "x", object(), Subscription("a")):
        check_encode(thing, V5)


def test_decode_version_argument() -> None:
    for data, _ in SEEDS[:30]:
        for version in (5, 4, 3, 7, None, "5"):
            assert_same(
                lambda data=data, version=version: py.decode_packet(data, version=version),
                lambda data=data, version=version: c.decode_packet(data, version=version),
            )


def test_reader_arguments() -> None:
    for version in (None, V5, 5, 4, 3, 7, "5", 5.0):
        for size in (None, 1, 2, 2.5, 100, 2**80, "x"):
            assert_same(
                lambda version=version, size=size: (
                    py.PacketReader(version=version, max_packet_size=size).version
                ),
                lambda version=version, size=size: (
                    c.PacketReader(version=version, max_packet_size=size).version
                ),
            )


@pytest.mark.parametrize(
    "block", [case[1] for case in AFTER_THE_FLOOD], ids=[case[0] for case in AFTER_THE_FLOOD]
)
def test_subscription_identifier_floods_with_a_bad_tail(block: bytes) -> None:
    """Each twin's walk past the limit raises where and what the other's does."""
    data = publish_with_block(block)
    for limits in (
        {},
        {"max_subscription_identifiers": 0},
        {"max_subscription_identifiers": 0, "max_user_properties": 0},
    ):
        check_decode(data, V5, **limits)
        check_reader(data, V5, [len(data) // 2], **limits)


def test_property_limit_arguments() -> None:
    data = FLOOD_SEEDS[1][0]
    for name in ("max_user_properties", "max_user_property_bytes", "max_subscription_identifiers"):
        for value in (None, 0, 1, -1, 2.5, 3.0, "3", True, 2**80, -(2**80)):
            assert_same(
                lambda name=name, value=value: py.PacketReader(version=V5, **{name: value}).feed(
                    data
                ),
                lambda name=name, value=value: c.PacketReader(version=V5, **{name: value}).feed(
                    data
                ),
            )
            assert_same(
                lambda name=name, value=value: py.decode_packet(data, version=V5, **{name: value}),
                lambda name=name, value=value: c.decode_packet(data, version=V5, **{name: value}),
            )
            # The arguments are checked after the bytes, as the version is.
            assert_same(
                lambda name=name, value=value: py.decode_packet(
                    b"\x30", version=V5, **{name: value}
                ),
                lambda name=name, value=value: c.decode_packet(
                    b"\x30", version=V5, **{name: value}
                ),
            )


def test_reader_input_types() -> None:
    data = SEEDS[0][0]
    for chunk in (bytearray(data), memoryview(data), b"", 3, "x", [1, 2]):
        assert_same(
            lambda chunk=chunk: py.PacketReader(version=SEEDS[0][1]).feed(chunk),
            lambda chunk=chunk: c.PacketReader(version=SEEDS[0][1]).feed(chunk),
        )
