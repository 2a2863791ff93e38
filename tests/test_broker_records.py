"""The file says what the broker holds: after every commit, the SQLite store's
record of each persistent session is the broker's session.

A broker on a durable store records each change of a session's messages as
it happens (queued, sent from the queue, dropped from it, sent at once, past
PUBREC, acknowledged) rather than a snapshot. A change it forgot to record
would show only after a crash; here a random workload (subscribers that
acknowledge late and come and go, small windows and queues, retained
messages fed to new subscriptions, a QoS 2 publisher that releases late) is
checked after every step against a second store opened on the file: what a
restart would load.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from helpers import V5, V311, BrokerHarness, Client, PacketFactory

from mqttproto import QoS, Subscription
from mqttproto.config import BrokerConfig, ClientConfig
from mqttproto.events import MessageReceived
from mqttproto.packets import PublishPacket, PubRelPacket
from mqttproto.store import SQLiteStore, StoredSession


def _picture(session: StoredSession) -> tuple[Any, ...]:
    """What a record says, packets reduced to what a client sees of them."""

    def flow(message: Any) -> tuple[Any, ...]:
        p = message.packet
        return (message.packet_id, p.topic, p.payload, int(p.qos), p.retain, message.released)

    return (
        session.subscriptions,
        sorted(flow(m) for m in session.inflight),
        [flow(m) for m in session.queued],
        tuple(sorted(session.awaiting_release)),
    )


class Workload:
    def __init__(self, path: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.path = path
        self.store = SQLiteStore(path)
        config = BrokerConfig(max_inflight_messages=3, max_queued_messages=6)
        self.h = BrokerHarness(config, store=self.store)
        self.subscribers: dict[str, Client] = {}
        manual = ClientConfig(auto_acknowledge=False)
        for index, version in enumerate([V5, V311, V5]):
            name = f"s{index}"
            client = self.h.client(name, version, config=manual)
            self.subscribers[name] = client
            self._connect(client)
            qos = QoS(self.rng.randrange(3))
            client.conn.subscribe([Subscription("t/#", qos)])
            self.h.pump()
        self.publisher = self.h.connected("pub")
        # A raw QoS 2 publisher with a persistent session, which sends
        # PUBREL when the test says so.
        self.raw = self.h.open_raw()
        self.h.send_raw(
            self.raw,
            PacketFactory.connect(
                "raw", clean_start=False, session_expiry_interval=3600, keep_alive=0
            ),
        )
        self.unreleased: list[int] = []
        self.next_raw_id = 1
        self.serial = 0

    def _connect(self, client: Client) -> None:
        if client.conn.version == V5:
            client.connect(clean_start=False, session_expiry_interval=3600, keep_alive=0)
        else:
            client.connect(clean_start=False, keep_alive=0)

    def step(self) -> None:
        rng = self.rng
        action = rng.randrange(8)
        if action <= 2:
            for _ in range(rng.randrange(1, 6)):
                self.serial += 1
                self.publisher.conn.publish(
                    f"t/{self.serial % 3}", b"m%d" % self.serial, qos=QoS(rng.randrange(3))
                )
            self.h.pump()
        elif action == 3:
            client = self.subscribers[rng.choice(sorted(self.subscribers))]
            if client.closed:
                self._connect(client)
            else:
                self._acknowledge(client, rng.randrange(4))
        elif action == 4:
            client = self.subscribers[rng.choice(sorted(self.subscribers))]
            if not client.closed:
                if rng.randrange(2):
                    # Acknowledged, and gone before the answer: a QoS 2
                    # flow stays past PUBREC, waiting to send PUBREL again.
                    for event in client.take_messages():
                        if event.packet.packet_id is not None:
                            client.conn.acknowledge(event.packet.packet_id)
                    assert client.conn_id is not None
                    data = client.conn.data_to_send(self.h.now)
                    self.h.broker.receive_data(client.conn_id, data, self.h.now)
                    self.h.broker.flush(self.h.now)
                client.drop()
        elif action == 5:
            self.serial += 1
            self.publisher.conn.publish(
                f"r/{self.serial % 4}", b"r%d" % self.serial, qos=QoS(rng.randrange(3)), retain=True
            )
            self.h.pump()
        elif action == 6:
            client = self.subscribers[rng.choice(sorted(self.subscribers))]
            if not client.closed:
                # Again and again: retained messages fed each time.
                client.conn.subscribe([Subscription("r/#", QoS(rng.randrange(3)))])
                self.h.pump()
        elif self.unreleased and rng.randrange(2):
            packet_id = self.unreleased.pop(rng.randrange(len(self.unreleased)))
            self.h.send_raw(self.raw, PacketFactory.encode(PubRelPacket(packet_id)))
        else:
            packet_id = self.next_raw_id
            self.next_raw_id = packet_id % 20 + 1
            if packet_id not in self.unreleased:
                self.unreleased.append(packet_id)
            self.serial += 1
            publish = PublishPacket(
                "t/q2", b"x%d" % self.serial, QoS.EXACTLY_ONCE, packet_id=packet_id
            )
            self.h.send_raw(self.raw, PacketFactory.encode(publish))

    def _acknowledge(self, client: Client, count: int) -> None:
        for event in client.take_messages()[:count] if count else client.take_messages():
            assert isinstance(event, MessageReceived)
            packet_id = event.packet.packet_id
            if packet_id is not None:
                client.conn.acknowledge(packet_id)
        self.h.pump()

    def check(self) -> None:
        broker = self.h.broker
        expected = {
            client_id: _picture(session.snapshot())
            for client_id, session in broker._sessions.items()
            if session.persistent
        }
        reader = SQLiteStore(self.path)
        try:
            loaded = {s.client_id: _picture(s) for s in reader.load_sessions()}
        finally:
            reader.close()
        assert loaded == expected


@pytest.mark.parametrize("seed", range(6))
def test_the_file_holds_what_the_broker_holds_after_every_commit(tmp_path: Path, seed: int) -> None:
    workload = Workload(tmp_path / "s.db", seed)
    workload.check()
    for _ in range(120):
        workload.step()
        workload.check()
    workload.store.close()
