"""What the tests of ``mqttproto pub``, ``sub`` and ``rr`` share: running
them (and mosquitto's tools) as subprocesses, a subscriber in the
background, and a TCP relay that can cut a client off its broker.

Every process is started without a shell, bounded by a timeout and, if still
running, killed by its handle. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import queue
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interop import HOST, require_peer

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO_RR = "/usr/bin/mosquitto_rr"
TIMEOUT = 20.0


def cli(
    *args: str, input: bytes | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """``python -m mqttproto ARGS`` to completion (killed after *timeout*)."""
    return subprocess.run(
        [sys.executable, "-m", "mqttproto", *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def mosquitto(executable: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    require_peer(os.path.basename(executable), executable)
    return subprocess.run(
        [executable, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )


def ours(*args: str) -> list[str]:
    return [sys.executable, "-m", "mqttproto", *args]


def at(broker: Any) -> list[str]:
    return ["-h", HOST, "-p", str(broker.port)]


def assert_one_line_error(
    result: subprocess.CompletedProcess[bytes], status: int, start: bytes
) -> None:
    """Exit status ``status``, nothing on stdout, and one line on stderr that
    starts with ``start`` -- no traceback."""
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert (result.returncode, result.stdout) == (status, b""), result.stderr
    assert result.stderr.startswith(start), result.stderr
    assert result.stderr.count(b"\n") == 1 and result.stderr.endswith(b"\n"), result.stderr


class Background:
    """A subscriber process whose stdout lines can be awaited (bounded)."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self.output = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for _ in range(100_000):
            chunk = self.process.stdout.read1(65536)
            if not chunk:
                break
            self.chunks.put(chunk)
        self.chunks.put(b"")

    def wait_for(self, text: bytes, count: int = 1) -> None:
        """Until *text* has been printed *count* times (10 s at most each read)."""
        for _ in range(1000):
            if self.output.count(text) >= count:
                return
            chunk = self.chunks.get(timeout=10)
            if not chunk:
                break
            self.output += chunk
        raise AssertionError(f"{text!r} not printed; got {self.output!r}")

    def finish(self) -> tuple[int, bytes, bytes]:
        """Wait (bounded) for the exit; kill on overrun. (status, stdout, stderr)."""
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for _ in range(100_000):
            chunk = self.chunks.get(timeout=10)
            if not chunk:
                break
            self.output += chunk
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        self.process.stderr.close()
        self.process.stdout.close()  # type: ignore[union-attr]
        return self.process.returncode, self.output, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


class Relay:
    """A TCP relay on 127.0.0.1 to ``port``: clients connect to :attr:`port`.

    :meth:`cut` closes every relayed connection and refuses new ones until
    :meth:`restore`, as a broker that went away and came back would. One
    thread with a selector moves the bytes; it stops at :meth:`close`.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        listener = self._listen(0)
        self._listener: socket.socket | None = listener
        self.port: int = listener.getsockname()[1]
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(8)
        listener.settimeout(0.05)
        return listener

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        registered: set[socket.socket] = set()
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
                if listener is not None:
                    try:
                        client, _ = listener.accept()
                    except (TimeoutError, OSError):
                        client = None
                    if client is not None:
                        upstream = socket.create_connection((HOST, self.target_port), timeout=5)
                        self._pairs[client] = upstream
                        self._pairs[upstream] = client
                for sock in list(self._pairs):
                    if sock not in registered:
                        selector.register(sock, selectors.EVENT_READ)
                        registered.add(sock)
            for key, _ in selector.select(timeout=0.05):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sock = ready
                with self._lock:
                    peer = self._pairs.get(sock)
                    try:
                        data = sock.recv(65536) if peer is not None else b""
                    except OSError:
                        data = b""
                    if data and peer is not None:
                        try:
                            peer.sendall(data)
                            continue
                        except OSError:
                            pass
                    self._drop(sock)
            with self._lock:
                for sock in list(registered):
                    if sock not in self._pairs:
                        selector.unregister(sock)
                        registered.discard(sock)
        selector.close()

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        sock.close()
        if peer is not None:
            self._pairs.pop(peer, None)
            peer.close()

    def cut(self) -> None:
        """Close every connection and stop accepting new ones."""
        with self._lock:
            for sock in list(self._pairs):
                if sock in self._pairs:
                    self._drop(sock)
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        with self._lock:
            self._listener = self._listen(self.port)

    def close(self) -> None:
        self.cut()
        self._stop.set()
        self._thread.join(timeout=5)
