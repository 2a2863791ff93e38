"""What one user-property flood costs a broker.

The packet: an MQTT 5 QoS 1 PUBLISH (topic ``flood``, packet id 7, empty
payload) whose property block is nothing but tiny User Properties, as many as
fit in 1 MiB (the broker's default ``max_packet_size``). Two kinds:

- ``same``: every property is ``("a", "")``, 6 bytes on the wire, about
  175,000 of them; the decoders' caches of recent user properties hit;
- ``distinct``: every property has its own name (``("0", "")``,
  ``("1", "")`` ...), about 112,000 of them, so every one misses the caches.

The broker refuses it (more than ``max_user_properties``) with PUBACK 0x97.

Measured, as medians over repeats, in ms per packet:

- **sans-IO**: ``Broker.receive_data`` on a connected MQTT 5 connection, then
  ``data_to_send`` (checked to be the PUBACK 0x97), with the garbage
  collector on; the codec in use, then the pure one in a subprocess.
- **loopback** (``--loopback``): our broker (``python -m mqttproto broker``)
  and mosquitto (``/usr/sbin/mosquitto``, if installed), each in its own
  process on 127.0.0.1. One client sends ``--packets`` floods back to back
  followed by a PINGREQ and waits for the PINGRESP (after every PUBACK); the
  time from the first byte sent to the PINGRESP, divided by the number of
  floods, includes the transfer of 1 MiB over loopback. The brokers take
  turns, round by round.

Run: ``python benchmarks/property_flood.py [--loopback] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqttproto import (  # noqa: E402
    ConnectPacket,
    PacketReader,
    PingRespPacket,
    ProtocolVersion,
    PubAckPacket,
    PublishPacket,
    QoS,
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


def flood(kind: str) -> bytes:
    """The flood PUBLISH of ``kind``, as close to 1 MiB as it gets."""
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
    assert len(data) <= MAX_PACKET, len(data)
    return data


# --------------------------------------------------------------------------
# The sans-IO broker core


def sans_io(data: bytes, repeats: int) -> float:
    broker = Broker()
    now = 0.0
    client = ClientConnection(V5)
    conn = broker.open_connection(now)
    client.connect(client_id="flooder", keep_alive=0)
    broker.receive_data(conn, client.data_to_send(now), now)
    client.receive_data(broker.data_to_send(conn, now), now)
    list(client.events())
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        broker.receive_data(conn, data, now)
        out = broker.data_to_send(conn, now)
        timings.append((time.perf_counter() - start) * 1e3)
        assert out == PUBACK_QUOTA, out
    return statistics.median(timings)


def run_sans_io(repeats: int) -> None:
    print(f"sans-IO Broker.receive_data, codec {codec_implementation()}, GC on:")
    for kind in ("same", "distinct"):
        data = flood(kind)
        print(f"  {kind:9} ({len(data):,} bytes): {sans_io(data, repeats):8.2f} ms/packet")


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
    args = parser.parse_args()
    run_sans_io(args.repeats)
    if not args.single and codec_implementation() != "python":
        env = dict(os.environ, MQTTPROTO_PURE_PYTHON="1")
        argv = [sys.executable, __file__, "--single", "--repeats", str(args.repeats)]
        subprocess.run(argv, env=env, check=True)
    if args.loopback:
        run_loopback(args.repeats, args.packets)


if __name__ == "__main__":
    main()
