"""No loss under faults, on real sockets through the asyncio adapter.

A :class:`~mqttproto.adapters.asyncio.BrokerServer` on 127.0.0.1 (port 0),
publishers and persistent subscribers driven by
:class:`~mqttproto.client.ClientConnection` over asyncio streams. While the
publishers send QoS 1 and QoS 2 messages, a killer resets subscribers'
sockets again and again (SO_LINGER 0, then abort: a TCP RST, no DISCONNECT);
each subscriber reconnects at once with ``clean_start=False``. In the end
every subscriber has every QoS 1 message at least once and every QoS 2
message exactly once.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import Counter
from typing import Any

from mqttproto import ProtocolVersion, QoS, Subscription
from mqttproto.adapters.asyncio import BrokerServer, start_server
from mqttproto.client import ClientConnection
from mqttproto.events import (
    ConnectionAccepted,
    Event,
    MessageReceived,
    PublishAcknowledged,
    SubscribeAcknowledged,
)

HOST = "127.0.0.1"
V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
MESSAGES_PER_PUBLISHER = 300
TIMEOUT = 20.0


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST: SO_LINGER on with a zero timeout, then abort."""
    if writer.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class NetClient:
    """One client identity: a ClientConnection that outlives its sockets."""

    def __init__(self, name: str, version: ProtocolVersion, port: int) -> None:
        self.name = name
        self.port = port
        self.conn = ClientConnection(version)
        self.args: dict[str, Any] = {"client_id": name, "clean_start": False}
        if version == V5:
            self.args["session_expiry_interval"] = 300
        self.writer: asyncio.StreamWriter | None = None
        self.received: Counter[bytes] = Counter()
        self.acknowledged: dict[int, int] = {}
        self.connections = 0
        self.subscribed = asyncio.Event()
        self.accepted = asyncio.Event()
        self.stopping = False

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def flush(self) -> None:
        writer = self.writer
        data = self.conn.data_to_send(self.now())
        if data and writer is not None and not writer.is_closing():
            writer.write(data)

    def handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                self.received[event.payload] += 1
            elif isinstance(event, PublishAcknowledged):
                self.acknowledged[event.packet_id] = event.reason_code
            elif isinstance(event, ConnectionAccepted):
                self.accepted.set()
                # A persistent session keeps its subscription: subscribe once.
                if not self.subscribed.is_set() and self.name.startswith("sub"):
                    self.conn.subscribe([Subscription("load/#", QoS.EXACTLY_ONCE)])
            elif isinstance(event, SubscribeAcknowledged):
                assert event.reason_codes == (QoS.EXACTLY_ONCE,)
                self.subscribed.set()

    async def one_connection(self) -> None:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        if self.stopping:
            # Stopped while it connected: the final resets did not see it.
            writer.transport.abort()
            return
        self.writer = writer
        self.connections += 1
        self.accepted.clear()
        self.conn.connect(**self.args)
        self.flush()
        try:
            for _ in range(1_000_000):
                data = await reader.read(65536)
                if not data:
                    break
                self.conn.receive_data(data, self.now())
                self.handle(list(self.conn.events()))
                self.flush()
                if self.conn.closed:
                    break
        except OSError:
            pass  # reset under our feet
        finally:
            self.writer = None
            if not self.conn.closed:
                self.conn.receive_eof(self.now())
            self.handle(list(self.conn.events()))
            writer.transport.abort()

    async def run(self) -> None:
        """Connect, and reconnect whenever the connection dies, until stopped."""
        for _ in range(10_000):
            if self.stopping:
                return
            await self.one_connection()
            await asyncio.sleep(0.005)

    def kill(self) -> bool:
        if self.writer is None or not self.accepted.is_set():
            return False
        reset(self.writer)
        return True


async def wait_until(predicate: Any, what: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def scenario() -> dict[str, Any]:
    server: BrokerServer = await start_server(HOST, 0)
    try:
        port = server.port
        subscribers = [
            NetClient("sub-a", V5, port),
            NetClient("sub-b", V311, port),
            NetClient("sub-c", V5, port),
        ]
        publishers = [NetClient("pub-a", V5, port), NetClient("pub-b", V311, port)]
        tasks = [asyncio.create_task(c.run()) for c in subscribers + publishers]
        for client in subscribers:
            await asyncio.wait_for(client.subscribed.wait(), 5)
        for client in publishers:
            await asyncio.wait_for(client.accepted.wait(), 5)

        sent: dict[bytes, int] = {}
        done = asyncio.Event()
        kills = 0

        async def killer() -> None:
            nonlocal kills
            rng = random.Random(7)
            for round_ in range(2_000):
                if done.is_set():
                    return
                await asyncio.sleep(rng.uniform(0.005, 0.03))
                if subscribers[round_ % len(subscribers)].kill():
                    kills += 1

        async def publish(client: NetClient) -> None:
            for i in range(MESSAGES_PER_PUBLISHER):
                qos = 1 + i % 2
                payload = f"{client.name}-{i}".encode()
                sent[payload] = qos
                client.conn.publish(f"load/{client.name}", payload, qos=qos)
                client.flush()
                if i % 4 == 3:
                    await asyncio.sleep(0.02)
            await wait_until(
                lambda: len(client.acknowledged) == MESSAGES_PER_PUBLISHER,
                f"{client.name}'s acknowledgements",
                10,
            )

        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*(publish(p) for p in publishers))
        done.set()
        await kill_task

        def complete() -> bool:
            return all(all(s.received[p] for p in sent) for s in subscribers)

        await wait_until(complete, "every message at every subscriber", 10)
        for client in subscribers + publishers:
            client.stopping = True
            if client.writer is not None:
                reset(client.writer)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return {
            "sent": sent,
            "subscribers": subscribers,
            "publishers": publishers,
            "kills": kills,
            "sessions": server.broker.sessions(),
        }
    finally:
        await server.close()


def test_persistent_subscribers_reset_repeatedly_lose_nothing():
    result = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    sent: dict[bytes, int] = result["sent"]
    assert len(sent) == 2 * MESSAGES_PER_PUBLISHER
    print(
        f"{result['kills']} resets;",
        {s.name: (s.connections, sum(s.received.values())) for s in result["subscribers"]},
    )
    # Enough violence to matter: every subscriber lost several connections.
    assert result["kills"] >= 20
    for subscriber in result["subscribers"]:
        assert subscriber.connections >= 5, subscriber.name
        for payload, qos in sent.items():
            count = subscriber.received[payload]
            if qos == 1:
                assert count >= 1, (subscriber.name, payload)  # at least once
            else:
                assert count == 1, (subscriber.name, payload, count)  # exactly once
        assert set(subscriber.received) == set(sent)
    for publisher in result["publishers"]:
        assert all(code < 0x80 for code in publisher.acknowledged.values())
    # Nothing is left waiting in any session.
    for info in result["sessions"]:
        assert info.queued == 0, info
