"""What one property flood costs a broker.

The packets: an MQTT 5 QoS 1 PUBLISH (topic ``flood``, packet id 7, empty
payload) whose property block is nothing but tiny repeatable properties, as
many as fit in 1 MiB (the broker's default ``max_packet_size``). Five kinds:

- ``same``: every property is the User Property ``("a", "")``, 6 bytes on
  the wire, about 175,000 of them; the decoders' caches of recent user
  properties hit;
- ``distinct``: every User Property has its own name (``("0", "")``,
  ``("1", "")`` ...), about 112,000 of them, so every one misses the caches;
- ``subid``: every property is the Subscription Identifier 1, 2 bytes on the
  wire, about 524,000 of them;
- ``subid-distinct``: Subscription Identifiers 1, 2, 3 ... (each a new
  ``int`` past 256), about 266,000 of them;
- ``mixed``: User Property ``("a", "")`` and Subscription Identifier 1 in
  turn, about 131,000 of each, so that no run of one kind is long.

The broker refuses the user-property floods and ``mixed`` (more than
``max_user_properties``, checked first) with PUBACK 0x97, and the
Subscription Identifier floods with DISCONNECT 0x82 (a client must not send
them [MQTT-3.3.4-6]), which closes the connection.

Measured, as medians over repeats, in ms per packet:

- **sans-IO**: ``Broker.receive_data`` on a connected MQTT 5 connection, then
  ``data_to_send`` (checked to be the expected answer), with the garbage
  collector on; the codec in use, then the pure one in a subprocess. A
  connection the broker closed is replaced, outside the timing.
- **loopback** (``--loopback``, the ``same`` flood only): our broker
  (``python -m mqttproto broker``) and mosquitto (``/usr/sbin/mosquitto``, if
  installed), each in its own process on 127.0.0.1. One client sends
  ``--packets`` floods back to back followed by a PINGREQ and waits for the
  PINGRESP (after every PUBACK); the time from the first byte sent to the
  PINGRESP, divided by the number of floods, includes the transfer of 1 MiB
  over loopback. The brokers take turns, round by round.

Run: ``python benchmarks/property_flood.py [--loopback] [--repeats R] [--kinds K,...]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqttproto import (  # noqa: E402
    ConnectPacket,
    DisconnectPacket,
    PacketReader,
    PingRespPacket,
    ProtocolVersion,
    PubAckPacket,
    PublishPacket,
    QoS,
    ReasonCode,
    encode_packet,
)
from mqttproto.broker import Broker  # noqa: E402
from mqttproto.client import ClientConnection  # noqa: E402
from mqttproto.codec import codec_implementation  # noqa: E402

V5 = ProtocolVersion.MQTT_5_0
HOST = "127.0.0.1"
MAX_PACKET = 1024 * 1024
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PUBACK_QUOTA = b"\x40\x03\x00\x07\x97"
DISCONNECT_SUBID = encode_packet(
    DisconnectPacket(
        ReasonCode.PROTOCOL_ERROR,
        reason_string="a client PUBLISH carries a Subscription Identifier",
    ),
    version=V5,
)
KINDS = ("same", "distinct", "subid", "subid-distinct", "mixed")
# What the broker answers each kind with.
ANSWERS = {
    "same": PUBACK_QUOTA,
    "distinct": PUBACK_QUOTA,
    "subid": DISCONNECT_SUBID,
    "subid-distinct": DISCONNECT_SUBID,
    "mixed": PUBACK_QUOTA,
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _publish_with_block(block: bytes) -> bytes:
    """The QoS 1 PUBLISH (topic ``flood``, id 7, no payload) with these properties."""
    body = b"\x00\x05flood\x00\x07" + _varint(len(block)) + block
    return b"\x32" + _varint(len(body)) + body


def _fill(pieces: Iterator[bytes]) -> bytes:
    """As many of ``pieces`` as fit in a PUBLISH of at most MAX_PACKET bytes."""
    block = bytearray()
    room = MAX_PACKET - 32  # the fixed header, topic, id and property length
    for piece in pieces:
        if len(block) + len(piece) > room:
            break
        block += piece
    return _publish_with_block(bytes(block))


def flood(kind: str) -> bytes:
    """The flood PUBLISH of ``kind``, as close to 1 MiB as it gets."""
    if kind in ("same", "distinct"):
        if kind == "same":
            pairs = [("a", "")] * ((MAX_PACKET - 32) // 6)
        else:
            pairs = []
            size = 32
            while True:
                name = format(len(pairs), "x")
                size += 5 + len(name)
                if size > MAX_PACKET:
                    break
                pairs.append((name, ""))
        packet = PublishPacket("flood", b"", QoS.AT_LEAST_ONCE, packet_id=7, user_properties=pairs)
        data = encode_packet(packet, version=V5)
    elif kind == "subid":
        data = _fill(itertools.repeat(b"\x0b\x01"))
    elif kind == "subid-distinct":
        data = _fill(b"\x0b" + _varint(value) for value in itertools.count(1))
    else:
        data = _fill(itertools.cycle((b"\x26\x00\x01a\x00\x00", b"\x0b\x01")))
    assert len(data) <= MAX_PACKET, len(data)
    return data


# --------------------------------------------------------------------------
# The sans-IO broker core


def connected(broker: Broker, now: float) -> int:
    """A new MQTT 5 connection to ``broker``, past its CONNACK."""
    client = ClientConnection(V5)
    conn = broker.open_connection(now)
    client.connect(client_id="flooder", keep_alive=0)
    broker.receive_data(conn, client.data_to_send(now), now)
    client.receive_data(broker.data_to_send(conn, now), now)
    list(client.events())
    return conn


def sans_io(data: bytes, expected: bytes, repeats: int) -> float:
    broker = Broker()
    now = 0.0
    conn = connected(broker, now)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        broker.receive_data(conn, data, now)
        out = broker.data_to_send(conn, now)
        timings.append((time.perf_counter() - start) * 1e3)
        assert out == expected, out[:80]
        if conn in broker.connections_to_close():
            broker.connection_lost(conn, now)
            conn = connected(broker, now)
    return statistics.median(timings)


def run_sans_io(repeats: int, kinds: list[str]) -> None:
    print(f"sans-IO Broker.receive_data, codec {codec_implementation()}, GC on:")
    for kind in kinds:
        data = flood(kind)
        timing = sans_io(data, ANSWERS[kind], repeats)
        print(f"  {kind:14} ({len(data):,} bytes): {timing:8.2f} ms/packet")


# --------------------------------------------------------------------------
# Over loopback


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerProcess:
    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )

    def wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_brokers(directory: Path) -> list[BrokerProcess]:
    brokers = []
    port = free_port()
    ours = [sys.executable, "-m", "mqttproto", "broker", "--host", HOST, "--port", str(port)]
    brokers.append(BrokerProcess("ours", ours, port, directory / "ours.log"))
    if os.access(MOSQUITTO, os.X_OK):
        port = free_port()
        conf = directory / "mosquitto.conf"
        lines = [f"listener {port} {HOST}", "allow_anonymous true", "persistence false"]
        if os.getuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join([*lines, "log_type error", ""]), encoding="utf-8")
        argv = [MOSQUITTO, "-c", str(conf)]
        brokers.append(BrokerProcess("mosquitto", argv, port, directory / "mosquitto.log"))
    else:
        print(f"skipping mosquitto: {MOSQUITTO} not found", file=sys.stderr)
    ready = []
    for broker in brokers:
        if broker.wait_ready():
            ready.append(broker)
        else:
            broker.stop()
            print(f"skipping {broker.name}: did not start", file=sys.stderr)
    return ready


def flood_round(port: int, data: bytes, packets: int) -> tuple[float, list[int]]:
    """Send ``packets`` floods and a PINGREQ; return (s per flood, PUBACK reason codes)."""
    with socket.create_connection((HOST, port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = PacketReader(version=V5)
        sock.sendall(encode_packet(ConnectPacket(client_id="flooder", keep_alive=0), version=V5))
        codes: list[int] = []
        done = False
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            done = bool(reader.feed(chunk))
        start = time.perf_counter()
        sock.sendall(data * packets + b"\xc0\x00")
        done = False
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            for packet in reader.feed(chunk):
                if isinstance(packet, PubAckPacket):
                    codes.append(int(packet.reason_code))
                done = done or isinstance(packet, PingRespPacket)
        elapsed = time.perf_counter() - start
    return elapsed / packets, codes


def run_loopback(repeats: int, packets: int) -> None:
    data = flood("same")
    with tempfile.TemporaryDirectory(prefix="mqttproto-flood-") as directory:
        brokers = start_brokers(Path(directory))
        try:
            timings: dict[str, list[float]] = {broker.name: [] for broker in brokers}
            answers: dict[str, set[int]] = {broker.name: set() for broker in brokers}
            for _ in range(repeats):
                for broker in brokers:
                    elapsed, codes = flood_round(broker.port, data, packets)
                    assert len(codes) == packets, codes
                    timings[broker.name].append(elapsed * 1e3)
                    answers[broker.name].update(codes)
        finally:
            for broker in brokers:
                broker.stop()
    print(
        f"loopback, {packets} floods ({len(data):,} bytes each) + PINGREQ, "
        f"median of {repeats}, our broker's codec {codec_implementation()}:"
    )
    for name, values in timings.items():
        seen = ", ".join(f"0x{code:02X}" for code in sorted(answers[name]))
        print(f"  {name:10} {statistics.median(values):8.2f} ms/packet (PUBACK {seen})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--loopback", action="store_true")
    parser.add_argument("--packets", type=int, default=10)
    parser.add_argument("--single", action="store_true", help="only the codec in use")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"floods to send (of {', '.join(KINDS)})"
    )
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: not among {', '.join(KINDS)}")
    run_sans_io(args.repeats, kinds)
    if not args.single and codec_implementation() != "python":
        env = dict(os.environ, MQTTPROTO_PURE_PYTHON="1")
        argv = [sys.executable, __file__, "--single", "--repeats", str(args.repeats)]
        argv += ["--kinds", args.kinds]
        subprocess.run(argv, env=env, check=True)
    if args.loopback:
        run_loopback(args.repeats, args.packets)


if __name__ == "__main__":
    main()
