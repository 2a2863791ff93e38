"""The broker reads user properties only up to its limits, and answers as before.

``BrokerConnection`` gives its reader ``max_user_properties`` and
``max_user_property_bytes`` from ``BrokerConfig``, so a packet flooded with
user properties costs the broker about what the limit keeps. What it answers
must not change: each scenario below runs twice, once as the broker is and
once with readers that build every user property (what the broker did
before the limit reached its reader), and every byte each connection hears,
and whether it is closed, must be the same; the key answers are also spelled
out.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from helpers import V5, BrokerHarness, PacketFactory

from mqttproto import server
from mqttproto.config import BrokerConfig
from mqttproto.packets import (
    PublishPacket,
    QoS,
    SubscribePacket,
    Subscription,
    UnsubscribePacket,
    Will,
)


def props(count: int, name: str = "k", value: str = "v") -> list[tuple[str, str]]:
    return [(f"{name}{i}", value) for i in range(count)]


def encode(packet: Any) -> bytes:
    return PacketFactory.encode(packet, V5)


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


def publish_with_block(block: bytes, *, topic: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH with ``block`` as its property block, payload ``x``."""
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big")
    body += _varint(len(block)) + block + b"x"
    return b"\x32" + _varint(len(body)) + body


FLOOD = b"".join(_pair(b"k%d" % i, b"v") for i in range(200))
CONNECT = PacketFactory.connect("flooder")
PINGREQ = b"\xc0\x00"

# name -> (config, the flooder's packets in order, what it hears after each).
SCENARIOS: dict[str, tuple[BrokerConfig, list[bytes], list[bytes | None]]] = {
    "connect-count": (
        BrokerConfig(max_user_properties=2),
        [PacketFactory.connect("flooder", user_properties=props(300))],
        [None],  # CONNACK 0x97 with a reason string, then closed
    ),
    "connect-bytes": (
        BrokerConfig(max_user_property_bytes=100),
        [PacketFactory.connect("flooder", user_properties=props(30, value="v" * 9))],
        [None],
    ),
    "connect-will": (
        BrokerConfig(max_user_properties=64),
        [PacketFactory.connect("flooder", will=Will("w", b"", user_properties=props(300)))],
        [None],
    ),
    "connect-split-over": (
        # Each block within the limit, together past it: refused as before.
        BrokerConfig(max_user_properties=64),
        [
            PacketFactory.connect(
                "flooder",
                will=Will("w", b"", user_properties=props(40, "w")),
                user_properties=props(40),
            )
        ],
        [None],
    ),
    "publish-qos0": (
        BrokerConfig(),
        [CONNECT, encode(PublishPacket("t", b"x", user_properties=props(5000))), PINGREQ],
        [None, b"", b"\xd0\x00"],  # dropped, the connection goes on
    ),
    "publish-qos1": (
        BrokerConfig(),
        [
            CONNECT,
            encode(PublishPacket("t", b"x", QoS(1), packet_id=300, user_properties=props(5000))),
        ],
        [None, b"\x40\x03\x01\x2c\x97"],  # PUBACK 0x97 for packet id 300
    ),
    "publish-qos2": (
        BrokerConfig(max_user_property_bytes=1000),
        [
            CONNECT,
            encode(
                PublishPacket("t", b"x", QoS(2), packet_id=9, user_properties=props(200, "k" * 5))
            ),
            # The refused flow is not held: the same id starts a new one.
            encode(PublishPacket("t", b"y", QoS(2), packet_id=9)),
        ],
        [None, b"\x50\x03\x00\x09\x97", b"\x50\x02\x00\x09"],
    ),
    "publish-alias-after-the-flood": (
        # The Topic Alias after the user properties is still registered.
        BrokerConfig(),
        [
            CONNECT,
            publish_with_block(FLOOD + b"\x23\x00\x03", topic=b"al/ias", packet_id=1),
            encode(PublishPacket("", b"by alias", QoS(1), packet_id=2, topic_alias=3)),
        ],
        [None, b"\x40\x03\x00\x01\x97", b"\x40\x02\x00\x02"],
    ),
    "publish-at-the-limits": (
        BrokerConfig(max_user_properties=64, max_user_property_bytes=640),
        [
            CONNECT,
            encode(
                PublishPacket(
                    "t",
                    b"accepted at the limits",
                    QoS(1),
                    packet_id=4,
                    user_properties=[(f"{i:09}", "v") for i in range(64)],
                )
            ),
        ],
        [None, b"\x40\x02\x00\x04"],  # 64 properties of 10 bytes: accepted
    ),
    "publish-past-the-limit-then-malformed": (
        BrokerConfig(),
        [CONNECT, publish_with_block(FLOOD + _pair(b"\xff", b""), topic=b"t", packet_id=5)],
        [None, None],  # DISCONNECT 0x81, closed
    ),
    "publish-past-the-limit-then-nul": (
        BrokerConfig(),
        [CONNECT, publish_with_block(FLOOD + _pair(b"k", b"\x00"), topic=b"t", packet_id=5)],
        [None, None],
    ),
    "subscribe": (
        BrokerConfig(max_user_properties=3),
        [
            CONNECT,
            encode(
                SubscribePacket(
                    6, (Subscription("a"), Subscription("b/#")), user_properties=props(100)
                )
            ),
        ],
        [None, b"\x90\x05\x00\x06\x00\x97\x97"],  # one 0x97 per filter
    ),
    "unsubscribe": (
        BrokerConfig(max_user_properties=3),
        [CONNECT, encode(UnsubscribePacket(7, ("a",), user_properties=props(100)))],
        [None, None],  # DISCONNECT 0x97, closed
    ),
}


def run(config: BrokerConfig, script: list[bytes]) -> list[tuple[bytes, bytes, bool]]:
    """Each flooder packet: (what it hears, what a ``#`` subscriber hears, closed?)."""
    h = BrokerHarness(config)
    watcher = h.open_raw()
    h.send_raw(watcher, PacketFactory.connect("watcher"))
    assert h.send_raw(watcher, encode(SubscribePacket(1, (Subscription("#"),))))
    flooder = h.open_raw()
    steps = []
    for data in script:
        out = h.send_raw(flooder, data)
        steps.append((out, h.send_raw(watcher, b""), flooder in h.raw_closed))
    return steps


@pytest.fixture
def unlimited_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Brokers made now give their readers no user-property limit."""
    reader_class = server.PacketReader

    def reader(**kwargs: Any) -> Any:
        del kwargs["max_user_properties"], kwargs["max_user_property_bytes"]
        return reader_class(**kwargs)

    monkeypatch.setattr(server, "PacketReader", reader)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_broker_answers_as_without_the_limit(name: str, request: pytest.FixtureRequest) -> None:
    config, script, expected = SCENARIOS[name]
    limited = run(config, script)
    request.getfixturevalue("unlimited_readers")
    assert run(config, script) == limited
    for (heard, _, closed), answer in zip(limited, expected, strict=True):
        if answer is not None:
            assert heard == answer
            assert not closed
    # What ends a scenario: a CONNACK 0x97, DISCONNECT 0x81 / 0x97, or nothing.
    last_heard, _, closed = limited[-1]
    if name.startswith("connect"):
        assert last_heard[:4] == b"\x20" + last_heard[1:2] + b"\x00\x97"
        assert closed
    elif name.endswith(("malformed", "nul")):
        assert last_heard[:3] == b"\xe0" + last_heard[1:2] + b"\x81"
        assert closed
    elif name == "unsubscribe":
        assert last_heard[:3] == b"\xe0" + last_heard[1:2] + b"\x97"
        assert closed
    routed = b"".join(step[1] for step in limited)
    # Only what was accepted reaches the subscriber.
    assert (b"by alias" in routed) == (name == "publish-alias-after-the-flood")
    assert (b"accepted at the limits" in routed) == (name == "publish-at-the-limits")
    if name == "publish-at-the-limits":
        assert routed.count(b"\x26\x00\x09") == 64  # with every user property


def peak_while(fn: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_flood_costs_the_broker_what_its_limit_keeps() -> None:
    """A 1 MiB PUBLISH of distinct user properties: refused, having built few."""
    h = BrokerHarness()
    flooder = h.open_raw()
    h.send_raw(flooder, CONNECT)
    pairs = [(format(i, "x"), "") for i in range(100_000)]
    data = encode(PublishPacket("t", b"", QoS(1), packet_id=7, user_properties=pairs))
    assert len(data) <= BrokerConfig().max_packet_size
    _, peak = peak_while(lambda: h.broker.receive_data(flooder, data, h.now))
    assert h.send_raw(flooder, b"") == b"\x40\x03\x00\x07\x97"
    # The default limit keeps 65 properties; building all 100,000 (a tuple
    # and two strings each) would take more than ten times the packet.
    assert peak < len(data) // 4
