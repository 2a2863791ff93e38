"""MQTT over WebSocket for :class:`~mqttproto.adapters.asyncio.BrokerServer`.

RFC 6455 through ``wsproto`` (the ``websocket`` extra); MQTT 5.0 section 6.
Imported only when a WebSocket listener starts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from ._asyncio_peers import _Peer
from ._listener import WEBSOCKET_SUBPROTOCOLS, Listener

if TYPE_CHECKING:
    from ._asyncio_server import BrokerServer

__all__ = ["_WebSocketPeer"]

logger = logging.getLogger("mqttproto.broker")


class _WebSocketPeer(_Peer):
    """MQTT over WebSocket: the handshake, then binary messages both ways.

    The opening handshake must ask for :attr:`Listener.websocket_path` and
    offer the ``mqtt`` subprotocol [MQTT-6.0.0-3] (or MQTT 3.1's
    ``mqttv3.1``); otherwise it is refused with HTTP 404 or 400 and the
    connection closed. Every binary message's payload goes to the broker as
    stream bytes (an MQTT packet may span messages, or a message hold several
    [MQTT-6.0.0-2]); a text message is a protocol error (close code 1003)
    [MQTT-6.0.0-1]. Pings are answered with pongs. A Close from the client is
    answered and counts as the end of its stream; when the broker closes the
    connection, a Close (1000) is sent and the TCP connection closed once the
    client answers it (or after the server's ``close_timeout``).
    """

    __slots__ = ("_ws",)

    def __init__(self, server: BrokerServer, listener: Listener) -> None:
        super().__init__(server, listener)
        self._ws = WSConnection(ConnectionType.SERVER)

    def send(self, data: bytes) -> None:
        if self._ws.state is ConnectionState.OPEN:
            self._write(self._ws.send(Message(data=data)))

    def close_transport(self) -> None:
        if self._ws.state is ConnectionState.OPEN:
            # Close handshake: wait for the client's Close (bounded by the
            # server's close timer), then close TCP (RFC 6455 section 7.1.1).
            self._write(self._ws.send(CloseConnection(code=1000)))
        elif self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        try:
            ws.receive_data(data)
            events = list(ws.events())
        except RemoteProtocolError as exc:
            # A bad opening handshake: answer it (400, 426) and close.
            hint = exc.event_hint
            if isinstance(hint, RejectConnection):
                self._write(ws.send(hint))
            self._fail(f"bad WebSocket handshake: {exc}")
            return
        for event in events:
            if isinstance(event, BytesMessage):
                if not self.closing:
                    self._server._data_received(self, bytes(event.data))
            elif isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Ping):
                self._write(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._closed_by_client(event)
                return
            elif isinstance(event, TextMessage):
                self._write(
                    ws.send(CloseConnection(code=1003, reason="MQTT needs binary messages"))
                )
                self._fail("WebSocket text message (MQTT needs binary ones)")
                return

    def _handshake(self, request: Request) -> None:
        path = request.target.split("?", 1)[0]
        wanted = self.listener.websocket_path
        if wanted is not None and path != wanted:
            self._write(self._ws.send(RejectConnection(status_code=404)))
            self._fail(f"WebSocket path {path!r} is not {wanted!r}")
            return
        offered = [p for p in request.subprotocols if p.lower() in WEBSOCKET_SUBPROTOCOLS]
        if not offered:
            self._write(self._ws.send(RejectConnection(status_code=400)))
            self._fail(f"WebSocket subprotocols {request.subprotocols} do not include mqtt")
            return
        self._write(self._ws.send(AcceptConnection(subprotocol=offered[0])))

    def _closed_by_client(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            self._write(self._ws.send(event.response()))
        if self.close_reason is None and not self.closing:
            self.close_reason = f"WebSocket closed by the client (code {event.code})"
        # The end of the client's stream, as EOF is for TCP.
        self._server._eof_received(self)
        if self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        """Close after a WebSocket-level error (the broker hears connection_lost)."""
        logger.warning("connection %d from %s: %s", self.conn, self.peer, reason)
        self.closing = True
        if self.close_reason is None:
            self.close_reason = reason
        if self.transport is not None:
            self.transport.close()
