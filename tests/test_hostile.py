"""Hostile clients against a running broker (the asyncio adapter, 127.0.0.1).

Slowloris (a CONNECT never finished; a packet dribbled after CONNECT), a
flood from a client that does not read, a subscriber that never reads, 2,000
connections opened and closed in rounds with the broker process's RSS
measured, and floods the limits refuse (1,000 retained topics, deep topics,
user properties). After each attack a well-behaved client is still served.

Every loop is bounded in count and time; servers are closed and the broker
subprocess is stopped through its handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mqttproto import ProtocolVersion, QoS, encode_packet
from mqttproto.adapters.asyncio import BrokerServer, start_server
from mqttproto.config import BrokerConfig
from mqttproto.packets import (
    ConnectPacket,
    PingReqPacket,
    PublishPacket,
    SubscribePacket,
    Subscription,
)

T = TypeVar("T")
HOST = "127.0.0.1"
V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"


def run(factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


def connect_bytes(client_id: str, version: ProtocolVersion = V5, **kwargs: Any) -> bytes:
    return encode_packet(
        ConnectPacket(client_id, protocol_version=version, **kwargs), version=version
    )


async def read_packet(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    async def read() -> bytes:
        header = await reader.readexactly(1)
        length = shift = 0
        for _ in range(4):
            byte = (await reader.readexactly(1))[0]
            header += bytes([byte])
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return header + await reader.readexactly(length)

    return await asyncio.wait_for(read(), timeout)


async def open_client(
    port: int, client_id: str, version: ProtocolVersion = V5, **kwargs: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(connect_bytes(client_id, version, **kwargs))
    connack = await read_packet(reader)
    assert connack[0] == 0x20 and connack[3] == 0, connack
    return reader, writer


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the broker sends until it closes; fails if it does not close."""
    return await asyncio.wait_for(reader.read(), seconds)


async def still_served(port: int) -> None:
    """A well-behaved client connects and gets its PINGRESP."""
    reader, writer = await open_client(port, "bystander")
    writer.write(PINGREQ)
    assert await read_packet(reader) == PINGRESP
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


# -- slowloris ----------------------------------------------------------------------


def test_slowloris_partial_connect_is_closed_after_the_connect_timeout():
    async def scenario() -> float:
        server = await start_server(HOST, 0, config=BrokerConfig(connect_timeout=0.5))
        try:
            loop = asyncio.get_running_loop()
            slow = []
            for _ in range(20):
                reader, writer = await asyncio.open_connection(HOST, server.port)
                writer.write(connect_bytes("slow")[:7])  # a CONNECT never finished
                slow.append((reader, writer))
            started = loop.time()
            # More bytes of the same unfinished packet do not buy time.
            await asyncio.sleep(0.3)
            for _, writer in slow:
                writer.write(b"\x00")
            await still_served(server.port)
            for reader, _ in slow:
                assert await closed_within(reader, 3) == b""
            elapsed = loop.time() - started
            await still_served(server.port)
            return elapsed
        finally:
            await server.close()

    assert run(scenario) < 2.5


def test_slowloris_partial_packet_after_connect_is_closed_by_keep_alive():
    async def scenario() -> float:
        server = await start_server(HOST, 0)
        try:
            loop = asyncio.get_running_loop()
            reader, writer = await open_client(server.port, "dribbler", keep_alive=1)
            started = loop.time()
            publish = encode_packet(PublishPacket("t", b"x" * 100), version=V5)
            # One byte every 0.25 s of a packet never finished: keep-alive
            # counts whole packets [MQTT-3.1.2-24], so 1.5 s after CONNECT it ends.
            closed = False
            for byte in publish[:20]:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.25)
                if reader.at_eof() or writer.is_closing():
                    closed = True
                    break
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(), 0.01)
                    # DISCONNECT 0x8D Keep Alive timeout, then EOF.
                    assert data[:1] in (b"\xe0", b"")
                    closed = True
                    break
            assert closed
            elapsed = loop.time() - started
            await still_served(server.port)
            return elapsed
        finally:
            await server.close()

    assert 1.2 < run(scenario) < 3.0


# -- floods and clients that never read ------------------------------------------------


def test_a_subscriber_that_never_reads_is_bounded_and_others_are_unaffected():
    limit = 1024 * 1024

    async def scenario() -> tuple[int, int, int]:
        server = await start_server(HOST, 0, max_buffered_output=limit)
        try:
            port = server.port
            subscribe = encode_packet(SubscribePacket(1, [Subscription("flood/#")]), version=V5)
            _, lazy_writer = await open_client(port, "lazy")
            lazy_writer.write(subscribe)
            good_reader, good_writer = await open_client(port, "good")
            good_writer.write(subscribe)
            assert (await read_packet(good_reader))[0] == 0x90  # SUBACK
            await asyncio.sleep(0.05)
            _, pub_writer = await open_client(port, "pub")
            message = encode_packet(PublishPacket("flood/x", b"m" * 1000), version=V5)
            count = 8000  # 8 MB for a subscriber that reads nothing (bound: 1 MB)
            received = 0
            peak = 0

            async def drain_good() -> None:
                nonlocal received
                for _ in range(count + 10):
                    packet = await read_packet(good_reader)
                    if packet[0] == 0x30:
                        received += 1
                        if received == count:
                            return

            good = asyncio.create_task(drain_good())
            for _ in range(count // 20):
                pub_writer.write(message * 20)
                await pub_writer.drain()
                # One loop, everyone in it: let the broker and "good" run.
                await asyncio.sleep(0.001)
                for peer in server._peers.values():
                    peak = max(peak, peer.unsent())
            await asyncio.wait_for(good, 10)
            # The lazy subscriber was dropped as a slow consumer.
            lazy_ids = [s.client_id for s in server.broker.sessions() if s.connected]
            await still_served(port)
            return received, peak, int("lazy" in lazy_ids)
        finally:
            await server.close()

    received, peak, lazy_still_connected = run(scenario)
    assert received == 8000  # the reading subscriber got everything
    assert not lazy_still_connected
    # Unsent output never went far past the bound (one coalesced write at most).
    assert peak < limit + 200_000


def test_a_subscriber_that_stops_reading_is_held_by_the_core_policy():
    """Below the drop limit, the core's ``max_unsent_bytes`` decides: the
    server reports the backlog of a subscriber that stops reading, QoS 0
    messages for it are dropped and QoS 1 ones queued; it stays connected
    and, once it reads again, gets every QoS 1 message in order."""

    async def scenario() -> tuple[list[bytes], int, int]:
        config = BrokerConfig(max_unsent_bytes=512 * 1024)
        server = await start_server(HOST, 0, config=config)
        try:
            port = server.port
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
            lazy_reader, lazy_writer = await asyncio.open_connection(sock=sock)
            lazy_writer.write(connect_bytes("lazy", V311, clean_start=False))
            assert (await read_packet(lazy_reader))[0] == 0x20
            subscribe = SubscribePacket(1, [Subscription("flood/#", QoS.AT_LEAST_ONCE)])
            lazy_writer.write(encode_packet(subscribe, version=V311))
            assert (await read_packet(lazy_reader))[0] == 0x90
            _, pub_writer = await open_client(port, "pub")
            chunk = encode_packet(PublishPacket("flood/x", b"z" * 16384), version=V5)
            marks = [b"q%02d" % i for i in range(40)]
            for i in range(800):  # 13 MB of QoS 0, 40 QoS 1 among it
                pub_writer.write(chunk)
                if i % 20 == 19:
                    mark = PublishPacket(
                        "flood/q", marks[i // 20], QoS.AT_LEAST_ONCE, packet_id=i // 20 + 1
                    )
                    pub_writer.write(encode_packet(mark, version=V5))
                await pub_writer.drain()
                await asyncio.sleep(0)
            await asyncio.sleep(0.2)
            (info,) = [i for i in server.broker.sessions() if i.client_id == "lazy"]
            queued = info.queued if info.connected else -1
            await still_served(port)
            got: list[bytes] = []
            flood = 0
            while len(got) < len(marks):
                packet = await read_packet(lazy_reader)
                if packet[0] & 0x06:  # QoS 1: topic, packet id, payload
                    topic_end = 4 + int.from_bytes(packet[2:4], "big")
                    packet_id = packet[topic_end : topic_end + 2]
                    got.append(packet[topic_end + 2 :])
                    lazy_writer.write(b"\x40\x02" + packet_id)
                else:
                    flood += 1
            lazy_writer.close()
            return got, flood, queued
        finally:
            await server.close()

    got, flood, queued = run(scenario)
    assert queued > 0  # connected, with QoS 1 messages held in its session
    assert got == [b"q%02d" % i for i in range(40)]
    assert flood < 800  # QoS 0 messages were dropped while it did not read


def test_a_publisher_flooding_without_reading_is_held_by_back_pressure():
    async def scenario() -> tuple[int, bool]:
        server = await start_server(HOST, 0)
        try:
            port = server.port
            reader, writer = await open_client(port, "flooder")
            # It subscribes to its own topic, so every PUBLISH it sends comes
            # back to it: output it never reads.
            writer.write(encode_packet(SubscribePacket(1, [Subscription("self/#")]), version=V5))
            await read_packet(reader)
            chunk = (
                encode_packet(
                    PublishPacket("self/x", b"f" * 4000, QoS.AT_LEAST_ONCE, packet_id=1), version=V5
                )
                * 64
            )
            sent = 0
            stalled = False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8
            for _ in range(100_000):
                if loop.time() > deadline or sent > 400_000_000:
                    break
                writer.write(chunk)
                try:
                    await asyncio.wait_for(writer.drain(), 0.5)
                except (TimeoutError, ConnectionError):
                    # The broker stopped reading us (or dropped us): held.
                    stalled = True
                    break
                sent += len(chunk)
            for peer in server._peers.values():
                assert peer.unsent() <= server.max_buffered_output
            await still_served(port)
            writer.transport.abort()
            return sent, stalled
        finally:
            await server.close()

    sent, stalled = run(scenario)
    assert stalled
    # Bounded by socket buffers and the broker's high-water marks, far below
    # what the flooder tried to push.
    assert sent < 200_000_000


# -- refused by the limits, on the wire ----------------------------------------------------


def test_retained_flood_deep_topics_and_property_floods_are_refused():
    config = BrokerConfig(max_retained_messages=500, max_topic_levels=32)

    async def scenario() -> dict[str, Any]:
        server = await start_server(HOST, 0, config=config)
        try:
            port = server.port
            reader, writer = await open_client(port, "retainer")
            codes = []
            for start in range(0, 1000, 100):
                writer.write(
                    b"".join(
                        encode_packet(
                            PublishPacket(
                                f"r/{i}", b"v", QoS.AT_LEAST_ONCE, retain=True, packet_id=i + 1
                            ),
                            version=V5,
                        )
                        for i in range(start, start + 100)
                    )
                )
                for _ in range(100):
                    ack = await read_packet(reader)
                    codes.append(ack[4] if len(ack) > 4 else 0)
            flood = PublishPacket(
                "p", b"", QoS.AT_LEAST_ONCE, packet_id=7, user_properties=[("a", "")] * 100_000
            )
            writer.write(encode_packet(flood, version=V5))
            property_ack = await read_packet(reader)
            deep_reader, deep_writer = await open_client(port, "deep")
            deep_writer.write(encode_packet(PublishPacket("/".join("d" * 40), b"x"), version=V5))
            goodbye = await closed_within(deep_reader, 3)
            await still_served(port)
            return {
                "codes": codes,
                "retained": len(server.broker.retained("r/#")),
                "property_ack": property_ack,
                "goodbye": goodbye,
            }
        finally:
            await server.close()

    result = run(scenario)
    assert result["codes"].count(0x97) == 500  # PUBACK 0x97 Quota exceeded
    assert result["codes"].count(0x10) == 500  # retained; no matching subscribers
    assert result["retained"] == 500
    assert result["property_ack"] == b"\x40\x03\x00\x07\x97"
    assert result["goodbye"][:1] == b"\xe0" and result["goodbye"][2] == 0x90  # Topic Name invalid


# -- 2,000 connections and the broker's memory ------------------------------------------------------


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _connection_round(port: int, round_no: int, count: int) -> None:
    """``count`` clients at once: CONNECT, SUBSCRIBE, PUBLISH, PINGREQ, then a
    third leave with DISCONNECT and the rest just vanish (abort)."""

    async def one(i: int) -> None:
        version = V5 if i % 2 else V311
        reader, writer = await open_client(port, f"r{round_no}-{i}", version)
        topic = f"conn/{round_no}/{i}"
        writer.write(encode_packet(SubscribePacket(1, [Subscription(topic)]), version=version))
        writer.write(encode_packet(PublishPacket(topic, b"hello"), version=version))
        writer.write(encode_packet(PingReqPacket(), version=version))
        assert (await read_packet(reader))[0] == 0x90  # SUBACK
        for _ in range(3):
            if await read_packet(reader) == PINGRESP:
                break
        if i % 3 == 0:
            writer.write(b"\xe0\x00")  # DISCONNECT
            writer.close()
        else:
            writer.transport.abort()  # gone without a goodbye

    await asyncio.gather(*(one(i) for i in range(count)))
    # Let the broker notice every close.
    await asyncio.sleep(0.3)


def test_a_storm_of_connects_with_one_client_id_leaves_one_session():
    """50 connections race for one client id, each subscribing and publishing
    right behind its CONNECT. Each CONNECT takes the session over from the
    one before [MQTT-3.1.4-3]: that connection hears DISCONNECT 0x8E
    *Session taken over* and is closed. In the end one connection holds the
    one session, which kept the subscriptions made on it, and the broker
    serves others."""
    contenders = 50

    async def scenario() -> tuple[list[tuple[bool, bool]], list[str], int]:
        server = await start_server(HOST, 0)
        try:
            port = server.port

            async def contender(i: int) -> tuple[bool, bool]:
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(connect_bytes("same", clean_start=False, session_expiry_interval=60))
                subscribe = SubscribePacket(1, [Subscription(f"race/{i}", QoS.AT_LEAST_ONCE)])
                writer.write(encode_packet(subscribe, version=V5))
                publish = PublishPacket("race/x", b"%d" % i, QoS.AT_LEAST_ONCE, packet_id=1)
                writer.write(encode_packet(publish, version=V5))
                taken_over = False
                with contextlib.suppress(TimeoutError):
                    for _ in range(10):
                        packet = await read_packet(reader, timeout=3.0)
                        if packet[0] == 0xE0:
                            taken_over = packet[2] == 0x8E
                            break
                closed = await reader.read() == b"" if taken_over else False
                still_open = not taken_over
                writer.transport.abort()
                return taken_over and closed, still_open

            outcomes = await asyncio.gather(*(contender(i) for i in range(contenders)))
            sessions = [info for info in server.broker.sessions() if info.client_id == "same"]
            filters = [s.topic_filter for s in server.broker.subscriptions("same")]
            await still_served(port)
            return outcomes, filters, len(sessions)
        finally:
            await server.close()

    outcomes, filters, sessions = run(scenario, timeout=60)
    assert sessions == 1
    # Every connection but the last CONNECT's was taken over and closed.
    assert sum(taken for taken, _ in outcomes) == contenders - 1
    assert sum(still_open for _, still_open in outcomes) == 1
    assert filters and set(filters) <= {f"race/{i}" for i in range(contenders)}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_2000_connections_in_rounds_do_not_grow_the_broker_process():
    """The broker as an operator runs it (``python -m mqttproto broker``), its
    RSS read from /proc after each round of 400 connections."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mqttproto", "broker", "--host", HOST, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        port = int(line.split()[-1].rsplit(":", 1)[1])
        samples = []
        for round_no in range(5):
            run(lambda r=round_no: _connection_round(port, r, 400), timeout=30)
            samples.append(_rss_kb(process.pid))
        print(f"broker RSS (KiB) after each round of 400 connections: {samples}")
        # 1,600 connections after the first round: a few MB at most. What
        # growth there is comes from the allocator (the 256 KiB buffers of
        # socket reads fragment the heap) and levels off near +7 MB after
        # ~3,000 connections; the Python objects do not grow (next test).
        assert samples[-1] - samples[0] < 6 * 1024, samples
        assert process.poll() is None
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_connection_churn_leaves_no_python_objects_behind():
    """The same rounds in-process, with every Python allocation traced."""

    async def scenario() -> tuple[int, BrokerServer]:
        server = await start_server(HOST, 0)
        try:
            # Two rounds first: the codec's bounded caches (topics, client
            # ids) and the dicts that resize to the peak fill up before the
            # measured rounds, which then show only what would leak.
            for warm_up in (0, 4):
                await _connection_round(server.port, warm_up, 400)
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                for round_no in range(1, 4):
                    await _connection_round(server.port, round_no, 400)
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            # The codec's bounded caches (recent topics and client ids, and
            # the test's strings they hold) fill and empty in cycles of
            # their own: what they hold at either snapshot is not a leak.
            bounded = [
                tracemalloc.Filter(False, pattern)
                for pattern in ("*/mqttproto/_decode*.py", "*/mqttproto/_encode*.py", __file__)
            ]
            after, before = after.filter_traces(bounded), before.filter_traces(bounded)
            growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
            broker = server.broker
            assert not broker._conns and not broker._sessions and not server._peers
            assert len(broker._router) == 0 and len(broker._retained) == 0
            # Timer entries of closed connections are bounded by the peak
            # number alive, not by the number ever opened.
            assert len(broker._timers) <= 2 * 3 * 400 + 256
            return growth, server
        finally:
            await server.close()

    growth, _ = run(scenario, timeout=30)
    # 1,200 connections after the first round: allow 600 KB (well under
    # 1 KB per connection) for dicts that resized to the peak and the timer heap.
    assert growth < 600 * 1024, growth
