"""The asyncio protocol of :class:`~mqttproto.adapters.asyncio.BrokerServer`.

One protocol object per accepted connection, whatever the listener:
:class:`_Peer` for MQTT straight on the stream (TCP, TLS, Unix sockets), and
its subclass in :mod:`._asyncio_websocket` for MQTT in WebSocket messages.
Both forward what they read to the server and offer it the same two calls,
:meth:`_Peer.send` and :meth:`_Peer.close_transport`, so the server's logic
does not know the transport.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ._listener import Listener


class PeerOwner(Protocol):
    """What a :class:`_Peer` calls on its server (the asyncio
    ``BrokerServer``), named here so that this module does not import it."""

    def _connection_made(self, peer: _Peer, transport: asyncio.Transport) -> None: ...

    def _data_received(self, peer: _Peer, data: bytes) -> None: ...

    def _eof_received(self, peer: _Peer) -> None: ...

    def _connection_lost(self, peer: _Peer, exc: Exception | None) -> None: ...

    def _report_backlog(self, peer: _Peer) -> None: ...


class _Peer(asyncio.Protocol):
    """One connection: forwards the transport's callbacks to the server."""

    __slots__ = (
        "_server",
        "accepted",
        "backlog",
        "close_reason",
        "close_timer",
        "closing",
        "conn",
        "last_data",
        "last_pump",
        "listener",
        "peer",
        "reading_paused",
        "transport",
        "writing_paused",
    )

    def __init__(self, server: PeerOwner, listener: Listener) -> None:
        self._server = server
        self.listener = listener
        self.conn = -1
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        #: Whether the first CONNACK has gone out (logged once).
        self.accepted = False
        #: The broker asked to close, or the adapter dropped the connection.
        self.closing = False
        self.close_reason: str | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.writing_paused = False
        self.reading_paused = False
        #: What Broker.output_backlog was last told.
        self.backlog = 0
        #: The last chunk written and the number of the flush that wrote it,
        #: to name the goodbye when the broker closes the connection.
        self.last_data = b""
        self.last_pump = -1

    # -- what the server calls ---------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write MQTT bytes to the peer."""
        assert self.transport is not None
        self.transport.write(data)

    def close_transport(self) -> None:
        """Close once the buffered output is sent."""
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._server._connection_made(self, transport)

    def data_received(self, data: bytes) -> None:
        self._server._data_received(self, data)

    def eof_received(self) -> bool:
        self._server._eof_received(self)
        # Close our side too: MQTT has no use for a half-open connection,
        # and everything the broker had to say was written just now.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connection_lost(self, exc)

    def pause_writing(self) -> None:
        # The client is not reading: stop reading its requests until it does,
        # and let the core hold what is routed to it meanwhile.
        self.writing_paused = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
            self.reading_paused = True
        self._server._report_backlog(self)

    def resume_writing(self) -> None:
        self.writing_paused = False
        transport = self.transport
        if self.reading_paused and transport is not None and not transport.is_closing():
            transport.resume_reading()
        self.reading_paused = False
        self._server._report_backlog(self)
