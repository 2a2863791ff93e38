"""MQTT over WebSocket for :class:`~mqttproto.adapters.asyncio.BrokerServer`.

The asyncio protocol around the sans-IO :class:`._websocket_server.ServerWebSocket`
(which has the rules: path, subprotocol, binary messages only, pings,
the close handshake). Imported only when a WebSocket listener starts.
"""

from __future__ import annotations

import logging

from ._asyncio_peers import PeerOwner, _Peer
from ._listener import Listener
from ._websocket_server import ServerWebSocket

__all__ = ["_WebSocketPeer"]

logger = logging.getLogger("mqttproto.broker")


class _WebSocketPeer(_Peer):
    """MQTT over WebSocket: the handshake, then binary messages both ways.

    When the broker closes the connection, a Close (1000) is sent and the
    TCP connection closed once the client answers it (or after the server's
    ``close_timeout``).
    """

    __slots__ = ("_ws",)

    def __init__(self, server: PeerOwner, listener: Listener) -> None:
        super().__init__(server, listener)
        self._ws = ServerWebSocket(listener.websocket_path)

    def send(self, data: bytes) -> None:
        self._write(self._ws.send(data))

    def close_transport(self) -> None:
        if self._ws.is_open:
            self._write(self._ws.close())
        elif self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        received = ws.receive(data)
        self._write(ws.data_to_send())
        if received and not self.closing:
            self._server._data_received(self, received)
        if ws.failure is not None:
            self._fail(ws.failure)
        elif ws.client_closed is not None:
            if self.close_reason is None and not self.closing:
                self.close_reason = f"WebSocket closed by the client (code {ws.client_closed})"
            # The end of the client's stream, as EOF is for TCP.
            self._server._eof_received(self)
            if self.transport is not None:
                self.transport.close()
        elif self.closing and ws.is_closed and self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        """Close after a WebSocket-level error (the broker hears connection_lost)."""
        logger.warning("connection %d from %s: %s", self.conn, self.peer, reason)
        self.closing = True
        if self.close_reason is None:
            self.close_reason = reason
        if self.transport is not None:
            self.transport.close()
