"""Crash tests: the real broker (``python -m mqttproto broker --persist FILE``)
killed with SIGKILL in the middle of QoS 1 and QoS 2 streams, and started
again on the same file.

A persistent publisher streams numbered messages, QoS 1 and QoS 2 in turn,
to ``t/<n>``. Two persistent subscribers take them at QoS 2: one stays
connected (a delivery is in flight when the kill comes), one went away before
the stream and comes back only at the end (everything queued for it). The
broker is killed five times, each at a random point of the stream (the seed
is in the failure message), and restarted on the same file; every client
reconnects with its session, which must be present.

At the end every message the publisher sent has been acknowledged (its
session resends what was not), and the counts say: every acknowledged
message reached both subscribers, no QoS 2 message reached either twice,
and the retained message set before the first kill is there.
"""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from interop import HOST

from mqttproto import ProtocolVersion, QoS, Subscription
from mqttproto.client import ClientConnection
from mqttproto.events import ConnectionAccepted, MessageReceived, PublishAcknowledged

KILLS = 5
SEED = random.randrange(1 << 30)


class BrokerProcess:
    """``mqttproto broker --persist FILE`` on a free port of 127.0.0.1."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mqttproto", "broker", "--port", "0", "--persist", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = b""
        timer = threading.Timer(20, self.process.kill)
        timer.start()
        try:
            line = self.process.stdout.readline()
        finally:
            timer.cancel()
        found = re.search(rb":(\d+)", line)
        assert found, (line, self.stderr())
        self.port = int(found.group(1))

    def stderr(self) -> bytes:
        if self.process.poll() is None:
            return b""
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def kill(self) -> None:
        """SIGKILL: nothing the broker did not commit survives."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            stream.close()


class Client:
    """A blocking client on the sans-IO ClientConnection; its session (and
    the QoS state in it) outlives each network connection."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.conn = ClientConnection(ProtocolVersion.MQTT_5_0)
        self.sock: socket.socket | None = None
        self.received: list[bytes] = []
        self.acknowledged: set[int] = set()

    def connect(self, port: int) -> bool:
        """Connect with the session kept; whether the server had it."""
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.conn.connect(
            client_id=self.client_id,
            clean_start=False,
            session_expiry_interval=3600,
            keep_alive=0,
        )
        for _ in range(200):
            for event in self.poll(0.05):
                if isinstance(event, ConnectionAccepted):
                    return event.session_present
        raise AssertionError(f"{self.client_id}: no CONNACK")

    def send(self) -> None:
        data = self.conn.data_to_send(time.monotonic())
        if data and self.sock is not None:
            try:
                self.sock.sendall(data)
            except OSError:
                self.lost()

    def poll(self, timeout: float) -> list[object]:
        """Read what is there (waiting up to ``timeout``), answer it, return the events."""
        if self.sock is None:
            return []
        self.send()
        if self.sock is None:
            return []
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        except OSError:
            data = b""
        if not data:
            self.lost()
            return []
        self.conn.receive_data(data, time.monotonic())
        events = list(self.conn.events())
        for event in events:
            if isinstance(event, MessageReceived):
                self.received.append(event.payload)
            elif isinstance(event, PublishAcknowledged):
                # 0x92: a PUBREL sent again after a kill that came between
                # the broker's commit of the PUBREL and the client's reading
                # of the PUBCOMP; the message was delivered, once.
                assert event.reason_code < 0x80 or event.reason_code == 0x92, event
        self.send()
        return events

    def lost(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            if not self.conn.closed:
                self.conn.receive_eof(time.monotonic())
            list(self.conn.events())

    def close(self) -> None:
        self.lost()


def test_sigkill_loses_no_acknowledged_message_and_duplicates_no_qos2(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    path = tmp_path / "broker.db"
    broker = BrokerProcess(path)
    publisher, online, offline = Client("pub"), Client("online"), Client("offline")
    clients = (publisher, online, offline)
    try:
        for subscriber in (online, offline):
            subscriber.connect(broker.port)
            subscriber.conn.subscribe([Subscription("t/#", QoS.EXACTLY_ONCE)])
            for _ in range(100):
                subscriber.poll(0.02)
                if subscriber.conn.inflight == 0:
                    break
        offline.close()  # away until the end: everything is queued for it
        publisher.connect(broker.port)
        publisher.conn.publish("r/kept", b"retained", qos=1, retain=True)
        sent: dict[bytes, int] = {}
        number = 0
        for kill in range(KILLS):
            kill_after = rng.randrange(10, 60)
            for _ in range(kill_after):
                number += 1
                qos = 1 + number % 2
                payload = b"q%d-%d" % (qos, number)
                publisher.conn.publish(f"t/{number}", payload, qos=qos)
                sent[payload] = qos
                publisher.poll(0.001)
                online.poll(0.001)
            broker.kill()
            for client in (publisher, online):
                client.lost()
            broker = BrokerProcess(path)
            assert publisher.connect(broker.port), f"seed {SEED}, kill {kill}"
            assert online.connect(broker.port), f"seed {SEED}, kill {kill}"
        # The stream is over: every message of the publisher's session gets
        # acknowledged (it resent what the kills cut short).
        for _ in range(2000):
            publisher.poll(0.01)
            online.poll(0.001)
            if publisher.conn.inflight == 0 and publisher.conn.queued == 0:
                break
        assert publisher.conn.inflight == 0, f"seed {SEED}"
        assert offline.connect(broker.port), f"seed {SEED}"
        for _ in range(3000):
            online.poll(0.005)
            offline.poll(0.005)
            if set(sent) <= set(online.received) and set(sent) <= set(offline.received):
                break
        late = Client("late")
        late.connect(broker.port)
        late.conn.subscribe([Subscription("r/#", QoS.AT_LEAST_ONCE)])
        for _ in range(200):
            late.poll(0.02)
            if late.received:
                break
        for subscriber in (online, offline):
            counts = Counter(subscriber.received)
            missing = sorted(set(sent) - set(counts))
            assert not missing, f"seed {SEED}: {subscriber.client_id} lost {missing[:5]}"
            twice = sorted(p for p, n in counts.items() if n > 1 and sent.get(p) == 2)
            assert not twice, f"seed {SEED}: {subscriber.client_id} got QoS 2 twice: {twice[:5]}"
        assert late.received == [b"retained"]
        late.close()
    finally:
        for client in clients:
            client.close()
        broker.kill()
