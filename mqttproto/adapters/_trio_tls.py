"""The TLS handshake of :class:`~mqttproto.adapters.trio.BrokerServer`, under its bounds.

The server listens on plain sockets even for a TLS listener, so that each
connection passes the :class:`._tls_gate.HandshakeGate` before it has any
TLS state: :func:`tls_handshake` admits it (``max_connections``), reads the
client's first TLS record (a few hundred bytes usually, 16 KiB at most),
asks the gate again (``max_tls_handshakes``), and only then wraps the stream
in a :class:`trio.SSLStream`, which is handed the record it has not seen
through :class:`_Replay`. All of it has ``tls_handshake_timeout`` seconds,
and the server cancels what is under way when it shuts down.
"""

from __future__ import annotations

import ssl as _ssl
from typing import Protocol

import trio

from ._tls_gate import HandshakeGate, first_record_size, handshake_failure


class TlsPeer(Protocol):
    """What the handshake reads and replaces of a trio server's connection."""

    peer: str
    stream: trio.abc.Stream


class TlsOwner(Protocol):
    """What the handshake reads of the trio ``BrokerServer``, named here so
    that this module does not import it."""

    tls_handshake_timeout: float
    _stopping: bool
    _tls_gate: HandshakeGate
    _handshakes: set[trio.CancelScope]


__all__ = ["tls_handshake"]


class _Replay(trio.abc.Stream):
    """A stream that gives ``prefix`` (bytes already read from it) first."""

    __slots__ = ("_prefix", "inner")

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        prefix = self._prefix
        if not prefix:
            return await self.inner.receive_some(max_bytes)
        size = len(prefix) if max_bytes is None else max_bytes
        self._prefix = prefix[size:]
        return prefix[:size]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _first_record(stream: trio.abc.Stream) -> bytes | None:
    """The bytes up to the end of the client's first TLS record; None: not TLS.

    :raises EOFError: the client closed the connection before.
    """
    hello = bytearray()
    while True:
        size = first_record_size(hello)
        if size is None:
            return None
        if len(hello) >= size:
            return bytes(hello)
        data = await stream.receive_some(size - len(hello))
        if not data:
            raise EOFError
        hello += data


async def tls_handshake(server: TlsOwner, peer: TlsPeer, context: _ssl.SSLContext) -> bool:
    """Admit ``peer`` under the handshake bounds and do its TLS handshake
    within ``tls_handshake_timeout``; on success ``peer.stream`` is the
    :class:`trio.SSLStream`. False: the connection is to be closed (the
    gate has counted and logged why)."""
    gate = server._tls_gate
    if server._stopping or not gate.admit(trio.current_time(), peer.peer):
        return False
    # Whether the gate still counts this connection, and as handshaking.
    held, started = True, False
    scope = trio.CancelScope(deadline=trio.current_time() + server.tls_handshake_timeout)
    server._handshakes.add(scope)  # for the shutdown to cancel
    try:
        with scope:
            try:
                hello = await _first_record(peer.stream)
            except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                gate.failed(trio.current_time(), peer.peer, None)
                return False
            if hello is None:
                gate.failed(trio.current_time(), peer.peer, "not a TLS handshake")
                return False
            if not gate.start(trio.current_time(), peer.peer):
                held = False
                return False
            started = True
            stream = peer.stream = trio.SSLStream(
                _Replay(peer.stream, hello), context, server_side=True, https_compatible=False
            )
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                gate.failed(trio.current_time(), peer.peer, handshake_failure(exc))
                return False
            held = False
            gate.succeeded()
            return True
    finally:
        server._handshakes.discard(scope)
        if held:
            gate.release(started)
    # The deadline passed, or the server is shutting down.
    if not server._stopping:
        gate.timed_out(trio.current_time(), peer.peer)
    return False
