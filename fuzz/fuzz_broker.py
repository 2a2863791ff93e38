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
bit 3 drives one :class:`~mqttproto.ServerConnection` on its own instead
(see *The server role alone* below); bits 4-7 are unused.

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

The server role alone
---------------------

With bit 3 of the selector, the script drives one ``ServerConnection`` and a
small application answering its events (accept or refuse, challenge,
acknowledge with a code, suback, unsuback, publish to the client), its
choices taken from ``data[1:9]``; the script starts at ``data[9]``, with
records as above (the connection slot is ignored), where 0 = bytes arrive,
1 = the clock moves, 2 = the stream ends after the bytes, 3 = the
application publishes ``len`` bytes to the client at QoS ``len % 3``. Invariants: only
``RemoteProtocolError`` escapes ``next_event`` (never a misuse error for an
answer the role asked for), every byte out parses as server packets, and
the same script fed byte by byte gives the same bytes and events: packets are
handled as the events are taken, so the cut cannot matter.
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
        from mqttproto import Broker, BrokerConfig, PacketReader, ProtocolVersion, ServerConnection
    from mqttproto import ServerConfig, events
    from mqttproto.enums import ReasonCode
    from mqttproto.errors import LocalProtocolError, RemoteProtocolError
else:
    from mqttproto import (
        Broker,
        BrokerConfig,
        PacketReader,
        ProtocolVersion,
        ServerConfig,
        ServerConnection,
        events,
    )
    from mqttproto.enums import ReasonCode
    from mqttproto.errors import LocalProtocolError, RemoteProtocolError

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


SERVER = ServerConfig(
    max_packet_size=4096, receive_maximum=2, topic_alias_maximum=2, max_queued_messages=2
)
#: Acknowledgement codes an application may give (QoS 1 and 2, any version).
_ACK_CODES = (
    ReasonCode.SUCCESS,
    ReasonCode.NO_MATCHING_SUBSCRIBERS,
    ReasonCode.NOT_AUTHORIZED,
    ReasonCode.QUOTA_EXCEEDED,
)


class _Application:
    """Answers every event of one ServerConnection, choices from ``choices``."""

    def __init__(self, conn: ServerConnection, choices: bytes) -> None:
        self.conn = conn
        self.choices = choices or b"\x00"
        self.turn = 0
        self.log: list[str] = []

    def choose(self, count: int) -> int:
        value = self.choices[self.turn % len(self.choices)]
        self.turn += 1
        return value % count

    def drain(self) -> None:
        conn = self.conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self.log.append(f"error {exc.reason_code!r}")
                continue
            if event is None:
                return
            self.log.append(type(event).__name__)
            self.answer(event)

    def answer(self, event: object) -> None:
        conn = self.conn
        if isinstance(event, events.ConnectRequested):
            choice = self.choose(4)
            if choice == 0:
                conn.refuse(ReasonCode.NOT_AUTHORIZED)
            elif choice == 1 and event.authentication_method is not None:
                conn.auth(authentication_data=b"challenge")
            else:
                with _maybe_too_large():
                    conn.accept(assigned_client_identifier=None if event.client_id else "given")
        elif isinstance(event, events.AuthReceived):
            if conn.closed:
                return
            choice = self.choose(3)
            if conn.state.value == "connecting":
                if choice == 0:
                    conn.refuse(ReasonCode.NOT_AUTHORIZED)
                elif choice == 1:
                    conn.auth(authentication_data=b"again")
                else:
                    with _maybe_too_large():
                        conn.accept()
            elif choice == 0:
                conn.disconnect(ReasonCode.NOT_AUTHORIZED)
            else:
                conn.auth(ReasonCode.SUCCESS if choice == 1 else ReasonCode.CONTINUE_AUTHENTICATION)
        elif isinstance(event, events.MessageReceived):
            if event.qos:
                conn.acknowledge(event.packet.packet_id or 0, _ACK_CODES[self.choose(4)])
        elif isinstance(event, events.SubscribeRequested):
            conn.suback(event.packet_id, [s.max_qos for s in event.subscriptions])
        elif isinstance(event, events.UnsubscribeRequested):
            conn.unsuback(event.packet_id)

    def publish(self, length: int) -> None:
        conn = self.conn
        if conn.state.value != "connected":
            return
        try:
            conn.publish("to/client", bytes(length), qos=length % 3)
        except LocalProtocolError as exc:
            # Allowed refusals only: the queue is full, or too large for the client.
            assert "queue" in str(exc) or "Maximum Packet Size" in str(exc), exc


class _maybe_too_large:
    """accept() refuses a CONNACK the client's Maximum Packet Size cannot hold."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, traceback: object) -> bool:
        return isinstance(value, LocalProtocolError) and "Maximum Packet Size" in str(value)


def _run_server(script: bytes, choices: bytes, byte_by_byte: bool) -> tuple[bytes, list[str]]:
    conn = ServerConnection(SERVER, now=0.0)
    app = _Application(conn, choices)
    out = bytearray()
    now = 0.0
    pos = 0
    while pos + 2 <= len(script):
        op, length = script[pos], script[pos + 1]
        chunk = script[pos + 2 : pos + 2 + length]
        pos += 2 + length
        action = op >> 2 & 3
        if action in (0, 2):
            pieces = [chunk[i : i + 1] for i in range(len(chunk))] if byte_by_byte else [chunk]
            for piece in pieces:
                try:
                    conn.receive_data(piece, now)
                except RemoteProtocolError as exc:
                    app.log.append(f"error {exc.reason_code!r}")
                app.drain()
            if action == 2:
                conn.receive_eof(now)
                app.drain()
        elif action == 1:
            now += length / 4
            conn.handle_timer(now)
            app.drain()
        else:
            app.publish(length)
            app.drain()
        out += conn.data_to_send(now)
        timer = conn.get_timer()
        assert timer is None or math.isfinite(timer)
    if out:
        # Every byte out parses as server packets of the connection's version.
        PacketReader(version=conn.version or ProtocolVersion.MQTT_3_1_1).feed(bytes(out))
    return bytes(out), app.log


def _server_alone(data: bytes) -> None:
    choices, script = data[1:9], data[9 : 9 + MAX_SCRIPT]
    whole = _run_server(script, choices, byte_by_byte=False)
    cut = _run_server(script, choices, byte_by_byte=True)
    assert whole == cut, (whole, cut)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    selector = data[0]
    if selector & 8:
        _server_alone(data)
        return
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
