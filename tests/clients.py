"""Helpers for the client adapter tests (tests/test_clients_*.py).

- :class:`ThreadedBroker`: our asyncio broker server on its own loop in a
  thread (any client adapter can reach it), optionally with TLS.
- :class:`CutProxy`: a TCP relay on 127.0.0.1 whose connections a test can
  cut at once (both sides aborted), to kill client connections mid-stream.
- :func:`certificates`: a CA, a server certificate for 127.0.0.1/localhost
  and the client's trust context, made by ``trustme`` in the test.
- :func:`mosquitto_with`: mosquitto with extra listeners (TLS, WebSocket, a
  Unix socket).

Everything listens on 127.0.0.1 (or a Unix socket in a temporary directory)
with ports chosen at run time; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import trustme
from interop import HOST, MosquittoBroker, free_port

from mqttproto.adapters.asyncio import BrokerServer, start_server
from mqttproto.auth import AllowAll

#: Seconds any single wait in these helpers may take.
WAIT = 10.0


class DenyTopic(AllowAll):
    """Allows everything except publishing to, or subscribing to, ``denied/...``."""

    def may_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        return not topic.startswith("denied/")

    def may_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        return not topic_filter.startswith("denied/")


class ThreadedBroker:
    """Our broker server on its own event loop in a background thread."""

    def __init__(self, **server_args: Any) -> None:
        self.server_args = server_args
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: BrokerServer | None = None
        self.host = HOST
        self.port = 0

    def __enter__(self) -> ThreadedBroker:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_server(HOST, 0, **self.server_args), self.loop
        )
        self.server = future.result(timeout=WAIT)
        self.port = self.server.port
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.server is not None:
                asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(
                    timeout=WAIT
                )
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=WAIT)
            if not self.thread.is_alive():
                self.loop.close()


class CutProxy:
    """A TCP relay 127.0.0.1:port → target; :meth:`cut` aborts every relayed
    connection (both sides) at once, as a network failure would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.cuts = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        try:
            await asyncio.gather(
                self._relay(client_reader, server_writer),
                self._relay(server_reader, client_writer),
                return_exceptions=True,
            )
        finally:
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def __enter__(self) -> CutProxy:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(WAIT)
        return self

    def cut(self) -> None:
        """Abort every connection now (thread-safe)."""

        def abort_all() -> None:
            self.cuts += 1
            for writer in list(self._writers):
                writer.transport.abort()

        self.loop.call_soon_threadsafe(abort_all)

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(WAIT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=WAIT)
            if not self.thread.is_alive():
                self.loop.close()


@attrs.frozen
class Certificates:
    """Files and contexts for TLS between a test's client and server."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext


def certificates(directory: Path) -> Certificates:
    """A fresh CA and a server certificate for ``127.0.0.1`` and ``localhost``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(key_file))
    # The server certificate followed by its chain.
    with cert_file.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(server_context)
    client_context = ssl.create_default_context(cafile=str(ca_file))
    return Certificates(ca_file, cert_file, key_file, server_context, client_context)


@attrs.frozen
class MosquittoListeners:
    """Where a :func:`mosquitto_with` broker listens."""

    broker: MosquittoBroker
    tls_port: int | None = None
    ws_port: int | None = None
    unix_path: str | None = None


@contextmanager
def mosquitto_with(
    directory: Path,
    *,
    tls: Certificates | None = None,
    websocket: bool = False,
    unix: bool = False,
) -> Iterator[MosquittoListeners]:
    """mosquitto with a TLS listener, a WebSocket listener and/or a Unix socket."""
    lines: list[str] = []
    tls_port = ws_port = None
    unix_path = None
    if tls is not None:
        tls_port = free_port()
        lines += [
            f"listener {tls_port} {HOST}",
            f"cafile {tls.ca_file}",
            f"certfile {tls.cert_file}",
            f"keyfile {tls.key_file}",
            "allow_anonymous true",
        ]
    if websocket:
        ws_port = free_port()
        # libwebsockets binds [::] whatever the address, unless told IPv4:
        # [::] also takes the port on every IPv4 address, so a port that is
        # free on 127.0.0.1 may not be (an ephemeral port of a connection).
        lines += [
            f"listener {ws_port} {HOST}",
            "socket_domain ipv4",
            "protocol websockets",
            "allow_anonymous true",
        ]
    if unix:
        unix_path = str(directory / "mqtt.sock")
        lines += [f"listener 0 {unix_path}", "allow_anonymous true"]
    with MosquittoBroker(extra_config=lines, directory=directory) as broker:
        yield MosquittoListeners(broker, tls_port, ws_port, unix_path)
