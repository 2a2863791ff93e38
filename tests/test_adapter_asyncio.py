"""The asyncio broker server (mqttproto.adapters.asyncio) on real sockets.

Each test runs its own event loop (``asyncio.run`` under a global timeout) and
a :class:`BrokerServer` on 127.0.0.1 port 0; clients are raw sockets speaking
bytes, or :class:`~mqttproto.ClientConnection` driven over asyncio streams.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mqttproto import ProtocolVersion, QoS
from mqttproto.adapters._server_common import last_packet as _last_packet
from mqttproto.adapters.asyncio import BrokerServer, serve, start_server
from mqttproto.broker import Broker
from mqttproto.client import ClientConnection
from mqttproto.config import BrokerConfig
from mqttproto.events import ConnectionAccepted, Event, MessageReceived, SubscribeAcknowledged

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUT = 20.0
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0

# CONNECT, MQTT 3.1.1, clean session, keep-alive 60, client id "raw".
CONNECT_V311 = bytes.fromhex("100f00044d5154540402003c0003726177")
# CONNECT, MQTT 5.0, clean start, keep-alive 60, no properties, client id "raw5".
CONNECT_V5 = bytes.fromhex("101100044d5154540502003c00000472617735")
CONNACK_V311_ACCEPTED = bytes.fromhex("20020000")
PINGREQ = bytes.fromhex("c000")
PINGRESP = bytes.fromhex("d000")


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), TIMEOUT)

    return asyncio.run(bounded())


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), 5)


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet (fixed header included)."""
    header = await read_exactly(reader, 1)
    length = 0
    shift = 0
    while True:
        byte = (await read_exactly(reader, 1))[0]
        header += bytes([byte])
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header + await read_exactly(reader, length)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 5)


async def raw_connect(
    server: BrokerServer, connect: bytes = CONNECT_V311
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(connect)
    connack = await read_packet(reader)
    return reader, writer, connack


class Client:
    """A :class:`ClientConnection` over an asyncio stream, for tests."""

    def __init__(self, version: ProtocolVersion = V5) -> None:
        self.connection = ClientConnection(version)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.events: list[Event] = []

    async def connect(self, port: int, **kwargs: Any) -> ConnectionAccepted:
        self.reader, self.writer = await asyncio.open_connection(HOST, port)
        self.connection.connect(**kwargs)
        self.flush()
        event = await self.wait_for(ConnectionAccepted)
        assert isinstance(event, ConnectionAccepted)
        return event

    def flush(self) -> None:
        assert self.writer is not None
        data = self.connection.data_to_send(asyncio.get_running_loop().time())
        if data:
            self.writer.write(data)

    async def wait_for(self, kind: type[Event]) -> Event:
        assert self.reader is not None
        while True:
            for index, event in enumerate(self.events):
                if isinstance(event, kind):
                    return self.events.pop(index)
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, f"connection closed while waiting for {kind.__name__}"
            self.connection.receive_data(data, asyncio.get_running_loop().time())
            self.events.extend(self.connection.events())
            self.flush()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# -- listening --------------------------------------------------------------------


def test_port_zero_reports_the_real_port_and_stops_listening_on_close() -> None:
    async def scenario() -> None:
        server = BrokerServer(port=0)
        assert server.sockets == ()
        await server.start()
        port = server.port
        assert port > 0
        assert server.address == (HOST, port)
        assert server.is_serving
        await server.close()
        assert server.sockets == () or not server.is_serving
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, port)

    run(scenario)


def test_a_broker_and_its_arguments_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        BrokerServer(Broker(), config=BrokerConfig())
    with pytest.raises(ValueError, match="max_buffered_output"):
        BrokerServer(max_buffered_output=0)


def test_serve_runs_until_cancelled() -> None:
    async def scenario() -> None:
        ready = asyncio.Event()
        servers: list[BrokerServer] = []
        task = asyncio.ensure_future(serve(port=0, ready=ready, started=servers.append))
        await asyncio.wait_for(ready.wait(), 5)
        (server,) = servers
        reader, writer, connack = await raw_connect(server)
        assert connack == CONNACK_V311_ACCEPTED
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled serve() shut the broker down and closed the client.
        assert await read_to_eof(reader) == b""
        writer.close()
        assert not server.is_serving

    run(scenario)


# -- bytes on the wire ----------------------------------------------------------


def test_connect_gets_connack_bytes_and_ping_gets_pingresp() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            reader, writer, connack = await raw_connect(server)
            assert connack == CONNACK_V311_ACCEPTED
            writer.write(PINGREQ)
            assert await read_packet(reader) == PINGRESP
            assert server.connection_count == 1
            writer.close()
            await wait_until(lambda: server.connection_count == 0, "the connection to go")

    run(scenario)


def test_connect_arriving_byte_by_byte() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            for byte in CONNECT_V311:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0)
            assert await read_packet(reader) == CONNACK_V311_ACCEPTED
            writer.close()

    run(scenario)


def test_v5_connect_is_accepted() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            _, writer, connack = await raw_connect(server, CONNECT_V5)
            assert connack[0] == 0x20
            assert connack[3] == 0x00  # reason code: success
            writer.close()

    run(scenario)


def test_subscribe_publish_round_trip_between_two_clients() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            subscriber, publisher = Client(V5), Client(V311)
            await subscriber.connect(server.port, client_id="sub")
            await publisher.connect(server.port, client_id="pub")
            subscriber.connection.subscribe("sensors/+/temp")
            subscriber.flush()
            await subscriber.wait_for(SubscribeAcknowledged)
            for qos in QoS:
                publisher.connection.publish("sensors/kitchen/temp", f"q{qos}", qos=qos)
                publisher.flush()
                message = await subscriber.wait_for(MessageReceived)
                assert isinstance(message, MessageReceived)
                assert message.topic == "sensors/kitchen/temp"
                assert message.payload == f"q{qos}".encode()
            await subscriber.close()
            await publisher.close()

    run(scenario)


def test_malformed_input_closes_only_that_connection() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            good_reader, good_writer, _ = await raw_connect(server)
            bad_reader, bad_writer, _ = await raw_connect(server, CONNECT_V5)
            # Packet type 0 is reserved: a malformed packet.
            bad_writer.write(bytes.fromhex("0000"))
            rest = await read_to_eof(bad_reader)
            # MQTT 5: DISCONNECT with a failure reason code, then the close.
            assert rest[:1] == b"\xe0"
            assert rest[2] >= 0x80
            # The other connection is untouched.
            good_writer.write(PINGREQ)
            assert await read_packet(good_reader) == PINGRESP
            # After its goodbye the broker waits for the client to close (up
            # to close_timeout), as a client that has read the EOF does.
            bad_writer.close()
            await wait_until(lambda: server.connection_count == 1, "the bad connection to go")
            good_writer.close()

    run(scenario)


def test_garbage_instead_of_connect_is_closed() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await read_to_eof(reader)
            # Closed on our side first: after closing its side the broker
            # waits up to close_timeout (5 s, as long as this wait) for ours.
            writer.close()
            await wait_until(lambda: server.connection_count == 0, "the connection to go")

    run(scenario)


def test_peer_eof_is_handled() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            reader, writer, _ = await raw_connect(server)
            writer.write_eof()
            assert await read_to_eof(reader) == b""
            await wait_until(lambda: server.connection_count == 0, "the connection to go")
            writer.close()

    run(scenario)


def test_keep_alive_expiry_fires_from_the_timer() -> None:
    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            # CONNECT 3.1.1 with keep-alive 1 s, then silence: the broker's
            # timer closes the connection after 1.5 keep-alive periods.
            connect = bytes.fromhex("100f00044d515454040200010003726177")
            reader, writer, connack = await raw_connect(server, connect)
            assert connack == CONNACK_V311_ACCEPTED
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await read_to_eof(reader) == b""
            assert 1.0 <= loop.time() - started < 4.0
            writer.close()

    run(scenario)


# -- shutdown -------------------------------------------------------------------


def test_close_sends_disconnect_0x8b_to_v5_clients_and_closes_all() -> None:
    async def scenario() -> None:
        server = await start_server(port=0)
        v5_reader, v5_writer, _ = await raw_connect(server, CONNECT_V5)
        v3_reader, v3_writer, _ = await raw_connect(server)
        await server.close()
        goodbye = await read_to_eof(v5_reader)
        assert goodbye[:1] == b"\xe0"
        assert goodbye[2] == 0x8B  # Server shutting down
        # MQTT 3.1.1 has no DISCONNECT from the server: just the close.
        assert await read_to_eof(v3_reader) == b""
        assert server.connection_count == 0
        v5_writer.close()
        v3_writer.close()
        await server.close()  # idempotent

    run(scenario)


# -- back-pressure ----------------------------------------------------------------


def test_slow_consumer_is_dropped_and_others_carry_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mqttproto.broker")
    limit = 256 * 1024

    async def scenario() -> None:
        async with BrokerServer(port=0, max_buffered_output=limit) as server:
            # The slow subscriber: a small receive buffer, and it never reads.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (HOST, server.port))
            slow_reader, slow_writer = await asyncio.open_connection(sock=sock, limit=4096)
            slow_writer.write(CONNECT_V311)
            assert await read_packet(slow_reader) == CONNACK_V311_ACCEPTED
            # SUBSCRIBE packet id 1, "flood" at QoS 0.
            slow_writer.write(bytes.fromhex("820a00010005666c6f6f6400"))
            assert (await read_packet(slow_reader))[:1] == b"\x90"

            publisher = Client(V311)
            await publisher.connect(server.port, client_id="fast")
            payload = bytes(8192)
            for _ in range(400):  # 3.2 MB, far above the 256 KiB bound
                publisher.connection.publish("flood", payload)
                publisher.flush()
                assert publisher.writer is not None
                await publisher.writer.drain()
                if server.connection_count < 2:
                    break
            await wait_until(lambda: server.connection_count == 1, "the slow consumer to go")
            # The publisher is still served.
            assert publisher.writer is not None and publisher.reader is not None
            publisher.writer.write(PINGREQ)
            assert await read_packet(publisher.reader) == PINGRESP
            assert server.connection_count == 1
            slow_writer.close()
            await publisher.close()

    run(scenario)
    assert any("slow consumer" in record.getMessage() for record in caplog.records)


# -- logging ----------------------------------------------------------------------


def test_connections_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mqttproto.broker")

    async def scenario() -> None:
        async with BrokerServer(port=0) as server:
            reader, writer, _ = await raw_connect(server, CONNECT_V5)
            writer.write(bytes.fromhex("0000"))
            await read_to_eof(reader)
            writer.close()
            await wait_until(lambda: server.connection_count == 0, "the connection to go")

    run(scenario)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(level == logging.INFO and "opened from 127.0.0.1:" in m for level, m in messages)
    assert any(level == logging.INFO and "CONNECT accepted" in m for level, m in messages)
    assert any(level == logging.WARNING and "DISCONNECT" in m for level, m in messages)
    assert any(level == logging.INFO and "closed" in m for level, m in messages)


# -- the goodbye parser ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (bytes.fromhex("e0"), None),
        (bytes.fromhex("d000"), (0xD0, b"")),
        (bytes.fromhex("d000e0028b00"), (0xE0, b"\x8b\x00")),
        (bytes.fromhex("308001") + bytes(128) + bytes.fromhex("e00181"), (0xE0, b"\x81")),
        (bytes.fromhex("d000e0058b"), (0xD0, b"")),  # a truncated tail is ignored
    ],
)
def test_last_packet(data: bytes, expected: tuple[int, bytes] | None) -> None:
    assert _last_packet(data) == expected
