"""Regenerate the seed corpus of fuzz_client.py: ``fuzz/corpus/fuzz_client/``.

Run with the project's venv: ``.venv/bin/python fuzz/make_client_corpus.py``.

Each seed is a server's side of a conversation (CONNACK, then the packets a
server sends) with a selector for fuzz_client.py, in every version and
configuration the selector can express. Output is deterministic; files named
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
    ConnAckPacket,
    DisconnectPacket,
    Packet,
    PingRespPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    UnsubAckPacket,
)

CORPUS = HERE / "corpus" / "fuzz_client"
KEEP_PREFIX = "regress-"


def conversations(v5: bool, v31: bool) -> dict[str, list[Packet]]:
    props: dict[str, object] = (
        {"receive_maximum": 2, "topic_alias_maximum": 3, "maximum_packet_size": 200} if v5 else {}
    )
    accepted = ConnAckPacket(False, **props)  # type: ignore[arg-type]
    resumed = ConnAckPacket(not v31)  # 3.1 has no session present flag
    talks: dict[str, list[Packet]] = {
        "refused": [ConnAckPacket(False, ReasonCode.NOT_AUTHORIZED)],
        "qos0": [accepted, PublishPacket("a/b", b"0"), PingRespPacket()],
        "qos1": [
            accepted,
            PublishPacket("a/b", b"1", QoS.AT_LEAST_ONCE, packet_id=1),
            PubAckPacket(1),
        ],
        "qos2-in": [
            accepted,
            PublishPacket("a/b", b"2", QoS.EXACTLY_ONCE, packet_id=2),
            PublishPacket("a/b", b"2", QoS.EXACTLY_ONCE, True, True, packet_id=2),
            PubRelPacket(2),
        ],
        "qos2-out": [accepted, PubRecPacket(2), PubCompPacket(2), PubRecPacket(9)],
        "acks": [
            accepted,
            SubAckPacket(3, (ReasonCode.GRANTED_QOS_1, ReasonCode.NOT_AUTHORIZED)),
            UnsubAckPacket(4, (ReasonCode.SUCCESS,) if v5 else ()),
        ],
        "resume": [resumed, PubRecPacket(1), PubAckPacket(1), PubCompPacket(2)],
    }
    if v5:
        talks["alias"] = [
            accepted,
            PublishPacket("x/y", b"1", topic_alias=1),
            PublishPacket("", b"2", topic_alias=1),
            PublishPacket("", b"3", topic_alias=2),
        ]
        talks["auth"] = [
            AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method="M"),
            ConnAckPacket(authentication_method="M"),
            AuthPacket(ReasonCode.SUCCESS, authentication_method="M"),
        ]
        talks["disconnect"] = [
            accepted,
            DisconnectPacket(ReasonCode.SERVER_MOVED, server_reference="elsewhere"),
        ]
    return talks


def seeds() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for version_bits, version in (
        (0, ProtocolVersion.MQTT_3_1),
        (1, ProtocolVersion.MQTT_3_1_1),
        (2, ProtocolVersion.MQTT_5_0),
    ):
        for name, packets in conversations(
            version == ProtocolVersion.MQTT_5_0, version == ProtocolVersion.MQTT_3_1
        ).items():
            stream = b"".join(encode_packet(p, version=version) for p in packets)
            for variant, flags in enumerate((0, 4 | 16, 8 | 16, 4 | 8 | (3 << 5))):
                selector = bytes((version_bits | flags, (variant * 37 + len(name)) % 256))
                out[f"{name}-v{int(version)}-{variant}"] = selector + stream
    return out


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
