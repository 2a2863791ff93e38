"""What TLS costs the broker process: pending handshakes and established connections.

Starts ``python -m mqttproto broker --certfile ... --keyfile ...`` (extra
broker flags after ``--``) on a free port of 127.0.0.1, or with ``--server
trio`` / ``--server threads`` that server in a process of its own (this
file, with its default settings), and reads the process's RSS (``VmRSS``
in ``/proc``):

1. ``--half-open N`` connections that start a TLS handshake and go silent
   (``--mode``: ``connect``, TCP only; ``partial``, the first half of a
   ClientHello; ``full``, a whole ClientHello, so the server has done its
   key exchange and waits for the client's Finished). The RSS once they are
   all sent, divided by N, is the cost of one pending handshake. A
   well-behaved TLS client must get its CONNACK meanwhile; then the script
   waits (``--wait`` seconds at most) until the broker has closed the
   half-open connections and reports how long that took.
2. ``--established M`` TLS clients that complete the handshake and CONNECT,
   and stay: the RSS divided by M is the cost of one established TLS
   connection (an idle MQTT client included).

Certificates are made with ``trustme`` (the ``dev`` extra). Every socket is
closed and the broker stopped through its handle; every wait is bounded.

Run: ``.venv/bin/python benchmarks/tls_handshakes.py --half-open 3000 --mode partial``
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
#: CONNECT 3.1.1, client id "ok"; CONNACK accepted is 20 02 00 00.
CONNECT = bytes.fromhex("100e00044d5154540402003c00026f6b")
CONNACK_ACCEPTED = bytes.fromhex("20020000")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def client_hello(context: ssl.SSLContext) -> bytes:
    """The bytes of a real ClientHello (made without a socket)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=HOST)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def open_half_open(
    port: int, count: int, first_bytes: bytes, deadline: float
) -> list[socket.socket]:
    """``count`` non-blocking TCP connections, each sent ``first_bytes`` once
    connected; returns them all (some may have been closed by the broker)."""
    selector = selectors.DefaultSelector()
    opened: list[socket.socket] = []
    connecting = 0
    try:
        while (len(opened) < count or connecting) and time.monotonic() < deadline:
            # At most 256 connects in flight: the listen backlog is finite.
            while len(opened) < count and connecting < 256:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                opened.append(sock)
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect((HOST, port))
                selector.register(sock, selectors.EVENT_WRITE)
                connecting += 1
            for key, _ in selector.select(0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                connecting -= 1
                if first_bytes and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    with contextlib.suppress(OSError):
                        sock.send(first_bytes)
    finally:
        selector.close()
    return opened


def still_open(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the broker has not closed (no EOF, no reset)."""
    count = 0
    for sock in sockets:
        try:
            data = sock.recv(65536, socket.MSG_PEEK)
        except BlockingIOError:
            count += 1
        except OSError:
            pass
        else:
            # A full handshake left the server's flight to read: not an EOF.
            if data and sock.recv(65536):
                count += 1
    return count


def served(port: int, context: ssl.SSLContext, timeout: float = 10.0) -> str:
    """How long a well-behaved TLS client takes to get its CONNACK, or why it did not."""
    start = time.monotonic()
    try:
        with (
            socket.create_connection((HOST, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            tls.sendall(CONNECT)
            data = b""
            while len(data) < 4:
                chunk = tls.recv(4 - len(data))
                if not chunk:
                    return "closed before CONNACK"
                data += chunk
    except OSError as exc:
        return f"not served: {exc}"
    if data != CONNACK_ACCEPTED:
        return f"CONNACK {data.hex()}"
    return f"CONNACK in {(time.monotonic() - start) * 1000:.1f} ms"


def established(port: int, context: ssl.SSLContext, count: int) -> list[ssl.SSLSocket]:
    clients = []
    for index in range(count):
        raw = socket.create_connection((HOST, port), timeout=10.0)
        tls = context.wrap_socket(raw, server_hostname=HOST)
        clients.append(tls)
        client_id = b"e%d" % index
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        tls.sendall(bytes([0x10, len(body)]) + body)
        if tls.recv(4) != CONNACK_ACCEPTED:
            raise ConnectionError("CONNECT refused")
    return clients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half-open", type=int, default=3000)
    parser.add_argument("--mode", choices=("connect", "partial", "full"), default="partial")
    parser.add_argument("--established", type=int, default=500)
    parser.add_argument("--wait", type=float, default=90.0)
    parser.add_argument("--server", choices=("asyncio", "trio", "threads"), default="asyncio")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "CERT", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("broker_args", nargs="*", help="more flags for the broker (after --)")
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * (args.half_open + args.established) + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))

    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
        server_cert = ca.issue_cert(HOST)
        server_cert.cert_chain_pems[0].write_to_path(str(cert))
        server_cert.private_key_pem.write_to_path(str(key))
        if args.server == "asyncio":
            command = [
                *(sys.executable, "-m", "mqttproto", "broker", "--host", HOST, "--port", "0"),
                *("--certfile", str(cert), "--keyfile", str(key), *args.broker_args),
            ]
        else:
            command = [sys.executable, __file__, "--serve", args.server, str(cert), str(key)]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if "listening on" not in line:
                raise SystemExit(f"the broker did not start: {line!r}")
            port = int(line.split()[-2].rsplit(":", 1)[1])
            report(process.pid, port, ca, args)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def serve(kind: str, cert: str, key: str) -> None:
    """Run the trio or threads server on a TLS listener until SIGTERM."""
    import signal

    sys.path.insert(0, str(ROOT))
    from mqttproto.adapters.threads import Listener, server_ssl_context

    listener = Listener(port=0, ssl=server_ssl_context(cert, key))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if kind == "threads":
        from mqttproto.adapters.threads import BrokerServer

        with BrokerServer(listeners=[listener]) as server:
            print(f"listening on {HOST}:{server.port} (TLS)", flush=True)
            while True:
                time.sleep(3600)
    import trio

    from mqttproto.adapters.trio import BrokerServer as TrioServer

    async def main() -> None:
        async with TrioServer(listeners=[listener]) as server:
            print(f"listening on {HOST}:{server.port} (TLS)", flush=True)
            await trio.sleep_forever()

    trio.run(main)


def report(pid: int, port: int, ca: trustme.CA, args: argparse.Namespace) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    print(f"first client over TLS: {served(port, context)}")
    base = rss_kib(pid)
    print(f"broker RSS at rest: {base / 1024:.1f} MiB")

    if not args.half_open:
        measure_established(pid, port, context, args.established)
        return
    hello = client_hello(context)
    first = {"connect": b"", "partial": hello[: len(hello) // 2], "full": hello}[args.mode]
    start = time.monotonic()
    sockets = open_half_open(port, args.half_open, first, start + 60.0)
    try:
        time.sleep(1.0)  # the broker reads what was sent
        grown = rss_kib(pid) - base
        print(
            f"{args.half_open} half-open handshakes ({args.mode}): +{grown / 1024:.1f} MiB, "
            f"{grown / max(1, args.half_open):.1f} KiB each; "
            f"{still_open(sockets)} kept open by the broker"
        )
        print(f"a TLS client meanwhile: {served(port, context)}")
        opened_at = time.monotonic()
        while time.monotonic() - opened_at < args.wait:
            left = still_open(sockets)
            if not left:
                break
            time.sleep(0.5)
        print(
            f"still open {time.monotonic() - start:.1f} s after the first connect: "
            f"{still_open(sockets)}"
        )
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(1.0)
    print(f"after they closed: +{(rss_kib(pid) - base) / 1024:.1f} MiB")
    print(f"a TLS client after: {served(port, context)}")

    measure_established(pid, port, context, args.established)


def measure_established(pid: int, port: int, context: ssl.SSLContext, count: int) -> None:
    if not count:
        return
    before = rss_kib(pid)
    clients = established(port, context, count)
    try:
        time.sleep(0.5)
        grown = rss_kib(pid) - before
        print(
            f"{count} established TLS connections: +{grown / 1024:.1f} MiB, "
            f"{grown / count:.1f} KiB each"
        )
    finally:
        for client in clients:
            client.close()


if __name__ == "__main__":
    main()
