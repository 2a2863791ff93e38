"""The input budget across connections (``BrokerConfig.max_buffered_input``):
the bookkeeping (:class:`InputBudget`), the driver pausing and resuming reads
with it, and the broker process's memory when many clients claim huge packets.
"""

from __future__ import annotations

import selectors
import socket
import time

from test_driver import World
from test_interop_broker import ProcessBroker

from mqttproto import PacketReader, ProtocolVersion, QoS, encode_packet
from mqttproto.adapters._input_budget import LARGE_INPUT, InputBudget
from mqttproto.config import BrokerConfig
from mqttproto.packets import ConnectPacket, PublishPacket, SubscribePacket, Subscription

V5 = ProtocolVersion.MQTT_5_0
MiB = 1024 * 1024


def header(size: int) -> bytes:
    """The first bytes of a QoS 0 PUBLISH to "big" whose whole size is ``size``
    (a 4-byte remaining length: ``size`` above 2 MiB)."""
    remaining = size - 5
    length = bytes(
        ((remaining >> shift) & 0x7F) | (0x80 if shift < 21 else 0) for shift in (0, 7, 14, 21)
    )
    return b"\x30" + length + b"\x00\x03big\x00"


# -- the bookkeeping -----------------------------------------------------------------


def test_small_packets_never_reserve_nor_wait() -> None:
    budget: InputBudget[str] = InputBudget(LARGE_INPUT)
    assert budget.claim("a", LARGE_INPUT) == []
    assert budget.claim("b", LARGE_INPUT) == []
    assert budget.reserved == 0 and not budget.is_held("a") and not budget.is_held("b")


def test_large_packets_reserve_wait_in_order_and_are_admitted_as_room_frees() -> None:
    budget: InputBudget[str] = InputBudget(300_000)
    assert budget.claim("a", 200_000) == []
    assert budget.claim("b", 200_000) == ["b"] and budget.is_held("b")
    # "c" fits, but comes after "b": first come, first served.
    assert budget.claim("c", 90_000) == ["c"] and budget.is_held("c")
    assert budget.reserved == 200_000
    assert budget.claim("a", 0) == ["b", "c"]  # "a"'s packet is complete
    assert budget.reserved == 290_000 and not budget.is_held("b") and not budget.is_held("c")
    assert budget.release("b") == [] and budget.reserved == 90_000


def test_a_packet_larger_than_the_budget_goes_through_alone() -> None:
    budget: InputBudget[str] = InputBudget(100_000)
    assert budget.claim("huge", 1_000_000) == []  # nothing else reserved
    assert budget.claim("next", 70_000) == ["next"]
    assert budget.release("huge") == ["next"]


def test_no_budget_holds_nothing() -> None:
    budget: InputBudget[str] = InputBudget(None)
    assert budget.claim("a", 10 * MiB) == [] and budget.reserved == 0


# -- the driver ------------------------------------------------------------------------


def test_the_driver_pauses_a_large_packet_that_does_not_fit_and_resumes_it() -> None:
    world = World(BrokerConfig(max_buffered_input=3 * MiB))
    sub = world.subscriber("sub", "big")
    first, second = world.client("first"), world.client("second")
    whole = encode_packet(PublishPacket("big", b"1" * (2 * MiB)), version=V5)
    world.send(first, whole[: MiB])
    assert first.reading and world.driver.input_budget.reserved == len(whole)
    world.send(second, whole[:100])
    assert not second.reading  # 4 MiB would not fit in 3 MiB
    # Small packets of anyone are still served meanwhile.
    world.send(world.client("small"), PublishPacket("big", b"small"))
    world.run()
    assert [p.payload for p in sub.packets()] == [b"small"]
    world.send(first, whole[MiB:])
    world.run()
    assert second.reading and world.driver.input_budget.reserved == len(whole)
    world.send(second, whole[100:])
    world.run()
    assert [len(p.payload) for p in sub.packets()] == [2 * MiB, 2 * MiB]
    assert world.driver.input_budget.reserved == 0


def test_a_waiting_connection_that_ends_gives_its_place_up() -> None:
    world = World(BrokerConfig(max_buffered_input=3 * MiB))
    first, second, third = world.client("a"), world.client("b"), world.client("c")
    world.send(first, header(2 * MiB + 100))
    world.send(second, header(2 * MiB + 100))
    world.send(third, header(2 * MiB + 100))
    assert first.reading and not second.reading and not third.reading
    world.gone(second)
    world.gone(first)  # its reservation goes to the next waiting: third
    assert third.reading and world.driver.input_budget.reserved == 2 * MiB + 100


# -- the broker process ---------------------------------------------------------------


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_many_clients_claiming_huge_packets_keep_the_broker_bounded() -> None:
    """100 clients each declare a 16 MiB PUBLISH and try to send 2 MiB of it
    (200 MiB in all); with a 16 MiB budget the broker holds one packet's
    reservation plus a read per connection, and a normal client is served."""
    count, each = 100, 2 * MiB
    with ProcessBroker("--max-buffered-input", str(16 * MiB)) as broker:
        assert broker.process is not None
        baseline = rss(broker.process.pid)
        selector = selectors.DefaultSelector()
        socks = []
        try:
            for index in range(count):
                sock = socket.create_connection((broker.host, broker.port), timeout=10)
                sock.sendall(encode_packet(ConnectPacket(f"huge-{index}"), version=V5))
                sock.setblocking(False)
                socks.append(sock)
                selector.register(sock, selectors.EVENT_WRITE, [header(16 * MiB), each])
            chunk = b"\0" * 65536
            deadline = time.monotonic() + 20
            # Push until every client has sent its share or is blocked for 2 s.
            idle_since = time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - idle_since < 2:
                sent_any = False
                for key, _ in selector.select(timeout=0.2):
                    state = key.data
                    data = state[0] or chunk[: min(len(chunk), state[1])]
                    try:
                        sent = key.fileobj.send(data)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    sent_any = True
                    if state[0]:
                        state[0] = state[0][sent:]
                    else:
                        state[1] -= sent
                        if state[1] <= 0:
                            selector.unregister(key.fileobj)
                if sent_any:
                    idle_since = time.monotonic()
            held = rss(broker.process.pid) - baseline
            # A normal client is still served: subscribe, publish, receive.
            normal = socket.create_connection((broker.host, broker.port), timeout=10)
            with normal:
                reader = PacketReader(version=V5)
                normal.sendall(
                    encode_packet(ConnectPacket("normal"), version=V5)
                    + encode_packet(SubscribePacket(1, (Subscription("n"),)), version=V5)
                    + encode_packet(
                        PublishPacket("n", b"hello", QoS.AT_LEAST_ONCE, packet_id=2), version=V5
                    )
                )
                packets: list[object] = []
                for _ in range(20):
                    packets += reader.feed(normal.recv(65536))
                    if any(getattr(p, "payload", None) == b"hello" for p in packets):
                        break
                assert any(getattr(p, "payload", None) == b"hello" for p in packets), packets
        finally:
            for sock in socks:
                sock.close()
            selector.close()
    # Without the budget the broker would hold about 200 MiB of these.
    assert held < 80 * MiB, f"the broker grew by {held / MiB:.1f} MiB"
