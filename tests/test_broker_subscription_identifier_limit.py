"""The broker reads one Subscription Identifier of a PUBLISH, and answers as before.

A client must not put Subscription Identifiers in a PUBLISH [MQTT-3.3.4-6];
the broker refuses one that does with DISCONNECT 0x82, after its other
checks of the PUBLISH. ``ServerConnection`` gives its reader
``max_subscription_identifiers=0``, so a PUBLISH flooded with them costs the
broker one ``int``, not one per identifier. What it answers must not change:
each scenario below runs twice, once as the broker is and once with readers
that build every Subscription Identifier (what the broker did before the
limit reached its reader), and every byte each connection hears, and whether
it is closed, must be the same; the key answers are also spelled out.

A client's reader has no such limit: a server sends one Subscription
Identifier per matching subscription, as many as there are.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from helpers import V5, V311, BrokerHarness, PacketFactory
from scripted import connected

from mqttproto import PacketReader, server
from mqttproto.config import BrokerConfig
from mqttproto.enums import QoS, ReasonCode
from mqttproto.events import MessageReceived
from mqttproto.packets import (
    DisconnectPacket,
    PublishPacket,
    SubscribePacket,
    Subscription,
)


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


def _sid(value: int) -> bytes:
    return b"\x0b" + _varint(value)


def _pair(name: bytes, value: bytes) -> bytes:
    return b"\x26" + len(name).to_bytes(2, "big") + name + len(value).to_bytes(2, "big") + value


def publish_with_block(
    block: bytes, *, topic: bytes = b"t", qos: int = 1, packet_id: int = 5, flags: int = 0
) -> bytes:
    """A PUBLISH with ``block`` as its property block, payload ``x``."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += _varint(len(block)) + block + b"x"
    return bytes((0x30 | qos << 1 | flags,)) + _varint(len(body)) + body


def sids(count: int) -> bytes:
    return _sid(1) * count


FLOOD = sids(500_000)  # 1 MB of property block, within the default packet size
CONNECT = PacketFactory.connect("flooder")
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"


def disconnect(code: int, reason: str) -> bytes:
    """The DISCONNECT the broker ends an MQTT 5 connection with."""
    return encode(DisconnectPacket(ReasonCode(code), reason_string=reason))


CARRIES = disconnect(0x82, "a client PUBLISH carries a Subscription Identifier")

# name -> (config, the flooder's reads in order, what it hears after each):
# the bytes; or an int, for a DISCONNECT with that reason code; or None, not
# spelled out (the CONNACK).
Heard = bytes | int | None
SCENARIOS: dict[str, tuple[BrokerConfig, list[bytes], list[Heard]]] = {}
for qos in (0, 1, 2):
    for count in (1, 2, 500_000):
        SCENARIOS[f"publish-qos{qos}-{count}"] = (
            BrokerConfig(),
            [CONNECT, publish_with_block(sids(count), qos=qos)],
            [None, CARRIES],
        )
        # With a Topic Alias (defined, then the connection is closed).
        SCENARIOS[f"publish-qos{qos}-{count}-alias"] = (
            BrokerConfig(),
            [CONNECT, publish_with_block(b"\x23\x00\x03" + sids(count), qos=qos)],
            [None, CARRIES],
        )
SCENARIOS.update(
    {
        "publish-alias-after-the-flood": (
            BrokerConfig(),
            [CONNECT, publish_with_block(FLOOD + b"\x23\x00\x03", topic=b"al/ias")],
            [None, CARRIES],
        ),
        "publish-empty-topic-known-alias": (
            # The alias is defined by a first PUBLISH; the second uses it.
            BrokerConfig(),
            [
                CONNECT,
                encode(PublishPacket("al/ias", b"first", QoS(1), packet_id=1, topic_alias=3)),
                publish_with_block(b"\x23\x00\x03" + FLOOD, topic=b"", packet_id=2),
            ],
            [None, b"\x40\x02\x00\x01", CARRIES],
        ),
        # Checks the broker makes before the Subscription Identifiers: each
        # answers as before, not with 0x82.
        "publish-alias-above-maximum": (
            BrokerConfig(topic_alias_maximum=2),
            [CONNECT, publish_with_block(FLOOD + b"\x23\x00\x03")],
            [None, disconnect(0x94, "topic alias 3 outside 1..2 [MQTT-3.3.2-9]")],
        ),
        "publish-alias-never-defined": (
            BrokerConfig(),
            [CONNECT, publish_with_block(b"\x23\x00\x09" + FLOOD, topic=b"")],
            [None, disconnect(0x94, "topic alias 9 was never defined")],
        ),
        "publish-topic-too-long": (
            BrokerConfig(max_topic_length=8),
            [CONNECT, publish_with_block(FLOOD, topic=b"t" * 9)],
            [None, disconnect(0x90, "topic name longer than 8 bytes")],
        ),
        "publish-too-many-user-properties": (
            # Refused with 0x97 and the connection goes on, as before.
            BrokerConfig(max_user_properties=2),
            [
                CONNECT,
                publish_with_block(FLOOD + _pair(b"a", b"") * 3, packet_id=6),
                PINGREQ,
            ],
            [None, b"\x40\x03\x00\x06\x97", PINGRESP],
        ),
        "publish-identifiers-and-user-properties-in-turn": (
            BrokerConfig(),
            [CONNECT, publish_with_block((_sid(1) + _pair(b"a", b"")) * 100_000, packet_id=6)],
            [None, b"\x40\x03\x00\x06\x97"],
        ),
        "publish-qos-above-maximum": (
            BrokerConfig(maximum_qos=1),
            [CONNECT, publish_with_block(FLOOD, qos=2)],
            [None, disconnect(0x9B, "QoS 2 above Maximum QoS")],
        ),
        "publish-retain-not-available": (
            BrokerConfig(retain_available=False),
            [CONNECT, publish_with_block(FLOOD, flags=0x01)],
            [None, disconnect(0x9A, "retained messages are not supported")],
        ),
        # Refused by the codec, in the order it reads the packet.
        "publish-malformed-after-the-identifiers": (
            BrokerConfig(),
            [CONNECT, publish_with_block(FLOOD + b"\x0b\x80\x00")],
            [None, disconnect(0x81, "variable byte integer is not minimally encoded")],
        ),
        "publish-identifier-0-after-the-identifiers": (
            BrokerConfig(),
            [CONNECT, publish_with_block(FLOOD + b"\x0b\x00")],
            [None, disconnect(0x82, "SUBSCRIPTION_IDENTIFIER has invalid value 0")],
        ),
        "publish-bad-utf8-after-the-identifiers": (
            BrokerConfig(),
            [CONNECT, publish_with_block(FLOOD + _pair(b"\xff", b""))],
            [None, disconnect(0x81, "user property name is not well-formed UTF-8")],
        ),
        "publish-alias-0-after-the-identifiers": (
            BrokerConfig(),
            [CONNECT, publish_with_block(FLOOD + b"\x23\x00\x00")],
            [None, disconnect(0x94, "TOPIC_ALIAS has invalid value 0")],
        ),
        "publish-wildcard-topic": (
            BrokerConfig(),
            [CONNECT, publish_with_block(FLOOD, topic=b"a/#")],
            [None, 0x90],  # from the codec, after the property block
        ),
        "publish-block-overruns": (
            BrokerConfig(),
            [CONNECT, publish_with_block(FLOOD + b"\x0b\x81")],
            [None, 0x81],
        ),
        # Several packets in one read: those before the refused one count.
        "one-read-then-refused": (
            BrokerConfig(),
            [
                CONNECT,
                encode(PublishPacket("t", b"before", QoS(1), packet_id=1))
                + publish_with_block(FLOOD, packet_id=2)
                + PINGREQ,
            ],
            [None, b"\x40\x02\x00\x01" + CARRIES],
        ),
        "one-read-then-malformed": (
            BrokerConfig(),
            [
                CONNECT,
                encode(PublishPacket("t", b"before", QoS(1), packet_id=1))
                + publish_with_block(FLOOD + b"\x0b\x00", packet_id=2)
                + PINGREQ,
            ],
            [
                None,
                b"\x40\x02\x00\x01"
                + disconnect(0x82, "SUBSCRIPTION_IDENTIFIER has invalid value 0"),
            ],
        ),
        # MQTT 3.1.1 has no properties: those bytes are the payload.
        "publish-3.1.1": (
            BrokerConfig(),
            [
                PacketFactory.connect("flooder", V311),
                PacketFactory.encode(
                    PublishPacket("t", b"\x0b\x01" * 1000, QoS(1), packet_id=3), V311
                ),
            ],
            [None, b"\x40\x02\x00\x03"],
        ),
        # SUBSCRIBE carries one; its answers do not change.
        "subscribe-one": (
            BrokerConfig(),
            [
                CONNECT,
                encode(SubscribePacket(8, (Subscription("f/#"),), subscription_identifier=7)),
                encode(PublishPacket("f/x", b"own", QoS(0))),
            ],
            [
                None,
                b"\x90\x04\x00\x08\x00\x00",
                # Its own message back, with the identifier [MQTT-3.3.4-3].
                b"\x30\x0b\x00\x03f/x\x02\x0b\x07own",
            ],
        ),
        "subscribe-repeated": (
            BrokerConfig(),
            [CONNECT, b"\x82\x0b\x00\x08\x04" + sids(2) + b"\x00\x01a\x00"],
            [None, disconnect(0x82, "SUBSCRIPTION_IDENTIFIER included more than once")],
        ),
        "subscribe-not-available": (
            BrokerConfig(subscription_identifiers_available=False),
            [CONNECT, encode(SubscribePacket(8, (Subscription("f"),), subscription_identifier=7))],
            [None, b"\x90\x04\x00\x08\x00\xa1"],  # SUBACK 0xA1
        ),
    }
)


def run(config: BrokerConfig, script: list[bytes]) -> list[tuple[bytes, bytes, bool]]:
    """Each flooder read: (what it hears, what a ``#`` subscriber hears, closed?)."""
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
    """Brokers made now give their readers no Subscription Identifier limit."""

    def reader(**kwargs: Any) -> Any:
        del kwargs["max_subscription_identifiers"]
        return PacketReader(**kwargs)

    monkeypatch.setattr(server, "PacketReader", reader)


# The payloads the ``#`` subscriber gets, where it gets any.
ROUTED = {
    "publish-empty-topic-known-alias": [b"first"],
    "one-read-then-refused": [b"before"],
    "one-read-then-malformed": [b"before"],
    "publish-3.1.1": [b"\x0b\x01" * 1000],
    "subscribe-one": [b"own"],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_broker_answers_as_without_the_limit(name: str, request: pytest.FixtureRequest) -> None:
    config, script, expected = SCENARIOS[name]
    limited = run(config, script)
    request.getfixturevalue("unlimited_readers")
    assert run(config, script) == limited
    version = V311 if name == "publish-3.1.1" else V5
    for (heard, _, closed), answer in zip(limited, expected, strict=True):
        packets = PacketReader(version=version).feed(heard)
        if isinstance(answer, bytes):
            assert heard == answer
        elif isinstance(answer, int):
            (goodbye,) = packets
            assert isinstance(goodbye, DisconnectPacket)
            assert goodbye.reason_code == answer
        # Closed exactly when told so with a DISCONNECT, as MQTT 5 does.
        assert closed == (bool(packets) and isinstance(packets[-1], DisconnectPacket))
    routed = PacketReader(version=V5).feed(b"".join(step[1] for step in limited))
    assert [p.payload for p in routed if isinstance(p, PublishPacket)] == ROUTED.get(name, [])


def peak_while(fn: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_flood_costs_the_broker_one_identifier() -> None:
    """1 MB of distinct Subscription Identifiers: refused, having built one."""
    h = BrokerHarness()
    flooder = h.open_raw()
    h.send_raw(flooder, CONNECT)
    block = b"".join(_sid(16_384 + i) for i in range(260_000))  # 4 bytes, a new int each
    data = publish_with_block(block)
    assert len(data) <= BrokerConfig().max_packet_size
    _, peak = peak_while(lambda: h.broker.receive_data(flooder, data, h.now))
    assert h.send_raw(flooder, b"") == CARRIES
    # Building all 260,000 (an int, a list slot and a tuple slot each) would
    # take more than ten times the packet.
    assert peak < 64 * 1024


def test_a_client_still_takes_every_identifier_its_server_sends() -> None:
    """No limit on a client's reader: a PUBLISH may carry one per subscription."""
    server = connected()
    identifiers = tuple(range(1, 100_001))
    server.send(PublishPacket("t", b"p", QoS(1), packet_id=3, subscription_identifiers=identifiers))
    (event,) = server.events()
    assert isinstance(event, MessageReceived)
    assert event.subscription_identifiers == identifiers
    assert server.wire() == b"\x40\x02\x00\x03"
