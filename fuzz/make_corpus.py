"""Regenerate the seed corpus of fuzz_codec.py: ``fuzz/corpus/fuzz_codec/``.

Run from anywhere with the project's venv::

    .venv/bin/python fuzz/make_corpus.py

The seeds come from the test suite's data, so that they stay in step with it:

- ``vec-*``: every hand-written vector of tests/test_vectors.py (every packet
  type in every version) with its version; ``server-*`` the CONNECT vectors
  again for a server's reader (version None);
- ``decode-only-*``: the valid encodings the encoder does not produce;
- ``length-*``: Remaining Lengths of one and two bytes;
- ``bad-*``: every case of the malformed catalogue (tests/test_malformed.py)
  with its version and maximum packet size;
- ``stream-*``: whole sessions of several packets in one stream;
- ``flood-*``: MQTT 5 packets with more user properties than the
  user-property limit their selector picks (invariant 8), some with other
  properties, or something malformed, after them;
- ``subid-*``: packets with more Subscription Identifiers than the limit
  their selector picks (invariant 8): PUBLISH with identifiers of every
  width, with other properties, user properties in turn, or something
  malformed after them; SUBSCRIBE with one and with a repeat; an MQTT 3.1.1
  PUBLISH whose payload looks like them.

Each file is the selector bytes of fuzz_codec.py (version, maximum packet
size, chunking) followed by the bytes. The chunking pattern varies from seed
to seed, deterministically. The output is deterministic: running the script
twice gives the same files.

Files named ``regress-*`` are crash reproducers added by hand (see
fuzz/README.md); they are kept. Every other file in the directory is
replaced.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus" / "fuzz_codec"
KEEP_PREFIX = "regress-"

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_codec import selector  # noqa: E402
from test_malformed import CASES, _label  # noqa: E402
from test_vectors import DECODE_ONLY, LENGTH_VECTORS, VECTORS, h  # noqa: E402

from mqttproto import encode_packet  # noqa: E402
from mqttproto.enums import ProtocolVersion, QoS, ReasonCode  # noqa: E402
from mqttproto.packets import (  # noqa: E402
    ConnectPacket,
    PubAckPacket,
    PublishPacket,
    SubscribePacket,
    Subscription,
    UnsubscribePacket,
    Will,
)


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _chunking(index: int, data: bytes) -> tuple[int, int]:
    """A chunking pattern and its parameter, varied by seed number."""
    pattern = index % 4
    if pattern == 0:
        return 0, index * 7 % 16  # pieces of 1 to 16 bytes
    if pattern == 1:
        return 1, index * 37 % 256  # pseudo-random pieces
    if pattern == 2:
        return 2, 128  # cut in the middle
    return 3, data[len(data) // 2] if data else 0  # cut before a byte value


def seeds() -> dict[str, bytes]:
    """File name -> contents, for every seed."""
    out: dict[str, tuple[ProtocolVersion | int | None, int | None, bytes]] = {}

    for vector in VECTORS:
        out[f"vec-{vector.id}"] = (vector.version, None, vector.data)
        if isinstance(vector.packet, ConnectPacket):
            out[f"server-{vector.id}"] = (None, None, vector.data)
    for vector in DECODE_ONLY:
        out[f"decode-only-{vector.id}"] = (vector.version, None, vector.data)

    for name, remaining_length, header in LENGTH_VECTORS:
        if remaining_length > 128:
            continue  # the larger ones would make the corpus big for no new path
        for version in (ProtocolVersion.MQTT_3_1_1, ProtocolVersion.MQTT_5_0):
            prefix = h(header) + h("0001 61") + (h("00") if version == 5 else b"")
            data = prefix + bytes(remaining_length - (len(prefix) - len(h(header))))
            out[f"length-{name}-{version.value}"] = (version, None, data)

    for case in CASES:
        out[f"bad-{_label(case)}"] = (case.version, case.max_packet_size, case.data)

    by_id = {vector.id: vector.data for vector in VECTORS}

    def stream(*ids: str) -> bytes:
        return b"".join(by_id[name] for name in ids)

    # A server's view of a session: CONNECT first, the version adopted from it.
    for suffix, ids in _sessions(by_id).items():
        out[f"stream-{suffix}"] = (None, None, stream(*ids))
    # A client's view: everything a server sends, in one stream.
    for version in ProtocolVersion:
        tag = {3: "3.1", 4: "3.1.1", 5: "5.0"}[version.value]
        ids = sorted(
            vector.id
            for vector in VECTORS
            if vector.version == version and vector.data[0] >> 4 in (2, 3, 9, 11, 13)
        )
        out[f"stream-client-{tag}-all-server-packets"] = (version, None, stream(*ids))
        out[f"stream-client-{tag}-all-server-packets-max-64"] = (version, 64, stream(*ids))

    files: dict[str, bytes] = {}
    for index, (name, (version, max_size, data)) in enumerate(sorted(out.items())):
        chunking, param = _chunking(index, data)
        head = selector(version, max_packet_size=max_size, chunking=chunking, chunk_param=param)
        files[_name(name)] = head + data
    # Numbered on their own, so that adding one leaves the others' chunking be.
    for index, (name, (version, limit, data)) in enumerate(sorted(_floods().items())):
        chunking, param = _chunking(index, data)
        head = selector(version, chunking=chunking, chunk_param=param, user_property_limit=limit)
        files[_name(f"flood-{name}")] = head + data
    for index, (name, (version, users, ids, data)) in enumerate(
        sorted(_identifier_floods().items())
    ):
        chunking, param = _chunking(index, data)
        head = selector(
            version,
            chunking=chunking,
            chunk_param=param,
            user_property_limit=users,
            subscription_identifier_limit=ids,
        )
        files[_name(f"subid-{name}")] = head + data
    return files


def _floods() -> dict[str, tuple[ProtocolVersion | None, int, bytes]]:
    """Name -> (version, user-property limit of the selector, bytes)."""
    v5 = ProtocolVersion.MQTT_5_0

    def encode(packet: object) -> bytes:
        return encode_packet(packet, version=v5)  # type: ignore[arg-type]

    def pairs(count: int, name: str = "k", value: str = "v") -> list[tuple[str, str]]:
        return [(f"{name}{i}", value) for i in range(count)]

    def pair(name: bytes, value: bytes) -> bytes:
        return b"\x26" + len(name).to_bytes(2, "big") + name + len(value).to_bytes(2, "big") + value

    def publish(block: bytes) -> bytes:
        """A QoS 1 PUBLISH (topic ``t``, id 1) with ``block`` as its properties."""
        body = b"\x00\x01t\x00\x01" + _varint(len(block)) + block + b"x"
        return b"\x32" + _varint(len(body)) + body

    flood = b"".join(pair(b"k%d" % i, b"v") for i in range(40))
    return {
        "publish-inline-count-0": (
            v5,
            1,
            encode(PublishPacket("t", b"", user_properties=pairs(8))),
        ),
        "publish-count-3": (
            v5,
            2,
            encode(
                PublishPacket("t", b"p", QoS.AT_LEAST_ONCE, packet_id=2, user_properties=pairs(60))
            ),
        ),
        "publish-bytes-16-utf8": (
            v5,
            3,
            encode(PublishPacket("t", b"", user_properties=pairs(30, "é", "€"))),
        ),
        "publish-alias-after-the-flood": (v5, 2, publish(flood + b"\x23\x00\x03")),
        "publish-bad-utf8-after-the-flood": (v5, 2, publish(flood + pair(b"\xed\xa0\x80", b""))),
        "publish-nul-after-the-flood": (v5, 3, publish(flood + pair(b"k", b"\x00"))),
        "publish-overrun-after-the-flood": (v5, 1, publish(flood + b"\x26\x00\x01k\x00\x09")),
        "connect-will-count-3": (
            None,
            2,
            encode(
                ConnectPacket(
                    "c",
                    user_properties=pairs(20),
                    will=Will("w", b"", user_properties=pairs(20, "w")),
                )
            ),
        ),
        "subscribe-count-0": (
            v5,
            1,
            encode(SubscribePacket(3, (Subscription("a/#"),), user_properties=pairs(30))),
        ),
        "unsubscribe-bytes-16": (
            v5,
            3,
            encode(UnsubscribePacket(4, ("a",), user_properties=pairs(30))),
        ),
        "puback-count-3": (
            v5,
            2,
            encode(PubAckPacket(5, ReasonCode.QUOTA_EXCEEDED, user_properties=pairs(30))),
        ),
    }


def _identifier_floods() -> dict[str, tuple[ProtocolVersion | None, int, int, bytes]]:
    """Name -> (version, user-property and Subscription Identifier limits of
    the selector, bytes)."""
    v5 = ProtocolVersion.MQTT_5_0

    def sid(value: int) -> bytes:
        return b"\x0b" + _varint(value)

    def frame(first: int, body: bytes) -> bytes:
        return bytes((first,)) + _varint(len(body)) + body

    def publish(block: bytes, topic: bytes = b"t") -> bytes:
        """A QoS 1 PUBLISH (id 1) with ``block`` as its properties."""
        body = len(topic).to_bytes(2, "big") + topic + b"\x00\x01"
        return frame(0x32, body + _varint(len(block)) + block + b"x")

    widths = (1, 127, 128, 16_383, 16_384, 2_097_152, 268_435_455)
    flood = b"".join(sid(i % 300 + 1) for i in range(60))
    pair = b"\x26\x00\x01k\x00\x01v"
    connect = encode_packet(ConnectPacket("c"), version=v5)
    return {
        "publish-count-0": (v5, 0, 1, publish(flood)),
        "publish-widths-count-1": (v5, 0, 2, publish(b"".join(map(sid, widths * 4)))),
        "publish-alias-after": (v5, 0, 1, publish(flood + b"\x23\x00\x03", topic=b"")),
        "publish-zero-after": (v5, 0, 3, publish(flood + b"\x0b\x00" + flood)),
        "publish-not-minimal-after": (v5, 0, 1, publish(flood + b"\x0b\x80\x80\x00")),
        "publish-overrun-after": (v5, 0, 1, publish(flood + b"\x0b\x80")),
        "publish-in-turn-both": (v5, 1, 1, publish((sid(200) + pair) * 20)),
        "publish-in-turn-identifiers": (v5, 0, 2, publish((pair + sid(9)) * 20)),
        "subscribe-one": (
            v5,
            0,
            1,
            encode_packet(
                SubscribePacket(3, (Subscription("a/#"),), subscription_identifier=70_000),
                version=v5,
            ),
        ),
        "subscribe-repeated": (
            v5,
            0,
            1,
            frame(0x82, b"\x00\x03\x04" + sid(5) * 2 + b"\x00\x01a\x00"),
        ),
        "server-stream": (None, 0, 1, connect + publish(flood) + b"\xc0\x00"),
        "publish-3.1.1": (
            ProtocolVersion.MQTT_3_1_1,
            0,
            1,
            encode_packet(
                PublishPacket("t", flood, QoS.AT_LEAST_ONCE, packet_id=1),
                version=ProtocolVersion.MQTT_3_1_1,
            ),
        ),
    }


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _sessions(by_id: dict[str, bytes]) -> dict[str, list[str]]:
    """Sessions built from vectors: CONNECT, then what a client sends."""
    sessions: dict[str, list[str]] = {}
    for tag in ("3.1", "3.1.1", "5.0"):
        ids = sorted(name for name in by_id if re.search(f"-{re.escape(tag)}(-|$)", name))
        connect = next(name for name in ids if name.startswith("connect-"))
        client_side = [
            name for name in ids if by_id[name][0] >> 4 in (3, 4, 5, 6, 7, 8, 10, 12, 14, 15)
        ]
        sessions[f"server-{tag}-session"] = [connect, *client_side]
    return sessions


def main() -> None:
    files = seeds()
    CORPUS.mkdir(parents=True, exist_ok=True)
    for path in CORPUS.iterdir():
        if not path.name.startswith(KEEP_PREFIX) and path.name not in files:
            path.unlink()
    for name, content in files.items():
        path = CORPUS / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
    total = sum(len(content) for content in files.values())
    print(f"{len(files)} seeds, {total} bytes, in {CORPUS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
