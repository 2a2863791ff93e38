"""Benchmark of the sans-IO broker core.

Measures, as medians over repeats, in µs per message:

- ``fanout``: one MQTT 5 publisher, four subscribers, QoS 0: bytes of 1,000
  PUBLISH packets fed to ``Broker.receive_data`` and every subscriber's
  output collected with ``Broker.flush`` (decode, route, encode once,
  append). The same at QoS 1 (subscribers granted QoS 1, acks fed back;
  the time is that of the broker's calls, not of writing the PUBACKs).
  QoS 1 again with one subscriber (a topic of one subscription). Both
  again with subscribers that announce a Topic Alias Maximum of 10
  (the broker's topic aliases in use: the second message on the topic on).
- ``many topics``: 20,000 MQTT 5 subscribers, each subscribed at QoS 0 to
  a topic of its own (``scale/<n>``), and one publisher whose QoS 0
  messages each go to a random one of the 20,000 topics (the workload of
  ``broker_scale.py``): bytes of 1,000 PUBLISH packets fed in, every
  subscriber's output collected. The same with one more client subscribed
  to ``alerts/+/#`` (the trie of wildcard filters walked, for nothing); and
  with the messages spread over 1,000 of the topics only, which the route
  cache holds. Then with 100,000 subscribers and topics: the sans-IO part of
  ``broker_scale.py``'s 100,000-client workload, which needs more file
  descriptors than some machines allow a process.
- ``route@100k``: the router alone with 100,000 subscriptions (99,000 exact
  filters and 1,000 with ``+``/``#`` on the same paths), on topics that miss
  the route cache; each topic reaches about one subscriber.

Run: ``python benchmarks/broker_core.py`` (the codec in use, then the pure
one in a subprocess; ``--single`` for just the one in use). Instructions per
message: ``PYTHONHASHSEED=0 valgrind --tool=callgrind
--dump-before=os_getppid python benchmarks/broker_core.py --run many
--batches 12`` (or ``fanout0``, ``fanout1``, ``one1``, ``many1000``,
``manywild``, ``many100k``); the second part written holds the batches after the first
two (10,000 messages here).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time

from mqttproto import (
    ConnectPacket,
    ProtocolVersion,
    PublishPacket,
    QoS,
    SubscribePacket,
    Subscription,
    encode_packet,
)
from mqttproto.broker import Broker
from mqttproto.broker._router import Sub
from mqttproto.broker._sessions import Session
from mqttproto.client import ClientConnection
from mqttproto.codec import codec_implementation
from mqttproto.config import BrokerConfig

V5 = ProtocolVersion.MQTT_5_0
BATCH = 1000
REPEATS = 15
RUN = "--run" in sys.argv
#: ``--run``: the batches fed before the counted ones (caches filled).
RUN_WARMUP = 2


def _mark(batch: int, batches: int) -> None:
    """In ``--run``, call ``os.getppid`` as the counted batches begin and
    end: ``valgrind --tool=callgrind --dump-before=os_getppid`` then writes
    the instructions of the counted batches alone in a part of their own."""
    if RUN and batch in (RUN_WARMUP, batches):
        os.getppid()


def _connect(
    broker: Broker, name: str, now: float, *, aliases: int = 0
) -> tuple[int, ClientConnection]:
    client = ClientConnection(V5)
    conn = broker.open_connection(now)
    client.connect(client_id=name, keep_alive=0, topic_alias_maximum=aliases)
    broker.receive_data(conn, client.data_to_send(now), now)
    client.receive_data(broker.data_to_send(conn, now), now)
    list(client.events())
    return conn, client


def fanout(qos: int, *, aliases: int = 0, repeats: int = REPEATS, receivers: int = 4) -> float:
    broker = Broker()
    now = 0.0
    subscribers = []
    for i in range(receivers):
        conn, client = _connect(broker, f"sub{i}", now, aliases=aliases)
        client.subscribe([Subscription("bench/topic", QoS(qos))])
        broker.receive_data(conn, client.data_to_send(now), now)
        client.receive_data(broker.data_to_send(conn, now), now)
        list(client.events())
        subscribers.append((conn, client))
    pub, _ = _connect(broker, "pub", now)
    payload = b"x" * 64
    chunk = b"".join(
        encode_packet(
            PublishPacket(
                "bench/topic", payload, QoS(qos), packet_id=(i % 60000) + 1 if qos else None
            ),
            version=V5,
        )
        for i in range(BATCH)
    )
    timings = []
    clock = time.perf_counter
    for batch in range(repeats):
        _mark(batch, repeats)
        start = clock()
        broker.receive_data(pub, chunk, now)
        out = broker.flush(now)
        spent = clock() - start
        delivered = sum(len(data) for conn, data in out if conn != pub)
        while qos and out:
            # The subscribers acknowledge what they got; the broker releases
            # what waited behind their Receive Maximum, until all is through.
            # Only the broker's calls are timed: writing the PUBACKs is the
            # subscribers' work.
            acks = [(conn, _pubacks(data)) for conn, data in out if conn != pub]
            start = clock()
            for conn, data in acks:
                broker.receive_data(conn, data, now)
            out = broker.flush(now)
            spent += clock() - start
            out = [(c, d) for c, d in out if c != pub]
        timings.append(spent / BATCH * 1e6)
        assert delivered
    _mark(repeats, repeats)
    return statistics.median(timings)


#: How a QoS 1 PUBLISH of ``bench/topic`` without topic alias begins,
#: after its remaining length and up to its packet id.
_TOPIC = b"\x00\x0bbench/topic"


def _pubacks(data: bytes) -> bytes:
    """PUBACK for every QoS 1 PUBLISH in ``data`` (a subscriber's output).

    The subscribers' own work, not the broker's: with slices of every
    packet at once when they are all such PUBLISH packets, of one size
    (the fan-out without topic aliases), else packet by packet."""
    size = data[1] + 2
    count = len(data) // size
    if (
        data[0] == 0x32
        and size < 0x82
        and count * size == len(data)
        and data[2:15] == _TOPIC
        # The first 15 bytes of every packet are those of the first.
        and all(data[k::size] == data[k : k + 1] * count for k in range(15))
    ):
        acks = bytearray(4 * count)
        acks[0::4] = b"\x40" * count
        acks[1::4] = b"\x02" * count
        acks[2::4] = data[15::size]
        acks[3::4] = data[16::size]
        return bytes(acks)
    pieces = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        length = 0
        shift = 0
        index = pos + 1
        while True:
            byte = data[index]
            length |= (byte & 0x7F) << shift
            index += 1
            shift += 7
            if not byte & 0x80:
                break
        if first >> 4 == 3:
            topic_length = int.from_bytes(data[index : index + 2], "big")
            packet_id = data[index + 2 + topic_length : index + 4 + topic_length]
            pieces.append(b"\x40\x02" + packet_id)
        pos = index + length
    return b"".join(pieces)


def many_topics(
    sessions: int = 20_000,
    spread: int = 20_000,
    *,
    wildcard: bool = False,
    batches: int = REPEATS,
) -> float:
    """QoS 0 to ``sessions`` subscribers of a topic each, messages on
    random topics among the first ``spread`` of them; µs per message. With
    ``wildcard``, one more client subscribes to ``alerts/+/#``, which none
    of the topics match."""
    broker = Broker(BrokerConfig(max_connections=None))
    now = 0.0
    if wildcard:
        conn, client = _connect(broker, "alerts", now)
        client.subscribe([Subscription("alerts/+/#")])
        broker.receive_data(conn, client.data_to_send(now), now)
        broker.data_to_send(conn, now)
    for n in range(sessions):
        conn = broker.open_connection(now)
        hello = encode_packet(ConnectPacket(f"c{n}", keep_alive=0), version=V5)
        subscribe = encode_packet(SubscribePacket(1, [Subscription(f"scale/{n}")]), version=V5)
        broker.receive_data(conn, hello + subscribe, now)
        broker.data_to_send(conn, now)
    pub, _ = _connect(broker, "pub", now)
    rng = random.Random(11)
    payload = b"x" * 64
    chunks = [
        b"".join(
            encode_packet(PublishPacket(f"scale/{rng.randrange(spread)}", payload), version=V5)
            for _ in range(BATCH)
        )
        for _ in range(batches)
    ]
    timings = []
    for batch, chunk in enumerate(chunks):
        _mark(batch, batches)
        start = time.perf_counter()
        broker.receive_data(pub, chunk, now)
        out = broker.flush(now)
        timings.append((time.perf_counter() - start) / BATCH * 1e6)
        assert sum(len(data) for _, data in out) == len(chunk)  # each message once
    _mark(batches, batches)
    return statistics.median(timings)


def route_100k() -> float:
    broker = Broker()
    router = broker._router
    rng = random.Random(7)
    for i in range(100_000):
        session = Session(f"c{i}", max_queued=10)
        if i % 100 == 0:
            # Wildcards on the topics' paths, matching about one topic in 100.
            topic_filter = rng.choice(
                [f"site/{i % 97}/+/humidity", f"site/{i}/#", f"+/{i % 97}/dev{i}/+"]
            )
        else:
            topic_filter = f"site/{i % 97}/dev{i}/temp"
        router.add(Sub(session, topic_filter, 0))
    topics = [f"site/{rng.randrange(97)}/dev{rng.randrange(100_000)}/temp" for _ in range(20_000)]
    timings = []
    for _ in range(REPEATS):
        router._cache.clear()
        start = time.perf_counter()
        for topic in topics:
            router.route(topic)
        timings.append((time.perf_counter() - start) / len(topics) * 1e6)
    return statistics.median(timings)


def main() -> None:
    if "--run" in sys.argv:
        # One scenario, a given number of batches, nothing printed: for
        # counting instructions (see _mark).
        name = sys.argv[sys.argv.index("--run") + 1]
        batches = int(sys.argv[sys.argv.index("--batches") + 1])
        scenarios = {
            "fanout0": lambda: fanout(0, repeats=batches),
            "fanout1": lambda: fanout(1, repeats=batches),
            "one1": lambda: fanout(1, repeats=batches, receivers=1),
            "many": lambda: many_topics(batches=batches),
            "many1000": lambda: many_topics(spread=1000, batches=batches),
            "many100k": lambda: many_topics(100_000, 100_000, batches=batches),
            "manywild": lambda: many_topics(wildcard=True, batches=batches),
        }
        scenarios[name]()
        return
    print(f"codec: {codec_implementation()}")
    print(f"  fanout 1->4 QoS 0: {fanout(0):6.2f} us/message")
    print(f"  fanout 1->4 QoS 1: {fanout(1):6.2f} us/message (acks included)")
    print(f"  fanout 1->1 QoS 1: {fanout(1, receivers=1):6.2f} us/message (acks included)")
    print(f"  ... topic aliases: {fanout(0, aliases=10):6.2f} us/message QoS 0")
    print(f"  ... topic aliases: {fanout(1, aliases=10):6.2f} us/message QoS 1")
    print(f"  20k topics, QoS 0: {many_topics():6.2f} us/message (20,000 topics)")
    print(f"  ... 1,000 of them: {many_topics(spread=1000):6.2f} us/message")
    print(f"  ... and a wildcard:{many_topics(wildcard=True):6.2f} us/message (20,000 topics)")
    print(f"  100k topics, QoS 0:{many_topics(100_000, 100_000):6.2f} us/message (100,000 topics)")
    print(f"  route @100k subs:  {route_100k():6.2f} us/message (cache misses)")
    if "--single" not in sys.argv and codec_implementation() != "python":
        env = dict(os.environ, MQTTPROTO_PURE_PYTHON="1")
        subprocess.run([sys.executable, __file__, "--single"], env=env, check=True)


if __name__ == "__main__":
    main()
