"""Fuzz harness for the packet codec: both twins, every version, any chunking.

Run a campaign (see fuzz/README.md)::

    .venv/bin/python fuzz/fuzz_codec.py CORPUS_DIR -max_total_time=3600

``TestOneInput`` is importable without atheris, so that the test suite replays
the corpus on every run (tests/test_fuzz_corpus.py).

Input layout
------------

``data[0:3]`` is the selector, the rest (at most ``MAX_PAYLOAD`` bytes; more
is cut off) is the byte stream under test.

- ``data[0]`` bits 0-1: the protocol version: 0 = 3.1, 1 = 3.1.1, 2 = 5.0,
  3 = None (a server's reader before CONNECT; ``decode_packet`` gets 5.0).
- ``data[0]`` bits 2-3: the reader's ``max_packet_size``: 0 or 1 = None,
  2 = small (``data[1] + 2``: 2 to 257), 3 = medium (``(data[1] + 1) * 256``:
  256 to 65,536).
- ``data[0]`` bits 4-5: how the stream is cut for the chunked run, with
  ``p = data[2]``: 0 = pieces of ``p % 64 + 1`` bytes; 1 = pseudo-random piece
  sizes from 0 (an empty feed) to ``2 * (p % 32 + 1)``, seeded with ``p``;
  2 = two pieces, cut at ``p * len // 255``; 3 = a cut before every byte that
  equals ``p``.
- ``data[0]`` bits 6-7: the user-property limit of invariant 8: 0 = none,
  1 = ``max_user_properties=0``, 2 = ``max_user_properties=3``,
  3 = ``max_user_property_bytes=16``.
- ``data[1]``: the ``max_packet_size`` parameter when bits 2-3 pick one;
  otherwise its bits 0-1 pick the Subscription Identifier limit of
  invariant 8: 0 = none, 1 = ``max_subscription_identifiers=0``, 2 = ``1``,
  3 = ``3``. (With neither limit, invariant 8 is not checked.)

Invariants (any violation raises, which the fuzzer reports as a crash)
------------------------------------------------------------------------

1. Only ``RemoteProtocolError`` (or a subclass) escapes ``decode_packet`` or
   ``PacketReader.feed``, whatever the bytes. Anything else is a bug.
2. The twins agree. ``mqttproto._codec_py`` (the reference) and
   ``mqttproto._codec_c`` (Cython) give equal results for every call: equal
   packets, compared by type and ``repr`` so that an ``int`` where the
   reference has an enum member shows up, or an exception of the same class
   with the same reason code (and the same ``protocol_level`` for a
   ``ConnectRefusal``); the readers also agree on ``buffered`` and
   ``version`` afterwards. When the compiled twin cannot be imported the
   reference is compared with itself (``COMPILED`` is False; a notice is
   printed) and only the other invariants are checked -- unless
   ``MQTTPROTO_REQUIRE_EXTENSIONS=1``, which makes the failed import fatal.
3. Chunking does not matter. For one twin, feeding the stream all at once, in
   the selected pieces and one byte at a time gives the same error (or none);
   without an error, the same packets, the same ``buffered`` and the same
   ``version``. With an error, the all-at-once feed returns nothing (the
   packets of the failing call are dropped), byte-at-a-time returns every
   packet before the bad one, and the chunked run returns a prefix of those.
   (Byte-at-a-time runs for streams of up to ``BYTEWISE_LIMIT`` bytes.)
4. A broken reader stays broken: after an error, ``buffered`` is 0 and any
   further ``feed`` raises the same error (class and reason code).
5. Memory stays bounded: at most ``MAX_PAYLOAD`` bytes are fed, and a reader
   with a ``max_packet_size`` never buffers a whole packet's worth:
   ``buffered < max(max_packet_size, 5)`` after every feed (a fixed header is
   at most 5 bytes).
6. ``decode_packet`` and the reader agree on one packet. When the stream is
   exactly one packet by its fixed header and there is no maximum size,
   ``decode_packet(stream, version=v)`` and ``PacketReader(version=v)`` give
   the same packet or the same error (for a server's reader: when the packet
   is a CONNECT).
7. Decoded packets round-trip. Every packet decoded (up to
   ``ROUNDTRIP_LIMIT`` per input) encodes with both twins, in the version it
   was decoded with (a CONNECT: its own ``protocol_version``), to identical
   bytes that decode, with both twins, to an equal packet.
8. Property limits change nothing but the lists they cut. With the limits
   the selector picks, each twin's reader (fed the whole stream) and
   ``decode_packet`` give the same error as without them, or the same
   packets with the ``user_properties`` of each property block (a will's
   too) cut to the shortest prefix past the user-property limit and the
   ``subscription_identifiers`` of each PUBLISH (no other packet) cut to the
   first ``max_subscription_identifiers + 1``, and the same ``buffered`` and
   ``version``. (The twins then agree too, by invariant 2.)
9. The encoders without a packet agree with ``encode_packet``. For every
   PUBLISH of invariant 7, each twin's ``encode_publish_split`` gives the
   same ``(head, tail)``, and ``head`` + its packet identifier + ``tail`` is
   the packet's encoding (QoS 0: ``head`` is all of it, ``tail`` empty),
   and each twin's ``PreparedPublish`` holds that ``head`` and ``tail``, the
   packet, its QoS and the encoding's size; for every PUBACK, PUBREC, PUBREL and PUBCOMP without properties, each twin's
   ``encode_ack`` of its type, identifier and reason code is its encoding.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import shlex
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import attrs

if __name__ == "__main__":
    import atheris

    # Coverage feedback comes from the pure-Python twin (the compiled one is
    # not built with coverage instrumentation; the differential check still
    # runs it on every input).
    _instrumented: contextlib.AbstractContextManager[Any] = atheris.instrument_imports(
        include=["mqttproto"]
    )
else:
    _instrumented = contextlib.nullcontext()

with _instrumented:
    from mqttproto import _codec_py as py
    from mqttproto.enums import ProtocolVersion
    from mqttproto.errors import ConnectRefusal, RemoteProtocolError
    from mqttproto.packets import (
        ConnectPacket,
        PubAckPacket,
        PubCompPacket,
        PublishPacket,
        PubRecPacket,
        PubRelPacket,
    )

    try:
        c: ModuleType = importlib.import_module("mqttproto._codec_c")
    except ImportError:
        # As in mqttproto._codec: CI sets this so that a missing build fails.
        if os.environ.get("MQTTPROTO_REQUIRE_EXTENSIONS", "") not in ("", "0"):
            raise
        c = py
        COMPILED = False
    else:
        COMPILED = True

__all__ = ["COMPILED", "MAX_PAYLOAD", "TestOneInput", "selector"]

#: The selector's length: ``data[:SELECTOR_SIZE]`` picks the set-up.
SELECTOR_SIZE = 3
#: Bytes of stream fed per input, at most (the rest of a longer input is cut).
MAX_PAYLOAD = 64 * 1024
#: Streams up to this long are also fed one byte at a time.
BYTEWISE_LIMIT = 8 * 1024
#: Decoded packets checked for the round trip, per input.
ROUNDTRIP_LIMIT = 64

_VERSIONS: tuple[ProtocolVersion | None, ...] = (
    ProtocolVersion.MQTT_3_1,
    ProtocolVersion.MQTT_3_1_1,
    ProtocolVersion.MQTT_5_0,
    None,
)
_TWINS: tuple[ModuleType, ModuleType] = (py, c)
# Fed to a broken reader: it must raise its error again.
_AFTER_ERROR = b"\xc0\x00"
# The user-property limits selector bits 6-7 pick (0: none).
_LIMITS: tuple[dict[str, int], ...] = (
    {},
    {"max_user_properties": 0},
    {"max_user_properties": 3},
    {"max_user_property_bytes": 16},
)
# The Subscription Identifier limits bits 0-1 of data[1] pick when no
# maximum packet size is selected (0: none).
_IDENTIFIER_LIMITS: tuple[dict[str, int], ...] = (
    {},
    {"max_subscription_identifiers": 0},
    {"max_subscription_identifiers": 1},
    {"max_subscription_identifiers": 3},
)


def selector(
    version: ProtocolVersion | int | None,
    *,
    max_packet_size: int | None = None,
    chunking: int = 0,
    chunk_param: int = 0,
    user_property_limit: int = 0,
    subscription_identifier_limit: int = 0,
) -> bytes:
    """The selector bytes for this set-up (the inverse of ``_parse_selector``).

    ``max_packet_size`` must be representable: None, 2 to 257, or a multiple
    of 256 up to 65,536. ``user_property_limit`` is an index of ``_LIMITS``,
    ``subscription_identifier_limit`` one of ``_IDENTIFIER_LIMITS`` (only
    without a ``max_packet_size``).
    """
    code = {None: 3, 3: 0, 4: 1, 5: 2}[None if version is None else int(version)]
    if not 0 <= subscription_identifier_limit <= 3:
        raise ValueError("subscription_identifier_limit is 0 to 3")
    if max_packet_size is None:
        size_kind, size_param = 0, subscription_identifier_limit
    elif subscription_identifier_limit:
        raise ValueError("a Subscription Identifier limit needs max_packet_size None")
    elif 2 <= max_packet_size <= 257:
        size_kind, size_param = 2, max_packet_size - 2
    elif max_packet_size % 256 == 0 and 256 <= max_packet_size <= 65536:
        size_kind, size_param = 3, max_packet_size // 256 - 1
    else:
        raise ValueError(f"max_packet_size {max_packet_size} cannot be selected")
    if not 0 <= chunking <= 3 or not 0 <= chunk_param <= 255:
        raise ValueError("chunking is 0 to 3, chunk_param a byte")
    if not 0 <= user_property_limit <= 3:
        raise ValueError("user_property_limit is 0 to 3")
    mode = code | size_kind << 2 | chunking << 4 | user_property_limit << 6
    return bytes((mode, size_param, chunk_param))


class _Setup(NamedTuple):
    version: ProtocolVersion | None
    max_packet_size: int | None
    chunking: int
    chunk_param: int
    limits: dict[str, int] | None  # None: invariant 8 is not checked


def _parse_selector(head: bytes) -> _Setup:
    head = head.ljust(SELECTOR_SIZE, b"\x00")
    mode, size_param, chunk_param = head[0], head[1], head[2]
    size_kind = mode >> 2 & 3
    if size_kind == 2:
        max_packet_size: int | None = size_param + 2
    elif size_kind == 3:
        max_packet_size = (size_param + 1) * 256
    else:
        max_packet_size = None
    limits = dict(_LIMITS[mode >> 6])
    if max_packet_size is None:
        limits.update(_IDENTIFIER_LIMITS[size_param & 3])
    return _Setup(_VERSIONS[mode & 3], max_packet_size, mode >> 4 & 3, chunk_param, limits or None)


def _pieces(stream: bytes, chunking: int, param: int) -> list[bytes]:
    size = len(stream)
    if chunking == 0:
        step = param % 64 + 1
        return [stream[i : i + step] for i in range(0, size, step)]
    if chunking == 1:
        rng = random.Random(param)
        top = 2 * (param % 32 + 1)
        pieces = []
        pos = 0
        while pos < size:
            step = rng.randint(0, top)
            pieces.append(stream[pos : pos + step])
            pos += step
        return pieces
    if chunking == 2:
        cut = param * size // 255
        return [stream[:cut], stream[cut:]]
    cuts = [i for i in range(1, size) if stream[i] == param]
    return [stream[i:j] for i, j in zip([0, *cuts], [*cuts, size], strict=True)]


# ---------------------------------------------------------------------------
# Outcomes


def _error_key(exc: RemoteProtocolError) -> tuple[Any, ...]:
    level = exc.protocol_level if isinstance(exc, ConnectRefusal) else None
    return (type(exc), type(exc.reason_code), int(exc.reason_code), level)


def _shape(packets: list[Any]) -> list[tuple[type, str]]:
    return [(type(packet), repr(packet)) for packet in packets]


class _Run(NamedTuple):
    """What a reader made of a stream fed in some pieces."""

    packets: list[Any]
    error: tuple[Any, ...] | None
    buffered: int
    version: ProtocolVersion | None

    def shape(self) -> tuple[Any, ...]:
        return (_shape(self.packets), self.error, self.buffered, self.version)


def _feed(
    twin: ModuleType,
    pieces: list[bytes],
    version: ProtocolVersion | None,
    max_packet_size: int | None,
    limits: dict[str, int] | None = None,
) -> _Run:
    reader = twin.PacketReader(version=version, max_packet_size=max_packet_size, **(limits or {}))
    packets: list[Any] = []
    bound = None if max_packet_size is None else max(max_packet_size, 5)
    for piece in pieces:
        try:
            packets.extend(reader.feed(piece))
        except RemoteProtocolError as exc:
            error = _error_key(exc)
            _check(reader.buffered == 0, "a broken reader still buffers", twin)
            try:
                reader.feed(_AFTER_ERROR)
            except RemoteProtocolError as again:
                _check(_error_key(again) == error, "a broken reader changed its error", twin)
            else:
                _check(False, "a broken reader accepted more data", twin)
            return _Run(packets, error, reader.buffered, reader.version)
        if bound is not None:
            _check(reader.buffered < bound, f"buffered {reader.buffered} >= {bound}", twin)
    return _Run(packets, None, reader.buffered, reader.version)


def _decode(
    twin: ModuleType, data: bytes, version: ProtocolVersion, limits: dict[str, int] | None = None
) -> tuple[Any, ...]:
    try:
        packet = twin.decode_packet(data, version=version, **(limits or {}))
    except RemoteProtocolError as exc:
        return ("raised", _error_key(exc))
    return ("returned", packet)


def _decode_shape(outcome: tuple[Any, ...]) -> tuple[Any, ...]:
    if outcome[0] == "returned":
        return ("returned", type(outcome[1]), repr(outcome[1]))
    return outcome


def _past(pairs: tuple[tuple[str, str], ...], limits: dict[str, int]) -> tuple[Any, ...]:
    """The shortest prefix of ``pairs`` past ``limits``, or all of them."""
    count = limits.get("max_user_properties")
    size = limits.get("max_user_property_bytes")
    total = 0
    for index, (name, value) in enumerate(pairs):
        if (count is not None and index > count) or (size is not None and total > size):
            return pairs[:index]
        total += len(name.encode()) + len(value.encode())
    return pairs


def _cut(packet: Any, limits: dict[str, int]) -> Any:
    """``packet`` as a reader with ``limits`` must return it (invariant 8)."""
    changes: dict[str, Any] = {}
    identifiers = limits.get("max_subscription_identifiers")
    if (
        identifiers is not None
        and isinstance(packet, PublishPacket)
        and len(packet.subscription_identifiers) > identifiers + 1
    ):
        changes["subscription_identifiers"] = packet.subscription_identifiers[: identifiers + 1]
    properties = getattr(packet, "user_properties", ())
    if _past(properties, limits) != properties:
        changes["user_properties"] = _past(properties, limits)
    will = getattr(packet, "will", None)
    if will is not None and _past(will.user_properties, limits) != will.user_properties:
        changes["will"] = attrs.evolve(will, user_properties=_past(will.user_properties, limits))
    return attrs.evolve(packet, **changes) if changes else packet


class FuzzFailure(AssertionError):
    """An invariant of the module docstring does not hold."""


def _check(condition: bool, message: str, twin: ModuleType | None = None) -> None:
    if not condition:
        where = "" if twin is None else f" [{twin.__name__}]"
        raise FuzzFailure(message + where)


def _single_packet(stream: bytes) -> bool:
    """Whether ``stream`` is exactly one packet by its fixed header."""
    length = 0
    for index in range(1, min(len(stream), 5)):
        byte = stream[index]
        length |= (byte & 0x7F) << 7 * (index - 1)
        if byte < 0x80:
            return index + 1 + length == len(stream)
    return False


# ---------------------------------------------------------------------------
# The harness


# The name is the one atheris and libFuzzer use.
def TestOneInput(data: bytes) -> None:
    """Check every invariant of the module docstring for one input."""
    setup = _parse_selector(data[:SELECTOR_SIZE])
    stream = bytes(data[SELECTOR_SIZE : SELECTOR_SIZE + MAX_PAYLOAD])
    version = setup.version
    decode_version = ProtocolVersion.MQTT_5_0 if version is None else version

    # (1), (2): decode_packet on the whole stream.
    decoded = [_decode(twin, stream, decode_version) for twin in _TWINS]
    _check(
        _decode_shape(decoded[0]) == _decode_shape(decoded[1]),
        f"decode_packet: the twins differ: {decoded[0]!r} != {decoded[1]!r}",
    )

    # (1)-(5): the reader, fed whole, in the selected pieces, byte by byte.
    feedings: list[list[bytes]] = [
        [stream],
        _pieces(stream, setup.chunking, setup.chunk_param),
    ]
    if len(stream) <= BYTEWISE_LIMIT:
        feedings.append([stream[i : i + 1] for i in range(len(stream))])
    runs = [
        [_feed(twin, pieces, version, setup.max_packet_size) for pieces in feedings]
        for twin in _TWINS
    ]
    for mode, (ref, comp) in enumerate(zip(*runs, strict=True)):
        _check(
            ref.shape() == comp.shape(),
            f"PacketReader (feeding {mode}): the twins differ: {ref!r} != {comp!r}",
        )
    for twin, (whole, *chunked) in zip(_TWINS, runs, strict=True):
        for run in chunked:
            _check(run.error == whole.error, f"chunking changed the error: {run!r}", twin)
            if whole.error is None:
                _check(run.packets == whole.packets, "chunking changed the packets", twin)
                _check(run.buffered == whole.buffered, "chunking changed buffered", twin)
                _check(run.version == whole.version, "chunking changed the version", twin)
        if whole.error is not None:
            _check(not whole.packets, "a failing feed returned packets", twin)
            if len(chunked) == 2:
                pieces, bytewise = chunked
                _check(
                    pieces.packets == bytewise.packets[: len(pieces.packets)],
                    "chunked packets are not a prefix of the byte-by-byte ones",
                    twin,
                )

    # (6): decode_packet and the reader agree on a single packet.
    whole = runs[0][0]
    if (
        setup.max_packet_size is None
        and _single_packet(stream)
        and (version is not None or stream[0] >> 4 == 1)
    ):
        reader_outcome = (
            ("raised", whole.error) if whole.error is not None else ("returned", *whole.packets)
        )
        _check(
            _decode_shape(decoded[0]) == _decode_shape(reader_outcome),
            f"decode_packet {decoded[0]!r} != PacketReader {reader_outcome!r}",
        )

    # (7): round trip of what was decoded, in the version it was decoded with.
    packets = runs[0][-1].packets or whole.packets
    stream_version = version
    if stream_version is None and packets and isinstance(packets[0], ConnectPacket):
        stream_version = packets[0].protocol_version
    todo: list[tuple[Any, ProtocolVersion | None]] = [
        (packet, stream_version) for packet in packets[:ROUNDTRIP_LIMIT]
    ]
    if decoded[0][0] == "returned":
        todo.append((decoded[0][1], decode_version))
    for packet, packet_version in todo:
        _roundtrip(packet, packet_version)

    # (8): property limits change nothing but the lists they cut.
    limits = setup.limits
    if limits is not None:
        for twin, (full, *_), full_decoded in zip(_TWINS, runs, decoded, strict=True):
            run = _feed(twin, [stream], version, setup.max_packet_size, limits)
            cut = _Run([_cut(p, limits) for p in full.packets], *full[1:])
            _check(run.shape() == cut.shape(), f"the limit changed {cut!r} to {run!r}", twin)
            outcome = _decode(twin, stream, decode_version, limits)
            if full_decoded[0] == "returned":
                full_decoded = ("returned", _cut(full_decoded[1], limits))
            _check(
                _decode_shape(outcome) == _decode_shape(full_decoded),
                f"decode_packet: the limit changed {full_decoded!r} to {outcome!r}",
                twin,
            )


def _roundtrip(packet: Any, version: ProtocolVersion | None) -> None:
    if isinstance(packet, ConnectPacket):
        version = packet.protocol_version
    assert version is not None  # a non-CONNECT packet is never decoded without one
    encoded = [_call(twin.encode_packet, packet, version=version) for twin in _TWINS]
    _check(encoded[0] == encoded[1], f"encode_packet: the twins differ for {packet!r}")
    _without_a_packet(packet, version, encoded[0])
    for twin in _TWINS:
        again = _call(twin.decode_packet, encoded[0], version=version)
        _check(
            again == packet and (type(again), repr(again)) == (type(packet), repr(packet)),
            f"round trip: {packet!r} -> {encoded[0].hex()} -> {again!r}",
            twin,
        )


_ACKS = (PubAckPacket, PubRecPacket, PubRelPacket, PubCompPacket)


def _without_a_packet(packet: Any, version: ProtocolVersion, encoded: bytes) -> None:
    """Invariant 9."""
    if type(packet) is PublishPacket:
        splits = [_call(twin.encode_publish_split, packet, version=version) for twin in _TWINS]
        _check(splits[0] == splits[1], f"encode_publish_split: the twins differ for {packet!r}")
        head, tail = splits[0]
        packet_id = b"" if packet.qos == 0 else packet.packet_id.to_bytes(2, "big")
        _check(
            head + packet_id + tail == encoded,
            f"encode_publish_split: {head.hex()} + {packet_id.hex()} + {tail.hex()} "
            f"is not {encoded.hex()} for {packet!r}",
        )
        for twin in _TWINS:
            prepared = _call(twin.PreparedPublish, packet, version=version)
            _check(
                (prepared.head, prepared.tail, prepared.size) == (head, tail, len(encoded))
                and prepared.packet is packet
                and prepared.qos is packet.qos
                and prepared.v5 is (version == ProtocolVersion.MQTT_5_0),
                f"PreparedPublish: {prepared.head.hex()} {prepared.tail.hex()} "
                f"{prepared.size} for {packet!r}",
                twin,
            )
    elif type(packet) in _ACKS and packet.reason_string is None and not packet.user_properties:
        for twin in _TWINS:
            ack = _call(
                twin.encode_ack,
                packet.packet_type,
                packet.packet_id,
                packet.reason_code,
                version=version,
            )
            _check(ack == encoded, f"encode_ack: {ack.hex()} for {packet!r}", twin)


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; any exception is an invariant violation, with context."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        raise FuzzFailure(
            f"{function.__module__}.{function.__qualname__}{args!r} {kwargs!r} raised {exc!r}"
        ) from exc


def _main(argv: list[str]) -> None:
    if not COMPILED:
        print(
            "fuzz_codec: mqttproto._codec_c is not importable; "
            "comparing the pure-Python codec with itself",
            file=sys.stderr,
        )
    # libFuzzer re-runs argv[0] through the shell for -merge, -jobs, -fork and
    # -minimize_crash: make it a command that runs this script with this Python.
    command = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))}"
    atheris.Setup([command, *argv[1:]], TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    _main(sys.argv)
