"""The bridge between two instances of this broker, and against fake remote
brokers that refuse, drop the connection or send garbage: the local broker
serves on whatever the remote one does.

Everything runs in one asyncio loop on 127.0.0.1 (free ports chosen by the
OS); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from mqttproto.adapters.asyncio import BrokerServer, Client, PublishError, start_server
from mqttproto.bridge import BridgeConfig
from mqttproto.codec import PacketReader, encode_packet
from mqttproto.config import BrokerConfig
from mqttproto.enums import ProtocolVersion, QoS, ReasonCode
from mqttproto.events import MessageReceived
from mqttproto.packets import ConnAckPacket, ConnectPacket, PubAckPacket, PublishPacket

WAIT = 15.0
V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1


def run(main: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(main, 60))


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {WAIT} s: {what}")


async def next_message(client: Client) -> MessageReceived:
    async with asyncio.timeout(WAIT):
        async for message in client.messages():
            return message
    raise AssertionError("the client's messages ended")


def bridge(port: int, topics: list[str], **options: Any) -> BridgeConfig:
    options.setdefault("restart_timeout", 0.05)
    options.setdefault("restart_timeout_max", 0.2)
    options.setdefault("client_id", "edge1")
    return BridgeConfig("up", f"127.0.0.1:{port}", topics, **options)


async def local_round_trip(server: BrokerServer) -> None:
    """A client of ``server`` receives what another publishes: it serves."""
    async with Client("127.0.0.1", server.port, client_id="r") as reader:
        await reader.subscribe("local/#", qos=1)
        async with Client("127.0.0.1", server.port, client_id="w") as writer:
            await writer.publish("local/ping", b"pong", qos=1)
        message = await next_message(reader)
        assert (message.topic, message.payload) == ("local/ping", b"pong")


@pytest.mark.parametrize("version", [4, 5])
def test_two_instances_each_direction_remapping_and_both_without_loops(version: int) -> None:
    async def main() -> None:
        central = await start_server(port=0)
        topics = ["up/# out 1 edge/ site1/", "down/# in 2", "chat/# both 1"]
        edge = await start_server(
            port=0, bridges=[bridge(central.port, topics, protocol_version=version)]
        )
        try:
            await until(lambda: edge.bridges[0].state == "connected", "bridge connected")
            async with (
                Client("127.0.0.1", central.port, client_id="c") as remote,
                Client("127.0.0.1", edge.port, client_id="e") as local,
            ):
                await remote.subscribe(["site1/#", "chat/#"], qos=2)
                await local.subscribe(["down/#", "chat/#"], qos=2)
                await local.publish("edge/up/t", b"1", qos=2)
                message = await next_message(remote)
                assert (message.topic, message.payload, message.qos) == ("site1/up/t", b"1", 1)
                await remote.publish("down/cmd", b"2", qos=2)
                message = await next_message(local)
                assert (message.topic, message.payload, message.qos) == ("down/cmd", b"2", 2)
                await local.publish("chat/a", b"from-edge", qos=1)
                await remote.publish("chat/b", b"from-central", qos=1)
                await local.publish("chat/end", b"end-edge", qos=1)
                await remote.publish("chat/end", b"end-central", qos=1)
                for client in (local, remote):
                    seen = [await next_message(client) for _ in range(4)]
                    assert sorted(m.payload for m in seen) == sorted(
                        [b"from-edge", b"from-central", b"end-edge", b"end-central"]
                    )
                    # A looped copy would be next; a fresh marker is.
                await local.publish("chat/last", b"last", qos=1)
                for client in (local, remote):
                    assert (await next_message(client)).payload == b"last"
            status = edge.bridges[0]
            assert (status.messages_out, status.messages_in, status.in_flight) == (4, 3, 0)
        finally:
            await edge.close()
            await central.close()

    run(main())


def test_notifications_on_both_brokers_and_the_status() -> None:
    async def main() -> None:
        central = await start_server(port=0)
        edge = await start_server(
            port=0, bridges=[bridge(central.port, ["x/# out 0"], protocol_version=5)]
        )
        topic = "$SYS/broker/connection/edge1/state"
        try:
            await until(lambda: edge.bridges[0].state == "connected", "bridge connected")
            for server in (edge, central):
                async with Client("127.0.0.1", server.port) as watch:
                    await watch.subscribe(topic, qos=1)
                    message = await next_message(watch)
                    assert (message.payload, message.retain) == (b"1", True)
            status = edge.bridges[0]
            assert (status.name, status.connects, status.last_error) == ("up", 1, None)
        finally:
            await edge.close()
        assert edge.bridges[0].state == "stopped"
        async with Client("127.0.0.1", central.port) as watch:
            await watch.subscribe(topic, qos=1)
            assert (await next_message(watch)).payload == b"0"
        await central.close()

    run(main())


async def fake_remote(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int, list[int]]:
    """A TCP server on 127.0.0.1 answering each connection with ``handler``;
    the list counts the connections."""
    attempts: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], attempts


async def read_packets(
    reader: asyncio.StreamReader, packets: PacketReader, count: int
) -> list[Any]:
    got: list[Any] = []
    while len(got) < count:
        async with asyncio.timeout(WAIT):
            data = await reader.read(65536)
        assert data, f"the bridge closed the connection after {got}"
        got += packets.feed(data)
    return got


async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_packets(reader, PacketReader(version=None), 1)
    writer.write(encode_packet(ConnAckPacket(reason_code=ReasonCode.NOT_AUTHORIZED), version=V5))
    await writer.drain()


async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # The CONNECT read first, so that the close is a FIN, not a reset.
    await read_packets(reader, PacketReader(version=None), 1)


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_packets(reader, PacketReader(version=None), 1)
    writer.write(b"\xf0\x05garbage and more garbage")
    await writer.drain()


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (refuse, "refused the connection: NOT_AUTHORIZED"),
        (drop, "closed the connection"),
        (garbage, "protocol error from the remote broker"),
    ],
)
def test_a_bad_remote_never_stops_local_service(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], error: str
) -> None:
    async def main() -> None:
        fake, port, attempts = await fake_remote(handler)
        edge = await start_server(
            port=0, bridges=[bridge(port, ["a/# both 1"], protocol_version=5)]
        )
        try:
            # It keeps trying (back-off), and the broker serves meanwhile.
            await until(lambda: len(attempts) >= 3, "three attempts")
            await local_round_trip(edge)
            status = edge.bridges[0]
            assert status.state in ("connecting", "down")
            assert status.connects == 0
            assert status.last_error is not None and error in status.last_error, status
        finally:
            await edge.close()
            fake.close()

    run(main())


def reserved_port() -> tuple[socket.socket, int]:
    """A port on 127.0.0.1 bound and not listening: connecting to it is
    refused, and no server started meanwhile (the bridging broker itself,
    say) can take it. Close the socket to free it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_an_unreachable_remote_never_stops_local_service() -> None:
    async def main() -> None:
        reserved, port = reserved_port()
        edge = await start_server(port=0, bridges=[bridge(port, ["a/# out 1"])])
        try:
            await until(lambda: edge.bridges[0].last_error is not None, "a failed attempt")
            assert "cannot connect" in (edge.bridges[0].last_error or "")
            await local_round_trip(edge)
        finally:
            await edge.close()
            reserved.close()

    run(main())


def test_a_message_in_flight_when_the_link_drops_is_sent_again() -> None:
    """The remote broker never acknowledged it: after the reconnection it is
    resent (DUP), and this broker's session still holds it meanwhile."""
    publishes: list[PublishPacket] = []

    async def remote(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        packets = PacketReader(version=None)
        connect = (await read_packets(reader, packets, 1))[0]
        assert isinstance(connect, ConnectPacket)
        second = bool(publishes)
        writer.write(encode_packet(ConnAckPacket(session_present=second), version=V5))
        (publish,) = await read_packets(reader, packets, 1)
        assert isinstance(publish, PublishPacket), publish
        publishes.append(publish)
        if second:
            writer.write(encode_packet(PubAckPacket(publish.packet_id), version=V5))
            await writer.drain()
            await read_packets(reader, packets, 1)  # until the bridge goes
        # The first time: dropped before the PUBACK.

    async def main() -> None:
        fake, port, attempts = await fake_remote(remote)
        edge = await start_server(
            port=0,
            bridges=[bridge(port, ["a/# out 1"], protocol_version=5, notifications=False)],
        )
        try:
            await until(lambda: edge.bridges[0].state == "connected", "bridge connected")
            async with Client("127.0.0.1", edge.port) as local:
                await local.publish("a/1", b"once", qos=QoS.AT_LEAST_ONCE)
            await until(lambda: len(publishes) == 2, "the message sent twice")
            await until(lambda: edge.bridges[0].in_flight == 0, "the PUBACK passed back")
        finally:
            await edge.close()
            fake.close()
        first, again = publishes
        assert (first.topic, first.payload, first.duplicate) == ("a/1", b"once", False)
        assert (again.topic, again.payload, again.duplicate) == ("a/1", b"once", True)
        assert again.packet_id == first.packet_id
        assert len(attempts) == 2

    run(main())


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(WAIT):
        response = await reader.read()
    writer.close()
    return response.partition(b"\r\n\r\n")[2]


def test_bridge_state_in_metrics_and_the_http_api() -> None:
    from mqttproto.adapters._http_asyncio import start_http

    async def main() -> None:
        central = await start_server(port=0)
        fake, dead_port, _ = await fake_remote(refuse)
        edge = await start_server(
            port=0,
            bridges=[
                bridge(central.port, ["a/# out 1"], protocol_version=5),
                BridgeConfig(
                    "down",
                    f"127.0.0.1:{dead_port}",
                    ["b/# in 1"],
                    client_id="e2",
                    protocol_version=5,
                ),
            ],
        )
        http = await start_http(edge)
        try:
            await until(lambda: edge.bridges[0].state == "connected", "bridge connected")
            await until(lambda: edge.bridges[1].last_error is not None, "a refusal")
            async with Client("127.0.0.1", edge.port) as local:
                await local.publish("a/1", b"x", qos=1)
            await until(lambda: edge.bridges[0].in_flight == 0, "acknowledged")
            metrics = (await http_get(http.addresses[0][1], "/metrics")).decode()
            assert 'mqttproto_bridge_up{bridge="up"} 1' in metrics
            assert 'mqttproto_bridge_up{bridge="down"} 0' in metrics
            assert 'mqttproto_bridge_messages_total{bridge="up",direction="out"} 1' in metrics
            assert 'mqttproto_bridge_connects_total{bridge="down"} 0' in metrics
            report = json.loads(await http_get(http.addresses[0][1], "/api/v1/bridges"))
            up, down = report
            assert (up["name"], up["state"], up["messages_out"]) == ("up", "connected", 1)
            assert (down["name"], down["connects"]) == ("down", 0)
            assert "NOT_AUTHORIZED" in down["last_error"]
        finally:
            await http.close()
            await edge.close()
            await central.close()
            fake.close()

    run(main())


def test_local_username_admits_the_bridge_where_anonymous_clients_are_not() -> None:
    """With a password file and no anonymous clients, the bridge needs
    ``local_username``: it is then subject to that user's ACL."""
    from mqttproto.auth import AclAuthorizer, AclFile, PasswordAuthenticator, PasswordFile

    async def main() -> None:
        central = await start_server(port=0)
        passwords = PasswordFile()
        passwords.set("device", "secret", n=2)
        authenticator = PasswordAuthenticator(passwords, allow_anonymous=False)
        acl = AclFile.parse(
            "user bridge\ntopic read up/#\ntopic write down/#\nuser device\ntopic readwrite #\n"
        )
        anonymous = await start_server(
            port=0,
            authenticator=authenticator,
            bridges=[bridge(central.port, ["up/# out 1"], protocol_version=5)],
        )
        edge = await start_server(
            port=0,
            authenticator=PasswordAuthenticator(passwords, allow_anonymous=False),
            authorizer=AclAuthorizer(acl),
            bridges=[
                bridge(
                    central.port,
                    ["up/# out 1", "down/# in 1", "secret/# in 1"],
                    protocol_version=5,
                    local_username="bridge",
                    client_id="edge2",
                )
            ],
        )
        try:
            await until(lambda: anonymous.bridges[0].last_error is not None, "a refusal")
            assert "set local_username" in (anonymous.bridges[0].last_error or "")
            await until(lambda: edge.bridges[0].state == "connected", "bridge connected")
            async with (
                Client("127.0.0.1", central.port) as remote,
                Client("127.0.0.1", edge.port, username="device", password="secret") as device,
            ):
                await remote.subscribe("up/#", qos=1)
                await device.subscribe(["down/#", "secret/#"], qos=1)
                await device.publish("up/t", b"1", qos=1)
                assert (await next_message(remote)).payload == b"1"
                # The ACL lets the bridge write down/# only: secret/# is dropped.
                await remote.publish("secret/x", b"no", qos=1)
                await remote.publish("down/x", b"yes", qos=1)
                message = await next_message(device)
                assert (message.topic, message.payload) == ("down/x", b"yes")
        finally:
            await edge.close()
            await anonymous.close()
            await central.close()

    run(main())


def test_a_changed_configuration_leaves_no_old_pattern_in_the_session(tmp_path: Any) -> None:
    """The bridge's session persists; patterns of an earlier configuration go."""
    from mqttproto.broker import Broker
    from mqttproto.store import SQLiteStore

    async def serve_once(central_port: int, topics: list[str]) -> list[str]:
        store = SQLiteStore(str(tmp_path / "edge.db"))
        broker = Broker(store=store)
        edge = await start_server(
            port=0, broker=broker, bridges=[bridge(central_port, topics, protocol_version=5)]
        )
        config = edge.bridges[0]
        try:
            await until(lambda: edge.bridges[0].state == "connected", "bridge connected")
            client_id = "local.edge1"
            wanted = sorted(rule.split()[0] for rule in topics if " in " not in rule)
            await until(
                lambda: sorted(s.topic_filter for s in broker.subscriptions(client_id)) == wanted,
                f"subscriptions {wanted}",
            )
            return sorted(s.topic_filter for s in broker.subscriptions(client_id))
        finally:
            await edge.close()
            store.commit()
            store.close()
            assert config.name == "up"

    async def main() -> None:
        central = await start_server(port=0)
        try:
            assert await serve_once(central.port, ["old/# out 1", "kept/# out 1"]) == [
                "kept/#",
                "old/#",
            ]
            assert await serve_once(central.port, ["kept/# out 1", "new/+ out 0"]) == [
                "kept/#",
                "new/+",
            ]
        finally:
            await central.close()

    run(main())


def test_a_client_may_publish_only_its_own_connection_state_under_sys() -> None:
    async def main() -> None:
        server = await start_server(port=0)
        try:
            async with Client("127.0.0.1", server.port) as watch:
                await watch.subscribe("$SYS/broker/connection/#", qos=1)
                async with Client("127.0.0.1", server.port, client_id="other") as other:
                    for topic in ("$SYS/broker/connection/edge9/state", "$SYS/broker/x"):
                        with pytest.raises(PublishError, match="NOT_AUTHORIZED"):
                            await other.publish(topic, b"1", qos=1)
                    await other.publish("$SYS/broker/connection/other/state", b"1", qos=1)
                message = await next_message(watch)
                assert (message.topic, message.payload) == (
                    "$SYS/broker/connection/other/state",
                    b"1",
                )
        finally:
            await server.close()

    run(main())


def test_outage_queue_bound_refuses_counts_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """The remote broker was never reached: the bridge's session exists all
    the same and queues, up to max_queued_messages; past it an MQTT 5
    publisher hears 0x97, the broker counts it, the bridge logs it once;
    what was queued arrives, in order, once the remote broker is there."""

    async def main() -> None:
        reserved, port = reserved_port()  # the remote broker's port, nobody there yet
        edge = await start_server(
            port=0,
            config=BrokerConfig(max_queued_messages=5),
            bridges=[bridge(port, ["q/# out 1"], protocol_version=5, notifications=False)],
        )
        central: BrokerServer | None = None
        got: list[MessageReceived] = []
        try:
            await until(
                lambda: any(s.client_id == "local.edge1" for s in edge.broker.sessions()),
                "the bridge's session",
            )
            async with Client("127.0.0.1", edge.port) as local:
                for number in range(5):
                    await local.publish(f"q/{number}", str(number), qos=1)
                for number in range(5, 8):
                    with pytest.raises(PublishError) as refused:
                        await local.publish(f"q/{number}", str(number), qos=1)
                    assert refused.value.reason_code == ReasonCode.QUOTA_EXCEEDED
            assert edge.broker.statistics(0.0).dropped["queue_full"] == 3
            # A few more attempts: the line is logged once in the outage.
            await until(lambda: caplog.text.count("next attempt") >= 4, "four attempts")
            assert caplog.text.count("messages wait for the remote broker") == 1
            assert edge.bridges[0].connects == 0
            reserved.close()
            central = await start_server(port=port)
            options: dict[str, Any] = {"clean_start": False, "session_expiry_interval": 60}
            async with Client("127.0.0.1", central.port, client_id="c", **options) as remote:
                await remote.subscribe("q/#", qos=1)
            await until(
                lambda: (edge.bridges[0].messages_out, edge.bridges[0].in_flight) == (5, 0),
                "five messages out and acknowledged",
            )
            async with Client("127.0.0.1", central.port, client_id="c", **options) as remote:
                got = [await next_message(remote) for _ in range(5)]
        finally:
            await edge.close()
            reserved.close()
            if central is not None:
                await central.close()
        assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]

    with caplog.at_level(logging.INFO, logger="mqttproto.bridge"):
        run(main())


def test_a_bridge_to_this_broker_itself_is_refused_not_looped() -> None:
    async def main() -> None:
        reserved, port = reserved_port()
        reserved.close()  # for this broker to listen on
        edge = await start_server(port=port, bridges=[bridge(port, ["q/# both 1"])])
        try:
            itself = "the remote broker is this broker itself: not bridging to it"
            await until(lambda: edge.bridges[0].last_error == itself, "the refusal")
            assert edge.bridges[0].state != "connected"
            await local_round_trip(edge)
        finally:
            await edge.close()

    run(main())
