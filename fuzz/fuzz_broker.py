"""Fuzz harness for the sans-IO Broker: several hostile connections at once.

Run a campaign (see fuzz/README.md)::

    .venv/bin/python fuzz/fuzz_broker.py CORPUS_DIR -max_total_time=3600

``TestOneInput`` is importable without atheris; tests/test_fuzz_broker_corpus.py
replays the corpus through it on every test run.

Input layout
------------

``data[0]`` is the selector: bits 0-1 are how many connections (1 to 4) the
broker opens; bit 2 a small configuration (receive maximum 2, 2 queued
messages of at most 2,048 bytes, a memory limit of 8,192 bytes, 2
subscriptions per session, 3 topic levels, topic aliases 2, Maximum QoS 1,
no retain, ``$SYS`` every 5 s; otherwise 3 retained messages per client);
bits 3-7 are unused.

The rest is a script of records ``[op][len][len bytes]``:

- ``op & 3`` picks the connection; ``op >> 2 & 3`` what happens:
  0 = its ``len`` bytes arrive; 1 = the clock moves ``len / 4`` seconds and
  the broker's timer runs; 2 = the peer half-closes (``receive_eof``) after
  the bytes; 3 = the transport is gone (``connection_lost``), then a new
  connection takes that slot. With bit 4 of ``op`` set the record is none
  of those: the adapter reports a backlog of ``len * 64`` unwritten bytes
  for the connection (``output_backlog``; the small configuration's
  ``max_unsent_bytes`` is 4,096). Bits 5-7 of ``op`` are unused.

After every record the broker's output is drained with ``flush`` and the
connections it wants closed are closed (``connection_lost``), as an adapter
would.

Invariants (any violation raises, which the fuzzer reports as a crash)
------------------------------------------------------------------------

1. Nothing escapes ``Broker``: ``receive_data``, ``receive_eof``,
   ``connection_lost``, ``handle_timer``, ``flush`` and the introspection
   calls never raise, whatever the bytes (the contract: a broken connection
   gets its goodbye and is scheduled for close).
2. Every byte the broker sends parses: each connection's output is a valid
   stream of server packets for that connection's protocol version.
3. Bounded: live connections never exceed those opened and not lost;
   sessions, subscriptions per session and queues (messages and bytes) stay
   within the config, and the bytes the broker holds for sessions are the
   sum of the distinct messages they hold, within ``memory_limit``.
4. ``get_timer()`` is None or finite.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path

if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from mqttproto import Broker, BrokerConfig, PacketReader, ProtocolVersion
else:
    from mqttproto import Broker, BrokerConfig, PacketReader, ProtocolVersion

MAX_SCRIPT = 8192

SMALL = BrokerConfig(
    receive_maximum=2,
    max_queued_messages=2,
    max_inflight_messages=2,
    max_subscriptions_per_session=2,
    max_topic_levels=3,
    topic_alias_maximum=2,
    maximum_qos=1,
    retain_available=False,
    sys_interval=5.0,
    max_packet_size=4096,
    max_unsent_bytes=4096,
    max_queued_bytes=2048,
    memory_limit=8192,
)
DEFAULT = BrokerConfig(max_packet_size=4096, max_retained_messages_per_client=3)


class _Peer:
    """What the fuzzer's side of one connection has seen from the broker."""

    def __init__(self, conn: int) -> None:
        self.conn = conn
        self.sent = b""  # what was fed, to learn the protocol version
        self.received = b""

    def version(self) -> ProtocolVersion | None:
        # The level byte of the CONNECT the peer sent, if it got that far.
        data = self.sent
        if len(data) < 2 or data[0] >> 4 != 1:
            return None
        pos = 1
        while pos < len(data) and data[pos] & 0x80:
            pos += 1
        pos += 1
        if pos + 2 > len(data):
            return None
        name_length = (data[pos] << 8) | data[pos + 1]
        level_at = pos + 2 + name_length
        if level_at >= len(data):
            return None
        try:
            return ProtocolVersion(data[level_at])
        except ValueError:
            return None


def _check_output(peer: _Peer) -> None:
    """The broker's bytes to this peer parse as server packets."""
    version = peer.version()
    if not peer.received:
        return
    # An unknown level is answered in 3.1.1 [MQTT-3.1.2-2]; 5.0 CONNACK bytes
    # also parse as a 3.1.1 CONNACK only when they carry no properties, so
    # the version the peer asked for is the one to parse with.
    reader = PacketReader(version=version or ProtocolVersion.MQTT_3_1_1)
    reader.feed(peer.received)


def _check_bounds(broker: Broker, live: int, config: BrokerConfig) -> None:
    assert len(broker._conns) <= live
    held = {}
    for session in broker._sessions.values():
        assert len(session.pending) <= config.max_queued_messages
        assert session.queued_bytes == sum(m.size for m, *_ in session.pending)
        assert session.queued_bytes <= config.max_queued_bytes
        assert len(session.flows.outbound.inflight) <= min(config.max_inflight_messages, 65535)
        assert session.inflight_messages.keys() == session.flows.outbound.inflight.keys()
        assert len(session.subscriptions) <= config.max_subscriptions_per_session
        for message in (*(m for m, *_ in session.pending), *session.inflight_messages.values()):
            held[id(message)] = message
    assert broker._held_bytes == sum(m.size for m in held.values())
    assert config.memory_limit is None or broker._held_bytes <= config.memory_limit
    timer = broker.get_timer()
    assert timer is None or math.isfinite(timer)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    selector = data[0]
    config = SMALL if selector & 4 else DEFAULT
    broker = Broker(config)
    now = 0.0
    peers = [_Peer(broker.open_connection(now)) for _ in range((selector & 3) + 1)]
    live = len(peers)
    script = data[1 : 1 + MAX_SCRIPT]
    pos = 0
    while pos + 2 <= len(script):
        op, length = script[pos], script[pos + 1]
        chunk = script[pos + 2 : pos + 2 + length]
        pos += 2 + length
        slot = op & 3
        if slot >= len(peers):
            slot %= len(peers)
        peer = peers[slot]
        action = op >> 2 & 3
        if op & 0x10:
            broker.output_backlog(peer.conn, length * 64, now)
        elif action == 1:
            now += length / 4
            broker.handle_timer(now)
        elif peer.conn in broker._conns:
            if action in (0, 2):
                peer.sent += chunk
                broker.receive_data(peer.conn, chunk, now)
                if action == 2:
                    broker.receive_eof(peer.conn, now)
            else:
                broker.connection_lost(peer.conn, now)
                peers[slot] = _Peer(broker.open_connection(now))
        for conn, out in broker.flush(now):
            for candidate in peers:
                if candidate.conn == conn:
                    candidate.received += out
        for conn in broker.connections_to_close():
            broker.connection_lost(conn, now)
        _check_bounds(broker, live, config)
    for peer in peers:
        _check_output(peer)
    broker.subscribers("a/b")
    broker.sessions()
    broker.retained("#")
    broker.shutdown(now)
    broker.flush(now)
    for conn in broker.connections_to_close():
        broker.connection_lost(conn, now)


def main() -> None:
    # libFuzzer re-runs argv[0] through the shell for -merge, -jobs, -fork and
    # -minimize_crash: make it a command that runs this script with this Python.
    command = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))}"
    atheris.Setup([command, *sys.argv[1:]], TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
