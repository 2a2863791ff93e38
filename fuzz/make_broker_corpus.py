"""Regenerate the seed corpus of fuzz_broker.py: ``fuzz/corpus/fuzz_broker/``.

Run with the project's venv: ``.venv/bin/python fuzz/make_broker_corpus.py``.

Each seed is a script for fuzz_broker.py (see its docstring): clients that
connect in every version, subscribe, publish at every QoS, acknowledge, ping,
take over each other's client id, go silent while time passes, and
disconnect cleanly or not. Output is deterministic; files named
``regress-*`` are kept, every other file is replaced.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mqttproto import ProtocolVersion, QoS, ReasonCode, encode_packet  # noqa: E402
from mqttproto.packets import (  # noqa: E402
    AuthPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PubAckPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubscribePacket,
    Subscription,
    UnsubscribePacket,
    Will,
)

CORPUS = HERE / "corpus" / "fuzz_broker"
KEEP_PREFIX = "regress-"
DATA, TICK, EOF, LOST = 0, 1, 2, 3
BACKLOG = 0x10


def record(slot: int, action: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """One script record; long payloads are split into several DATA records.
    A TICK or BACKLOG record's length is its argument, its bytes filler."""
    if action in (TICK, BACKLOG):
        return bytes((slot | (action << 2 if action == TICK else action), length or 0)) + bytes(
            length or 0
        )
    out = b""
    while len(payload) > 255:
        out += bytes((slot | DATA << 2, 255)) + payload[:255]
        payload = payload[255:]
    return out + bytes((slot | action << 2, len(payload))) + payload


def send(slot: int, version: ProtocolVersion, *packets: Packet, action: int = DATA) -> bytes:
    return record(slot, action, b"".join(encode_packet(p, version=version) for p in packets))


def scripts(version: ProtocolVersion) -> dict[str, bytes]:
    v5 = version == ProtocolVersion.MQTT_5_0
    expiry = {"session_expiry_interval": 60} if v5 else {}

    def connect(client_id: str, **kwargs: object) -> ConnectPacket:
        return ConnectPacket(client_id, version, keep_alive=10, **kwargs)  # type: ignore[arg-type]

    sub = SubscribePacket(1, (Subscription("a/+", QoS.EXACTLY_ONCE), Subscription("a/#")))
    publishes = (
        PublishPacket("a/b", b"0"),
        PublishPacket("a/b", b"1", QoS.AT_LEAST_ONCE, packet_id=2),
        PublishPacket("a/b", b"2", QoS.EXACTLY_ONCE, packet_id=3),
        PublishPacket("a/b", b"r", retain=True),
    )
    out = {
        "pubsub": send(0, version, connect("s"), sub)
        + send(1, version, connect("p"), *publishes, PubRelPacket(3))
        + send(0, version, PubAckPacket(1), PubRecPacket(2), PingReqPacket())
        + send(1, version, DisconnectPacket()),
        "persistent": send(0, version, connect("s", clean_start=False, **expiry), sub)
        + record(0, LOST)
        + send(1, version, connect("p"), *publishes)
        + send(0, version, connect("s", clean_start=False, **expiry)),
        "takeover-will": send(0, version, connect("t", will=Will("w/t", b"bye", QoS.AT_LEAST_ONCE)))
        + send(1, version, connect("x"), SubscribePacket(1, (Subscription("w/#"),)))
        + send(2, version, connect("t")),
        "keepalive": send(0, version, connect("k")) + record(0, TICK, length=80),
        "silent": record(1, TICK, length=60) + send(0, version, connect("late")),
        "unsubscribe": send(0, version, connect("u"), sub, UnsubscribePacket(2, ("a/+",))),
        "eof": send(0, version, connect("e", will=Will("w/e", b"x")), action=EOF),
        # A subscriber whose transport does not drain: the core holds its
        # messages past max_unsent_bytes, then sends them.
        "backlog": send(0, version, connect("b", clean_start=False, **expiry), sub)
        + send(1, version, connect("p"))
        + record(0, BACKLOG, length=200)
        + send(1, version, *publishes, *publishes)
        + record(0, BACKLOG, length=0)
        + send(0, version, PubAckPacket(1), PubRecPacket(2)),
    }
    if v5:
        out["alias"] = send(
            0,
            version,
            connect("al"),
            PublishPacket("a/b", b"1", topic_alias=1),
            PublishPacket("", b"2", topic_alias=1),
        )
        out["auth"] = send(
            0,
            version,
            connect("au", authentication_method="M", authentication_data=b"x"),
            AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method="M"),
        )
        out["will-delay"] = (
            send(0, version, connect("d", will=Will("w/d", b"x", will_delay_interval=5), **expiry))
            + record(0, LOST)
            + record(1, TICK, length=40)
        )
    return out


def server_alone(version: ProtocolVersion) -> dict[str, bytes]:
    """Scripts for one ServerConnection and its small application (selector
    bit 3); the 8 bytes before each script are the application's choices."""
    v5 = version == ProtocolVersion.MQTT_5_0
    connect = ConnectPacket("alone", version, keep_alive=10)
    sub = SubscribePacket(1, (Subscription("a/+", QoS.EXACTLY_ONCE),))
    flows = (
        PublishPacket("a/b", b"1", QoS.AT_LEAST_ONCE, packet_id=2),
        PublishPacket("a/b", b"2", QoS.EXACTLY_ONCE, packet_id=3),
        PubRelPacket(3),
        PingReqPacket(),
    )
    out = {
        "flows": send(0, version, connect, sub, *flows)
        + record(0, LOST, bytes(5))
        + send(0, version, PubAckPacket(1), UnsubscribePacket(4, ("a/+",)))
        + send(0, version, DisconnectPacket()),
        "early": send(0, version, connect, *flows) + record(0, TICK, length=70),
        "broken": send(0, version, connect) + record(0, DATA, b"\x30\x03\x00\x05a"),
        "eof": send(0, version, connect, sub, action=EOF),
    }
    if v5:
        out["auth"] = send(
            0,
            version,
            ConnectPacket("au", version, authentication_method="M"),
            AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method="M"),
            sub,
        )
    return out


def seeds() -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    for version in ProtocolVersion:
        for name, script in server_alone(version).items():
            for choices in (bytes(8), bytes(range(1, 9))):
                result[f"alone-{name}-v{int(version)}-{choices[0]}"] = b"\x08" + choices + script
    for version in ProtocolVersion:
        for name, script in scripts(version).items():
            for small in (0, 4):
                result[f"{name}-v{int(version)}-{'small' if small else 'default'}"] = (
                    bytes((3 | small,)) + script
                )
    return result


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for path in CORPUS.iterdir():
        if not path.name.startswith(KEEP_PREFIX):
            path.unlink()
    for name, data in sorted(seeds().items()):
        (CORPUS / name).write_bytes(data)
    print(f"{len(seeds())} seeds in {CORPUS}")


if __name__ == "__main__":
    main()
