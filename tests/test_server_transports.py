"""BrokerServer listeners: Unix sockets, WebSocket, TLS with client certificates,
several listeners on one broker.

Peers: raw MQTT bytes over asyncio streams, a ``wsproto`` client, paho-mqtt
over WebSocket and mosquitto_pub over TLS. Everything listens on 127.0.0.1
port 0 (or a Unix socket in a temporary directory); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import queue
import ssl
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from certs import Pki, make_pki
from interop import MOSQUITTO_PUB, import_paho, require_peer

from mqttproto import ProtocolVersion, QoS, encode_packet
from mqttproto.adapters.asyncio import BrokerServer, Listener, server_ssl_context
from mqttproto.auth import AclAuthorizer, AclFile
from mqttproto.packets import PublishPacket, SubscribePacket, Subscription

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUT = 30.0
V311 = ProtocolVersion.MQTT_3_1_1

CONNECT_V311 = bytes.fromhex("100f00044d5154540402003c0003726177")
CONNACK_ACCEPTED = bytes.fromhex("20020000")
PINGREQ = bytes.fromhex("c000")
PINGRESP = bytes.fromhex("d000")
DISCONNECT = bytes.fromhex("e000")


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), TIMEOUT)

    return asyncio.run(bounded())


def connect_bytes(client_id: str, username: str | None = None) -> bytes:
    from mqttproto.packets import ConnectPacket

    packet = ConnectPacket(client_id, V311, username=username)
    return encode_packet(packet, version=V311)


def subscribe_bytes(topic_filter: str) -> bytes:
    packet = SubscribePacket(1, [Subscription(topic_filter, QoS.AT_MOST_ONCE)])
    return encode_packet(packet, version=V311)


def publish_bytes(topic: str, payload: bytes) -> bytes:
    return encode_packet(PublishPacket(topic, payload), version=V311)


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet, fixed header included (5 s per read at most)."""
    header = await asyncio.wait_for(reader.readexactly(1), 5)
    length = shift = 0
    for _ in range(4):
        byte = (await asyncio.wait_for(reader.readexactly(1), 5))[0]
        header += bytes([byte])
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header + await asyncio.wait_for(reader.readexactly(length), 5)


class Raw:
    """A raw MQTT 3.1.1 client on an asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, client_id: str, **connection: Any) -> Raw:
        if "path" in connection:
            reader, writer = await asyncio.open_unix_connection(**connection)
        else:
            reader, writer = await asyncio.open_connection(**connection)
        raw = cls(reader, writer)
        writer.write(connect_bytes(client_id))
        assert await read_packet(reader) == CONNACK_ACCEPTED
        return raw

    async def subscribe(self, topic_filter: str) -> None:
        self.writer.write(subscribe_bytes(topic_filter))
        assert await read_packet(self.reader) == bytes.fromhex("9003000100")

    async def close(self) -> None:
        self.writer.write(DISCONNECT)
        self.writer.close()
        await asyncio.wait_for(self.writer.wait_closed(), 5)


# -- Unix sockets -----------------------------------------------------------------


def test_unix_socket_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "mqtt.sock")

    async def main() -> None:
        server = BrokerServer(listeners=[Listener(transport="unix", path=path)])
        async with server:
            (endpoint,) = server.endpoints
            assert (endpoint.path, endpoint.address, str(endpoint)) == (path, None, path)
            assert Path(path).is_socket()
            sub = await Raw.open("sub", path=path)
            await sub.subscribe("a/#")
            pub = await Raw.open("pub", path=path)
            pub.writer.write(publish_bytes("a/b", b"over unix"))
            assert await read_packet(sub.reader) == publish_bytes("a/b", b"over unix")
            (session,) = [s for s in server.broker.sessions() if s.client_id == "sub"]
            assert session.peer == f"unix:{path}"
            await pub.close()
            await sub.close()
        assert not Path(path).exists()

    run(main)


def test_unix_socket_replaces_a_stale_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "mqtt.sock")

    async def main() -> None:
        for _ in range(2):
            # A server that did not remove its file leaves it behind.
            first = BrokerServer(listeners=[Listener(transport="unix", path=path)])
            await first.start()
            first._socket_files.clear()
            await first.close()
            assert Path(path).is_socket()
        async with BrokerServer(listeners=[Listener(transport="unix", path=path)]):
            raw = await Raw.open("again", path=path)
            await raw.close()

    run(main)


# -- WebSocket ---------------------------------------------------------------------


class WsClient:
    """A wsproto client over an asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from wsproto import ConnectionType, WSConnection

        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []

    @classmethod
    async def open(
        cls, port: int, *, path: str = "/mqtt", subprotocols: tuple[str, ...] = ("mqtt",)
    ) -> tuple[WsClient, Any]:
        """Connect and handshake; returns the client and the answer event."""
        from wsproto.events import Request

        reader, writer = await asyncio.open_connection(HOST, port)
        client = cls(reader, writer)
        client.send(Request(host=f"{HOST}:{port}", target=path, subprotocols=list(subprotocols)))
        return client, await client.next_event()

    def send(self, event: Any) -> None:
        self.writer.write(self.ws.send(event))

    async def next_event(self) -> Any:
        for _ in range(100):
            if self.pending:
                return self.pending.pop(0)
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        raise AssertionError("no WebSocket event")

    async def mqtt_packet(self) -> bytes:
        from wsproto.events import BytesMessage

        event = await self.next_event()
        assert isinstance(event, BytesMessage), event
        return bytes(event.data)


def ws_listener_server(**listener: Any) -> BrokerServer:
    pytest.importorskip("wsproto")
    return BrokerServer(listeners=[Listener(transport="websocket", port=0, **listener)])


def test_websocket_handshake_mqtt_in_binary_messages_ping_and_close() -> None:
    async def main() -> None:
        from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Pong

        async with ws_listener_server() as server:
            client, answer = await WsClient.open(server.port)
            assert isinstance(answer, AcceptConnection)
            assert answer.subprotocol == "mqtt"
            # The CONNECT split over two messages still makes one packet.
            client.send(Message(data=CONNECT_V311[:5]))
            client.send(Message(data=CONNECT_V311[5:]))
            assert await client.mqtt_packet() == CONNACK_ACCEPTED
            client.send(Ping(b"hi"))
            pong = await client.next_event()
            assert isinstance(pong, Pong) and pong.payload == b"hi"
            client.send(Message(data=PINGREQ + PINGREQ))
            got = await client.mqtt_packet()
            if got == PINGRESP:
                got += await client.mqtt_packet()
            assert got == PINGRESP + PINGRESP
            client.send(CloseConnection(code=1000))
            closed = await client.next_event()
            assert isinstance(closed, CloseConnection) and closed.code == 1000
            assert await asyncio.wait_for(client.reader.read(), 5) == b""

    run(main)


def test_websocket_layer_holds_no_more_than_it_is_given() -> None:
    """A frame claiming 1 GiB is passed on as its bytes arrive, never
    buffered whole; an endless HTTP header is refused (h11's bound)."""
    pytest.importorskip("wsproto")
    import struct
    import tracemalloc

    from mqttproto.adapters._websocket_server import ServerWebSocket

    handshake = (
        b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    ws = ServerWebSocket()
    assert ws.receive(handshake) == b""
    assert ws.data_to_send().startswith(b"HTTP/1.1 101") and ws.is_open
    header = bytes((0x82, 0x80 | 127)) + struct.pack("!Q", 1 << 30) + bytes(4)  # mask 0
    tracemalloc.start()
    try:
        assert ws.receive(header) == b""
        for _ in range(64):
            assert len(ws.receive(bytes(65536))) == 65536
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # 4 MiB went through
    endless = ServerWebSocket()
    endless.receive(b"GET /mqtt HTTP/1.1\r\nX-Long: " + b"a" * 100_000)
    assert endless.failure is not None and not endless.is_open


@pytest.mark.parametrize(
    ("path", "subprotocols", "status"),
    [("/other", ("mqtt",), 404), ("/mqtt", ("chat",), 400), ("/mqtt", (), 400)],
)
def test_websocket_handshake_refusals(
    path: str, subprotocols: tuple[str, ...], status: int
) -> None:
    async def main() -> None:
        from wsproto.events import RejectConnection

        async with ws_listener_server(websocket_path="/mqtt") as server:
            client, answer = await WsClient.open(server.port, path=path, subprotocols=subprotocols)
            assert isinstance(answer, RejectConnection)
            assert answer.status_code == status
            assert await asyncio.wait_for(client.reader.read(), 5) == b""

    run(main)


def test_websocket_any_path_by_default_and_mqttv31_subprotocol() -> None:
    async def main() -> None:
        from wsproto.events import AcceptConnection

        async with ws_listener_server() as server:
            client, answer = await WsClient.open(
                server.port, path="/x/y?z=1", subprotocols=("mqttv3.1",)
            )
            assert isinstance(answer, AcceptConnection)
            assert answer.subprotocol == "mqttv3.1"
            client.writer.close()

    run(main)


def test_websocket_text_message_is_closed_with_1003() -> None:
    async def main() -> None:
        from wsproto.events import CloseConnection, Message

        async with ws_listener_server() as server:
            client, _ = await WsClient.open(server.port)
            client.send(Message(data="CONNECT"))
            closed = await client.next_event()
            assert isinstance(closed, CloseConnection) and closed.code == 1003

    run(main)


def test_websocket_shutdown_sends_disconnect_then_close_frame() -> None:
    async def main() -> None:
        from wsproto.events import CloseConnection, Message

        server = ws_listener_server()
        await server.start()
        client, _ = await WsClient.open(server.port)
        # CONNECT MQTT 5, client id "raw5": shutdown sends DISCONNECT 0x8B.
        client.send(Message(data=bytes.fromhex("101100044d5154540502003c00000472617735")))
        connack = await client.mqtt_packet()
        assert connack[0] == 0x20
        closing = asyncio.create_task(server.close())
        assert await client.mqtt_packet() == bytes.fromhex("e0018b")
        closed = await client.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1000
        client.send(closed.response())
        await asyncio.wait_for(closing, 5)
        assert server.connection_count == 0

    run(main)


def test_paho_over_websocket(tmp_path: Path) -> None:
    """paho-mqtt (transport="websockets") publishes and subscribes through our broker."""
    paho = import_paho()

    def paho_round_trip(port: int, protocol: int) -> list[tuple[str, bytes]]:
        received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed: queue.Queue[int] = queue.Queue()
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"paho-ws-{protocol}",
            transport="websockets",
            protocol=protocol,
        )
        client.ws_set_options(path="/mqtt")
        client.on_message = lambda c, u, m: received.put((m.topic, m.payload))
        client.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(mid)
        client.connect(HOST, port, keepalive=30)
        client.loop_start()
        try:
            client.subscribe("ws/#", qos=1)
            subscribed.get(timeout=10)
            client.publish("ws/one", b"first", qos=1).wait_for_publish(timeout=10)
            client.publish("ws/two", b"x" * 70000, qos=0)
            got = [received.get(timeout=10), received.get(timeout=10)]
        finally:
            client.disconnect()
            client.loop_stop()
        return got

    async def main() -> None:
        async with ws_listener_server() as server:
            for protocol in (paho.MQTTv311, paho.MQTTv5):
                got = await asyncio.to_thread(paho_round_trip, server.port, protocol)
                assert got == [("ws/one", b"first"), ("ws/two", b"x" * 70000)]

    run(main)


# -- TLS and client certificates -------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, *, certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if certificate:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


async def mosquitto_pub(*args: str) -> tuple[int, str]:
    require_peer("mosquitto_pub", MOSQUITTO_PUB)
    process = await asyncio.create_subprocess_exec(
        MOSQUITTO_PUB,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def test_mosquitto_pub_over_tls(pki: Pki) -> None:
    async def main() -> None:
        context = server_ssl_context(str(pki.server_cert), str(pki.server_key))
        tcp, tls = Listener(port=0), Listener(port=0, ssl=context)
        async with BrokerServer(listeners=[tcp, tls]) as server:
            sub = await Raw.open("sub", host=HOST, port=server.port_of(tcp))
            await sub.subscribe("tls/#")
            status, output = await mosquitto_pub(
                *("-h", HOST, "-p", str(server.port_of(tls)), "--cafile", str(pki.ca)),
                *("-t", "tls/x", "-m", "secret", "-q", "1", "-V", "mqttv5"),
            )
            assert status == 0, output
            assert await read_packet(sub.reader) == publish_bytes("tls/x", b"secret")
            # Without trusting our CA, mosquitto_pub refuses the server.
            status, output = await mosquitto_pub(
                *("-h", HOST, "-p", str(server.port_of(tls)), "--capath", "/nonexistent"),
                *("-t", "tls/x", "-m", "no"),
            )
            assert status != 0
            await sub.close()

    run(main)


def test_client_certificate_required_and_mapped_to_username(pki: Pki) -> None:
    acl = AclFile.parse("topic read #\nuser device-7\ntopic write devices/7/#\n")

    async def main() -> None:
        context = server_ssl_context(
            str(pki.server_cert),
            str(pki.server_key),
            cafile=str(pki.ca),
            require_certificate=True,
        )
        tcp = Listener(port=0)
        tls = Listener(port=0, ssl=context, use_identity_as_username=True)
        server = BrokerServer(listeners=[tcp, tls], authorizer=AclAuthorizer(acl))
        async with server:
            tls_port = server.port_of(tls)
            sub = await Raw.open("sub", host=HOST, port=server.port_of(tcp))
            await sub.subscribe("devices/#")
            # mosquitto_pub with the client certificate: the username it sends
            # is replaced by the certificate's CN, which the ACL lets write.
            certificate = ("--cafile", str(pki.ca), "--cert", str(pki.client_cert))
            status, output = await mosquitto_pub(
                *("-h", HOST, "-p", str(tls_port), *certificate, "--key", str(pki.client_key)),
                *("-u", "mallory", "-t", "devices/7/temp", "-m", "21.5", "-q", "1"),
            )
            assert status == 0, output
            assert await read_packet(sub.reader) == publish_bytes("devices/7/temp", b"21.5")
            # Without a certificate the TLS handshake fails.
            status, output = await mosquitto_pub(
                *("-h", HOST, "-p", str(tls_port), "--cafile", str(pki.ca)),
                *("-t", "devices/7/temp", "-m", "no"),
            )
            assert status != 0
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await Raw.open(
                    "nocert", host=HOST, port=tls_port, ssl=client_context(pki, certificate=False)
                )
            # The session's username is the CN, whatever CONNECT said.
            reader, writer = await asyncio.open_connection(
                HOST, tls_port, ssl=client_context(pki, certificate=True)
            )
            writer.write(connect_bytes("held", username="mallory"))
            assert await read_packet(reader) == CONNACK_ACCEPTED
            (held,) = [s for s in server.broker.sessions() if s.client_id == "held"]
            assert held.username == "device-7"
            writer.write(DISCONNECT)
            writer.close()
            await sub.close()

    run(main)


def test_use_identity_as_username_needs_client_certificates(pki: Pki) -> None:
    context = server_ssl_context(str(pki.server_cert), str(pki.server_key))
    with pytest.raises(ValueError, match="client certificates"):
        Listener(ssl=context, use_identity_as_username=True)
    with pytest.raises(ValueError, match="CA file"):
        server_ssl_context(str(pki.server_cert), str(pki.server_key), require_certificate=True)


# -- all of them on one broker -----------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")
def test_tcp_tls_websocket_and_unix_listeners_share_one_broker(pki: Pki, tmp_path: Path) -> None:
    pytest.importorskip("wsproto")
    path = str(tmp_path / "mqtt.sock")

    async def main() -> None:
        from wsproto.events import Message

        context = server_ssl_context(str(pki.server_cert), str(pki.server_key))
        tcp = Listener(port=0)
        tls = Listener(port=0, ssl=context)
        ws = Listener(transport="websocket", port=0)
        unix = Listener(transport="unix", path=path)
        async with BrokerServer(listeners=[tcp, tls, ws, unix]) as server:
            kinds = [endpoint.listener.kind for endpoint in server.endpoints]
            assert kinds == ["TCP", "TLS", "WebSocket", "Unix socket"]
            assert len({server.port_of(tcp), server.port_of(tls), server.port_of(ws)}) == 3
            sub = await Raw.open("sub", host=HOST, port=server.port_of(tcp))
            await sub.subscribe("all/#")
            over_tls = await Raw.open(
                "tls",
                host=HOST,
                port=server.port_of(tls),
                ssl=client_context(pki, certificate=False),
            )
            over_unix = await Raw.open("unix", path=path)
            over_ws, _ = await WsClient.open(server.port_of(ws))
            over_ws.send(Message(data=connect_bytes("ws")))
            assert await over_ws.mqtt_packet() == CONNACK_ACCEPTED
            over_tls.writer.write(publish_bytes("all/tls", b"1"))
            assert await read_packet(sub.reader) == publish_bytes("all/tls", b"1")
            over_unix.writer.write(publish_bytes("all/unix", b"2"))
            assert await read_packet(sub.reader) == publish_bytes("all/unix", b"2")
            over_ws.send(Message(data=publish_bytes("all/ws", b"3")))
            assert await read_packet(sub.reader) == publish_bytes("all/ws", b"3")
            assert server.connection_count == 4
            assert {s.client_id for s in server.broker.sessions()} == {"sub", "tls", "unix", "ws"}
        assert server.connection_count == 0
        assert not Path(path).exists()

    run(main)


def test_a_listener_that_cannot_bind_closes_the_others(tmp_path: Path) -> None:
    async def main() -> None:
        first = BrokerServer(listeners=[Listener(port=0)])
        async with first:
            taken = first.port
            second = BrokerServer(
                listeners=[
                    Listener(transport="unix", path=str(tmp_path / "s.sock")),
                    Listener(port=taken),
                ]
            )
            with pytest.raises(OSError):
                await second.start()
            assert second.endpoints == ()
            assert not (tmp_path / "s.sock").exists()

    run(main)
