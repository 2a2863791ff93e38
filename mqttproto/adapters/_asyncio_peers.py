"""The asyncio protocol of :class:`~mqttproto.adapters.asyncio.BrokerServer`.

One :class:`_Peer` per accepted connection, whatever the listener (TCP, TLS
under a :class:`._asyncio_tls.TlsLayer`, WebSocket, Unix sockets): to asyncio
it is the protocol, to the server's :class:`._driver.Driver` it is the
:class:`._driver.Peer` whose I/O is its transport. Every callback reads the
loop's clock once and hands it to the driver as ``now``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ._driver import Driver, Peer
from ._listener import Listener
from ._server_common import peer_name


class PeerOwner(Protocol):
    """What a :class:`_Peer` reads of its server (the asyncio
    ``BrokerServer``), named here so that this module does not import it."""

    _driver: Driver
    _closing: bool

    def _now(self) -> float: ...

    def _peer_gone(self) -> None: ...


class _Peer(Peer, asyncio.Protocol):
    """One connection: asyncio's callbacks in, the transport's calls out."""

    __slots__ = ("_server", "transport", "writing_paused")

    def __init__(self, server: PeerOwner, listener: Listener) -> None:
        super().__init__(listener)
        self._server = server
        self.transport: asyncio.Transport | None = None
        #: Above the transport's high-water mark (pause_writing).
        self.writing_paused = False

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self._server
        address = transport.get_extra_info("peername")
        self.peer = peer_name(self.listener, address)
        if server._closing or not server._driver.open(self, server._now(), address):
            # Accepted in the instant the listener was closing, or refused.
            transport.abort()

    def data_received(self, data: bytes) -> None:
        server = self._server
        server._driver.received(self, data, server._now())

    def eof_received(self) -> bool:
        server = self._server
        server._driver.eof(self, server._now())
        # Close our side too: MQTT has no use for a half-open connection,
        # and everything the broker had to say was written just now.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        reason = f"connection lost: {exc}" if exc is not None else "peer closed the connection"
        server._driver.lost(self, server._now(), reason)
        server._peer_gone()

    def pause_writing(self) -> None:
        # The client is not reading: the driver stops reading its requests
        # until it does, and lets the core hold what is routed to it meanwhile.
        self.writing_paused = True
        server = self._server
        server._driver.output_changed(self, server._now())

    def resume_writing(self) -> None:
        self.writing_paused = False
        server = self._server
        server._driver.output_changed(self, server._now())

    # -- the driver's I/O -----------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def unsent(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def congested(self, unsent: int) -> bool:
        # The transport's write buffer limits decide (pause_writing).
        return self.writing_paused

    def pause_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def half_close(self) -> None:
        # The FIN goes once the buffer is written; reading goes on, and the
        # client's EOF (eof_received) closes. TLS has no half-close here.
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                # The peer is gone already (asyncio shuts the socket down at
                # once when nothing is buffered): connection_lost follows.
                transport.abort()

    def finish(self) -> None:
        # asyncio closes a transport once its buffer is written.
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        # connection_lost (and so Driver.lost) follows on the next iteration.
        if self.transport is not None:
            self.transport.abort()

    def peercert(self) -> dict[str, Any] | None:
        transport = self.transport
        return None if transport is None else transport.get_extra_info("peercert")
