"""3,000 half-open TLS handshakes against ``mqttproto broker``, a real process.

Each connection sends the first half of a real ClientHello and then
nothing. The broker (``--tls-handshake-timeout 5``, every other setting at
its default) must hold them cheaply: its RSS, read from ``/proc``, grows by
at most 150 MiB (asyncio's own TLS transport took about 900 MiB for this);
a well-behaved TLS client is served while they are open and after; every
one of them is closed once the timeout has passed, and the 3,000 timeouts
make a handful of log lines, not 3,000. ``benchmarks/tls_handshakes.py``
measures the same and more (whole ClientHellos, established connections,
the trio and threads servers).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from tls_peers import (
    CONNACK_ACCEPTED,
    HOST,
    WAIT,
    Pki,
    is_open,
    mqtt_over_tls,
    open_many,
    raise_file_limit,
    rss_kib,
)

ROOT = Path(__file__).resolve().parent.parent
COUNT = 3000
TIMEOUT = 5.0


def test_3000_half_open_tls_handshakes(tmp_path: Path) -> None:
    pki = Pki()
    cert, key = pki.write_server_files(tmp_path)
    # Both ends of every connection are in this machine's two processes.
    raise_file_limit(COUNT + 1024)
    log = tmp_path / "broker.log"
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mqttproto", "broker", "-v", "--host", HOST),
                *("--port", "0", "--certfile", str(cert), "--keyfile", str(key)),
                *("--tls-handshake-timeout", str(TIMEOUT)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=ROOT,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, (line, log.read_text(encoding="utf-8"))
        port = int(line.split()[-2].rsplit(":", 1)[1])
        # The first client loads what TLS needs once; measure from there.
        assert mqtt_over_tls(port, pki.client) == CONNACK_ACCEPTED
        base = rss_kib(process.pid)

        hello = pki.client_hello()
        started = time.monotonic()
        sockets = open_many(port, COUNT, hello[: len(hello) // 2])
        try:
            opened_in = time.monotonic() - started
            time.sleep(0.3)  # the broker reads the last ones
            grown = rss_kib(process.pid) - base
            held = sum(is_open(sock) for sock in sockets)
            print(
                f"{COUNT} half-open handshakes opened in {opened_in:.1f} s: broker RSS "
                f"+{grown / 1024:.1f} MiB ({grown / COUNT:.1f} KiB each), {held} held open"
            )
            assert opened_in < TIMEOUT - 1, "too slow to measure them all open at once"
            assert held == COUNT
            assert grown <= 150 * 1024
            assert mqtt_over_tls(port, pki.client) == CONNACK_ACCEPTED

            deadline = started + TIMEOUT + WAIT
            while held and time.monotonic() < deadline:
                time.sleep(0.2)
                held = sum(is_open(sock) for sock in sockets)
            closed_after = time.monotonic() - started
            assert held == 0, f"{held} still open {closed_after:.1f} s after the first"
            assert closed_after >= TIMEOUT
        finally:
            for sock in sockets:
                sock.close()
        assert mqtt_over_tls(port, pki.client) == CONNACK_ACCEPTED
        assert process.poll() is None
    finally:
        process.terminate()
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0
    text = log.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if "TLS handshake" in line]
    # One line per burst of timeouts (and the count it left out), at most
    # one line every 10 s: a handful for the whole flood.
    assert 1 <= len(lines) <= 4, lines
    logged = sum(1 for line in lines if "TLS handshake timed out after" in line)
    left_out = sum(int(found) for found in re.findall(r"(\d+) more TLS handshakes timed out", text))
    assert logged + left_out == COUNT, lines
