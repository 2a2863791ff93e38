"""Hypothesis strategies for the codec tests: every packet valid for a version.

Every strategy here takes the protocol ``version`` and generates only packets
that ``encode_packet(packet, version=version)`` must accept:

- MQTT 5 properties appear on 5.0 only, only those the specification allows
  on that packet, each within its range;
- reason codes are the ones the specification lists for that packet (written
  out here from the specification, not imported from the codec, so that a
  mistake in the codec's tables shows up as a failure);
- topic names and filters are valid, with non-ASCII, U+FEFF and astral
  characters but no U+0000 and no lone surrogates.

Sizes are kept small (short strings, short payloads, a few properties) so that
a property test runs its examples in well under a second.

:func:`packets` draws any packet for a version; :data:`PACKET_STRATEGIES` maps
a short name to each per-packet strategy (for parametrized tests); and
:func:`mutated_bytes`, :func:`chunked` and :func:`framed_garbage` help fuzz the
decoder and the stream reader.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from mqttproto import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PingRespPacket,
    ProtocolVersion,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    QoS,
    ReasonCode,
    RetainHandling,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    UnsubAckPacket,
    UnsubscribePacket,
    Will,
)

__all__ = [
    "PACKET_STRATEGIES",
    "VERSIONS",
    "auth_packets",
    "chunked",
    "connack_packets",
    "connect_packets",
    "dense_topic_filters",
    "dense_topic_names",
    "disconnect_packets",
    "framed_garbage",
    "mutated_bytes",
    "packet_ids",
    "packets",
    "pingreq_packets",
    "pingresp_packets",
    "puback_packets",
    "pubcomp_packets",
    "publish_packets",
    "pubrec_packets",
    "pubrel_packets",
    "strategy_names",
    "suback_packets",
    "subscribe_packets",
    "subscriptions",
    "topic_filters",
    "topic_names",
    "unsuback_packets",
    "unsubscribe_packets",
    "user_properties",
    "utf8_strings",
    "wills",
]

V3_1 = ProtocolVersion.MQTT_3_1
V3_1_1 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
VERSIONS: tuple[ProtocolVersion, ...] = (V3_1, V3_1_1, V5)

# ---------------------------------------------------------------------------
# Reason codes each packet may carry, from the MQTT 5.0 specification
# (section 3.x.2.1 of each packet). Hex values on purpose: independent of the
# codec's own tables.

_R = ReasonCode


def _codes(*values: int) -> tuple[ReasonCode, ...]:
    return tuple(ReasonCode(value) for value in values)


CONNACK_CODES_V5 = _codes(
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A,
    0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
)  # fmt: skip
# The six reason codes that are exactly a 3.1/3.1.1 CONNACK return code 0..5;
# any other failure would travel as 3 and decode as SERVER_UNAVAILABLE.
CONNACK_CODES_V3 = (
    _R.SUCCESS,
    _R.UNSUPPORTED_PROTOCOL_VERSION,
    _R.CLIENT_IDENTIFIER_NOT_VALID,
    _R.SERVER_UNAVAILABLE,
    _R.BAD_USER_NAME_OR_PASSWORD,
    _R.NOT_AUTHORIZED,
)
PUBACK_CODES = _codes(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)  # PUBREC too
PUBREL_CODES = _codes(0x00, 0x92)  # PUBCOMP too
SUBACK_CODES_V5 = _codes(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
# 3.1.1 SUBACK carries 0, 1, 2 or 0x80; other failures would decode as 0x80.
SUBACK_CODES_V3 = _codes(0x00, 0x01, 0x02, 0x80)
UNSUBACK_CODES = _codes(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
DISCONNECT_CODES = _codes(
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F,
    0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D,
    0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
)  # fmt: skip
AUTH_CODES = _codes(0x00, 0x18, 0x19)

# ---------------------------------------------------------------------------
# Text

# Characters worth seeing often: multi-byte UTF-8 of every length, U+FEFF
# (a BOM, which must be kept [MQTT-1.5.4-3]), a noncharacter and the last code
# point, a control character, '$' (for $SYS-like names) and spaces.
_INTERESTING = "aZ09 $/é\x01\x7f\u00ff\u0100\u07ff\u0800\ufeff\uffff😀𝄞\U0010ffff"


def _text(exclude: str, *, min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[str]:
    """Text without the characters in ``exclude``.

    Half of the time from any code point (codec="utf-8" leaves out the
    surrogates U+D800..U+DFFF, which have no UTF-8 encoding [MQTT-1.5.4-1]),
    half of the time from the interesting characters above, which the first
    rarely draws. (Two plain character alphabets keep generation fast; one
    alphabet mixing both is twice as slow.)
    """
    return st.one_of(
        st.text(
            st.characters(codec="utf-8", exclude_characters=exclude),
            min_size=min_size,
            max_size=max_size,
        ),
        st.text(
            "".join(c for c in _INTERESTING if c not in exclude),
            min_size=min_size,
            max_size=max_size,
        ),
    )


def utf8_strings(*, min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[str]:
    """A valid MQTT UTF-8 Encoded String: no U+0000, no lone surrogates."""
    return _text("\x00", min_size=min_size, max_size=max_size)


def topic_names() -> st.SearchStrategy[str]:
    """A valid topic name: non-empty, without U+0000, ``+`` or ``#``."""
    return _text("\x00+#", min_size=1, max_size=12)


_LEVELS = _text("\x00+#/", max_size=5)


@st.composite
def _plain_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.one_of(st.just("+"), _LEVELS), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    # One empty level is the empty string, which is not a topic filter.
    return "/".join(levels) or "+"


@st.composite
def _shared_filters(draw: st.DrawFn) -> str:
    group = draw(_text("\x00+#/", min_size=1, max_size=5))
    return f"$share/{group}/{draw(_plain_filters())}"


def topic_filters(version: ProtocolVersion) -> st.SearchStrategy[str]:
    """A valid topic filter, wildcards in legal places; shared ones on 5.0."""
    if version == V5:
        return st.one_of(_plain_filters(), _shared_filters())
    return _plain_filters()


#: A few level values, a ``$`` one among them, so that the filters and names
#: drawn from them meet often (routing tests).
_DENSE_LEVELS = ("a", "b", "", "$s")


def dense_topic_names() -> st.SearchStrategy[str]:
    """A topic name of one to four levels among a few values (``$s`` too)."""
    return (
        st.lists(st.sampled_from(_DENSE_LEVELS), min_size=1, max_size=4).map("/".join).filter(bool)
    )


@st.composite
def dense_topic_filters(draw: st.DrawFn) -> str:
    """A topic filter over the levels of :func:`dense_topic_names`, with ``+``
    and ``#`` in legal places, or none."""
    levels = draw(st.lists(st.sampled_from((*_DENSE_LEVELS, "+")), max_size=4))
    if levels in ([], [""]) or draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


# ---------------------------------------------------------------------------
# Numbers


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers in [low, high], with the bounds drawn often."""
    return st.one_of(st.sampled_from((low, high)), st.integers(low, high))


packet_ids = _ints(1, 0xFFFF)
U16 = _ints(0, 0xFFFF)
U32 = _ints(0, 0xFFFF_FFFF)
NONZERO_U16 = _ints(1, 0xFFFF)
NONZERO_U32 = _ints(1, 0xFFFF_FFFF)
# Subscription identifiers: a variable byte integer 1..268,435,455; the
# one-, two-, three- and four-byte boundaries are worth drawing.
SUBSCRIPTION_IDS = st.one_of(
    st.sampled_from((1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455)),
    st.integers(1, 268_435_455),
)
QOS = st.sampled_from(tuple(QoS))
SHORT_BINARY = st.binary(max_size=12)


# ---------------------------------------------------------------------------
# MQTT 5 properties

_KEYS = st.one_of(st.sampled_from(("k", "key", "é", "")), utf8_strings(max_size=4))


def user_properties() -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """Ordered (name, value) pairs; names repeat often, as MQTT allows."""
    return st.lists(st.tuples(_KEYS, utf8_strings(max_size=6)), max_size=4).map(tuple)


def _properties(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Each property present or absent (absent means None, or () if repeatable)."""
    return st.fixed_dictionaries({}, optional=optional)


def _auth_fix(props: dict[str, Any]) -> dict[str, Any]:
    # Authentication Data needs an Authentication Method (section 3.1.2.11.10).
    if "authentication_data" in props and "authentication_method" not in props:
        del props["authentication_data"]
    return props


def _will_properties() -> st.SearchStrategy[dict[str, Any]]:
    return _properties(
        will_delay_interval=U32,
        payload_format_indicator=st.sampled_from((0, 1)),
        message_expiry_interval=U32,
        content_type=utf8_strings(),
        response_topic=topic_names(),
        correlation_data=SHORT_BINARY,
        user_properties=user_properties(),
    )


def _connect_properties() -> st.SearchStrategy[dict[str, Any]]:
    return _properties(
        session_expiry_interval=U32,
        receive_maximum=NONZERO_U16,
        maximum_packet_size=NONZERO_U32,
        topic_alias_maximum=U16,
        request_response_information=st.booleans(),
        request_problem_information=st.booleans(),
        user_properties=user_properties(),
        authentication_method=utf8_strings(),
        authentication_data=SHORT_BINARY,
    ).map(_auth_fix)


def _connack_properties() -> st.SearchStrategy[dict[str, Any]]:
    return _properties(
        session_expiry_interval=U32,
        receive_maximum=NONZERO_U16,
        maximum_qos=st.sampled_from((QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE)),
        retain_available=st.booleans(),
        maximum_packet_size=NONZERO_U32,
        assigned_client_identifier=utf8_strings(),
        topic_alias_maximum=U16,
        reason_string=utf8_strings(),
        user_properties=user_properties(),
        wildcard_subscription_available=st.booleans(),
        subscription_identifiers_available=st.booleans(),
        shared_subscription_available=st.booleans(),
        server_keep_alive=U16,
        response_information=utf8_strings(),
        server_reference=utf8_strings(),
        authentication_method=utf8_strings(),
        authentication_data=SHORT_BINARY,
    ).map(_auth_fix)


def _publish_properties() -> st.SearchStrategy[dict[str, Any]]:
    return _properties(
        payload_format_indicator=st.sampled_from((0, 1)),
        message_expiry_interval=U32,
        topic_alias=NONZERO_U16,
        response_topic=topic_names(),
        correlation_data=SHORT_BINARY,
        user_properties=user_properties(),
        subscription_identifiers=st.lists(SUBSCRIPTION_IDS, max_size=3).map(tuple),
        content_type=utf8_strings(),
    )


def _reason_properties() -> st.SearchStrategy[dict[str, Any]]:
    """Acks, SUBACK, UNSUBACK: a reason string and user properties."""
    return _properties(reason_string=utf8_strings(), user_properties=user_properties())


def _v5(version: ProtocolVersion, strategy: st.SearchStrategy[dict[str, Any]]) -> Any:
    """Properties on 5.0; none at all on 3.1/3.1.1."""
    return strategy if version == V5 else st.just({})


# ---------------------------------------------------------------------------
# Packets


@st.composite
def wills(draw: st.DrawFn, version: ProtocolVersion) -> Will:
    """The will of a CONNECT, with will properties on 5.0."""
    return Will(
        topic=draw(topic_names()),
        payload=draw(SHORT_BINARY),
        qos=draw(QOS),
        retain=draw(st.booleans()),
        **draw(_v5(version, _will_properties())),
    )


@st.composite
def connect_packets(draw: st.DrawFn, version: ProtocolVersion) -> ConnectPacket:
    """A CONNECT whose protocol_version is ``version``."""
    clean_start = draw(st.booleans())
    if version == V3_1:
        # MQTT 3.1: the client identifier has 1 to 23 characters.
        client_id = draw(utf8_strings(min_size=1, max_size=23))
    elif version == V3_1_1 and not clean_start:
        # [MQTT-3.1.3-7]: an empty client identifier needs a clean session.
        client_id = draw(utf8_strings(min_size=1))
    else:
        client_id = draw(utf8_strings())
    username = draw(st.none() | utf8_strings())
    password = draw(st.none() | SHORT_BINARY)
    if version != V5 and username is None:
        password = None  # [MQTT-3.1.2-22]: no password without a user name
    return ConnectPacket(
        client_id=client_id,
        protocol_version=version,
        clean_start=clean_start,
        keep_alive=draw(U16),
        username=username,
        password=password,
        will=draw(st.none() | wills(version)),
        **draw(_v5(version, _connect_properties())),
    )


@st.composite
def connack_packets(draw: st.DrawFn, version: ProtocolVersion) -> ConnAckPacket:
    """A CONNACK; session present only with SUCCESS, and never on 3.1."""
    codes = CONNACK_CODES_V5 if version == V5 else CONNACK_CODES_V3
    reason = draw(st.sampled_from(codes))
    session_present = version != V3_1 and reason == ReasonCode.SUCCESS and draw(st.booleans())
    return ConnAckPacket(
        session_present=session_present,
        reason_code=reason,
        **draw(_v5(version, _connack_properties())),
    )


@st.composite
def publish_packets(draw: st.DrawFn, version: ProtocolVersion) -> PublishPacket:
    """A PUBLISH; on 5.0 the topic may be empty when a topic alias is given."""
    qos = draw(QOS)
    properties = draw(_v5(version, _publish_properties()))
    if properties.get("topic_alias") is not None:
        topic = draw(st.just("") | topic_names())
    else:
        topic = draw(topic_names())
    return PublishPacket(
        topic=topic,
        payload=draw(st.binary(max_size=24)),
        qos=qos,
        retain=draw(st.booleans()),
        duplicate=bool(qos) and draw(st.booleans()),
        packet_id=draw(packet_ids) if qos else None,
        **properties,
    )


def _acks(cls: type[Any], codes: tuple[ReasonCode, ...]) -> Callable[..., Any]:
    @st.composite
    def strategy(draw: st.DrawFn, version: ProtocolVersion) -> Any:
        if version != V5:
            return cls(packet_id=draw(packet_ids))
        return cls(
            packet_id=draw(packet_ids),
            reason_code=draw(st.sampled_from(codes)),
            **draw(_reason_properties()),
        )

    strategy.__name__ = f"{cls.__name__}_strategy"
    strategy.__doc__ = f"A {cls.__name__}; reason code and properties on 5.0 only."
    return strategy


puback_packets = _acks(PubAckPacket, PUBACK_CODES)
pubrec_packets = _acks(PubRecPacket, PUBACK_CODES)
pubrel_packets = _acks(PubRelPacket, PUBREL_CODES)
pubcomp_packets = _acks(PubCompPacket, PUBREL_CODES)


@st.composite
def subscriptions(draw: st.DrawFn, version: ProtocolVersion) -> Subscription:
    """One subscription; MQTT 5 options on 5.0, never no_local on a shared one."""
    topic_filter = draw(topic_filters(version))
    max_qos = draw(QOS)
    if version != V5:
        return Subscription(topic_filter, max_qos)
    return Subscription(
        topic_filter,
        max_qos,
        # [MQTT-3.8.3-4]: no local is a protocol error on a shared subscription.
        no_local=not topic_filter.startswith("$share/") and draw(st.booleans()),
        retain_as_published=draw(st.booleans()),
        retain_handling=draw(st.sampled_from(tuple(RetainHandling))),
    )


@st.composite
def subscribe_packets(draw: st.DrawFn, version: ProtocolVersion) -> SubscribePacket:
    """A SUBSCRIBE with one to four subscriptions."""
    properties = {}
    if version == V5:
        properties = draw(
            _properties(subscription_identifier=SUBSCRIPTION_IDS, user_properties=user_properties())
        )
    return SubscribePacket(
        packet_id=draw(packet_ids),
        subscriptions=draw(st.lists(subscriptions(version), min_size=1, max_size=4)),
        **properties,
    )


@st.composite
def suback_packets(draw: st.DrawFn, version: ProtocolVersion) -> SubAckPacket:
    """A SUBACK with one to four reason codes."""
    codes = SUBACK_CODES_V5 if version == V5 else SUBACK_CODES_V3
    return SubAckPacket(
        packet_id=draw(packet_ids),
        reason_codes=draw(st.lists(st.sampled_from(codes), min_size=1, max_size=4)),
        **draw(_v5(version, _reason_properties())),
    )


@st.composite
def unsubscribe_packets(draw: st.DrawFn, version: ProtocolVersion) -> UnsubscribePacket:
    """An UNSUBSCRIBE with one to four topic filters."""
    properties = draw(_v5(version, _properties(user_properties=user_properties())))
    return UnsubscribePacket(
        packet_id=draw(packet_ids),
        topic_filters=draw(st.lists(topic_filters(version), min_size=1, max_size=4)),
        **properties,
    )


@st.composite
def unsuback_packets(draw: st.DrawFn, version: ProtocolVersion) -> UnsubAckPacket:
    """An UNSUBACK; one to four reason codes and properties on 5.0 only."""
    if version != V5:
        return UnsubAckPacket(packet_id=draw(packet_ids))
    return UnsubAckPacket(
        packet_id=draw(packet_ids),
        reason_codes=draw(st.lists(st.sampled_from(UNSUBACK_CODES), min_size=1, max_size=4)),
        **draw(_reason_properties()),
    )


def pingreq_packets(version: ProtocolVersion) -> st.SearchStrategy[PingReqPacket]:
    """PINGREQ (the same in every version)."""
    return st.just(PingReqPacket())


def pingresp_packets(version: ProtocolVersion) -> st.SearchStrategy[PingRespPacket]:
    """PINGRESP (the same in every version)."""
    return st.just(PingRespPacket())


@st.composite
def disconnect_packets(draw: st.DrawFn, version: ProtocolVersion) -> DisconnectPacket:
    """A DISCONNECT; reason code and properties on 5.0 only."""
    if version != V5:
        return DisconnectPacket()
    return DisconnectPacket(
        reason_code=draw(st.sampled_from(DISCONNECT_CODES)),
        **draw(
            _properties(
                session_expiry_interval=U32,
                reason_string=utf8_strings(),
                user_properties=user_properties(),
                server_reference=utf8_strings(),
            )
        ),
    )


def auth_packets(version: ProtocolVersion) -> st.SearchStrategy[AuthPacket]:
    """An AUTH (MQTT 5 only: ValueError for 3.1/3.1.1)."""
    if version != V5:
        raise ValueError("AUTH exists in MQTT 5 only")
    return st.builds(
        lambda code, props: AuthPacket(reason_code=code, **props),
        st.sampled_from(AUTH_CODES),
        _properties(
            authentication_method=utf8_strings(),
            authentication_data=SHORT_BINARY,
            reason_string=utf8_strings(),
            user_properties=user_properties(),
        ).map(_auth_fix),
    )


PACKET_STRATEGIES: dict[str, Callable[[ProtocolVersion], st.SearchStrategy[Any]]] = {
    "connect": connect_packets,
    "connack": connack_packets,
    "publish": publish_packets,
    "puback": puback_packets,
    "pubrec": pubrec_packets,
    "pubrel": pubrel_packets,
    "pubcomp": pubcomp_packets,
    "subscribe": subscribe_packets,
    "suback": suback_packets,
    "unsubscribe": unsubscribe_packets,
    "unsuback": unsuback_packets,
    "pingreq": pingreq_packets,
    "pingresp": pingresp_packets,
    "disconnect": disconnect_packets,
    "auth": auth_packets,
}
"""Every per-packet strategy by a short name."""


def strategy_names(version: ProtocolVersion) -> list[str]:
    """The names in :data:`PACKET_STRATEGIES` that apply to ``version``."""
    return [name for name in PACKET_STRATEGIES if name != "auth" or version == V5]


def packets(version: ProtocolVersion) -> st.SearchStrategy[Packet]:
    """Any packet ``encode_packet`` accepts for ``version``."""
    return st.one_of([PACKET_STRATEGIES[name](version) for name in strategy_names(version)])


# ---------------------------------------------------------------------------
# Fuzzing helpers


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, *, max_mutations: int = 3) -> bytes:
    """``data`` with one to ``max_mutations`` byte-level mutations.

    Each mutation flips one bit, overwrites a byte, inserts bytes, deletes a
    run of bytes, or truncates; the result differs from ``data`` in most
    cases but is not guaranteed to (a deletion of nothing, say).
    """
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_mutations))):
        operation = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate")))
        if operation == "insert" or not buf:
            at = draw(st.integers(0, len(buf)))
            buf[at:at] = draw(st.binary(min_size=1, max_size=4))
            continue
        at = draw(st.integers(0, len(buf) - 1))
        if operation == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            buf[at] = draw(st.sampled_from((0x00, 0x7F, 0x80, 0xFF)) | st.integers(0, 255))
        elif operation == "delete":
            del buf[at : at + draw(st.integers(1, 4))]
        else:
            del buf[at:]
    return bytes(buf)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` split at random offsets into chunks (empty chunks included)."""
    if not data:
        return [b""]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[start:stop] for start, stop in itertools.pairwise(bounds)]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A correct fixed header (any type and flags) around a random body.

    Random bytes rarely get past the fixed header; this reaches every packet
    type's body decoder with garbage.
    """
    body = draw(st.binary(max_size=48))
    first = draw(st.integers(0, 255))
    return bytes((first,)) + _varint(len(body)) + body


# ---------------------------------------------------------------------------
# Authorization (tests/test_auth.py): topic filters and names over a tiny
# alphabet of levels, so that a brute-force check over every short topic name
# decides filter inclusion exactly. "c" never appears in a filter: it stands for
# "any other level". "$x" exercises the $-topic rule, "" the empty level.

AUTH_LITERAL_LEVELS = ("a", "b", "$x", "")
AUTH_NAME_LEVELS = (*AUTH_LITERAL_LEVELS, "c")
#: Deep enough that a difference between two filters of at most
#: AUTH_MAX_FILTER_LEVELS levels shows on some topic name of at most this depth.
AUTH_MAX_FILTER_LEVELS = 3
AUTH_MAX_NAME_LEVELS = AUTH_MAX_FILTER_LEVELS + 1


@st.composite
def small_topic_filters(draw: st.DrawFn) -> str:
    """A valid topic filter of at most three levels over the tiny alphabet."""
    count = draw(st.integers(1, AUTH_MAX_FILTER_LEVELS))
    levels = draw(
        st.lists(st.sampled_from((*AUTH_LITERAL_LEVELS, "+")), min_size=count, max_size=count)
    )
    if draw(st.booleans()):
        levels[-1] = "#"
    topic_filter = "/".join(levels)
    return topic_filter or "+"


def small_topic_names() -> st.SearchStrategy[str]:
    """A valid topic name over the tiny alphabet, at most four levels."""
    return (
        st.lists(st.sampled_from(AUTH_NAME_LEVELS), min_size=1, max_size=AUTH_MAX_NAME_LEVELS)
        .map("/".join)
        .filter(bool)
    )


def all_small_topic_names() -> list[str]:
    """Every topic name :func:`small_topic_names` can draw (about 780)."""
    names = [
        "/".join(levels)
        for depth in range(1, AUTH_MAX_NAME_LEVELS + 1)
        for levels in itertools.product(AUTH_NAME_LEVELS, repeat=depth)
    ]
    return [name for name in names if name]


def client_identifiers() -> st.SearchStrategy[str]:
    """Client ids and usernames, including ones full of topic syntax."""
    return st.one_of(
        st.sampled_from(("dev1", "+", "#", "a/b", "$SYS", "a/+", "%u", "%c", "", "x#")),
        st.text(alphabet="ab+#/$%cu", max_size=5),
    )
