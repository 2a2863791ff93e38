"""MQTT over WebSocket for the broker servers: the server side, sans-IO.

RFC 6455 through ``wsproto`` (the ``websocket`` extra); MQTT 5.0 section 6.
:class:`ServerWebSocket` is what every server adapter (asyncio, trio,
threads) puts between its socket and the broker: transport bytes in, MQTT
bytes out, and the frames to write in :meth:`ServerWebSocket.data_to_send`.
Imported only when a WebSocket listener starts.
"""

from __future__ import annotations

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

from ._listener import WEBSOCKET_SUBPROTOCOLS

__all__ = ["ServerWebSocket"]


class ServerWebSocket:
    """One server-side WebSocket carrying an MQTT byte stream.

    The opening handshake must ask for ``path`` (any path if None) and offer
    the ``mqtt`` subprotocol [MQTT-6.0.0-3] (or MQTT 3.1's ``mqttv3.1``);
    otherwise it is refused with HTTP 404 or 400 and :attr:`failure` says
    why. Every binary message's payload is stream bytes for the broker (an
    MQTT packet may span messages, or a message hold several [MQTT-6.0.0-2]);
    a text message is a protocol error (close code 1003) [MQTT-6.0.0-1].
    Pings are answered with pongs; a Close from the client is answered and
    sets :attr:`client_closed` (the end of its stream, as EOF is for TCP).

    After :meth:`receive`, the adapter writes :meth:`data_to_send`, hands the
    returned bytes to the broker, then closes the connection now if
    :attr:`failure` is set, or after its EOF handling if :attr:`client_closed`
    is.
    """

    __slots__ = ("_out", "_path", "_ws", "client_closed", "failure")

    def __init__(self, path: str | None = None) -> None:
        self._ws = WSConnection(ConnectionType.SERVER)
        self._path = path
        self._out = bytearray()
        #: Why the WebSocket failed (bad handshake, text message); close now.
        self.failure: str | None = None
        #: The close code of the client's Close, once it came.
        self.client_closed: int | None = None

    @property
    def is_open(self) -> bool:
        """The handshake is done and neither side has closed."""
        return self._ws.state is ConnectionState.OPEN

    @property
    def is_closed(self) -> bool:
        """Both Close frames have been exchanged: the TCP connection may close."""
        return self._ws.state is ConnectionState.CLOSED

    @property
    def awaiting_close(self) -> bool:
        """Our Close was sent and the client's answer has not come yet."""
        return self._ws.state is ConnectionState.LOCAL_CLOSING

    def data_to_send(self) -> bytes:
        """Handshake answers, pongs and Close frames waiting to be written."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def send(self, data: bytes) -> bytes:
        """MQTT bytes framed as a binary message (nothing unless open)."""
        if self._ws.state is ConnectionState.OPEN and data:
            self._out += self._ws.send(Message(data=data))
        return self.data_to_send()

    def close(self) -> bytes:
        """A Close (1000) to start the close handshake; b"" if not open.

        After it, wait for the client's Close (:attr:`is_closed`), bounded by
        the server's close timeout, then close TCP (RFC 6455 section 7.1.1).
        """
        if self._ws.state is ConnectionState.OPEN:
            self._out += self._ws.send(CloseConnection(code=1000))
        return self.data_to_send()

    def receive(self, data: bytes) -> bytes:
        """Transport bytes in, the MQTT bytes of the binary messages out.

        Nothing is returned after a failure or the client's Close.
        """
        if self.failure is not None or self.client_closed is not None:
            return b""
        ws = self._ws
        try:
            ws.receive_data(data)
            events = list(ws.events())
        except RemoteProtocolError as exc:
            # A bad opening handshake (or frame): answer it (400, 426) if we can.
            hint = exc.event_hint
            if isinstance(hint, RejectConnection) and ws.state is ConnectionState.CONNECTING:
                self._out += ws.send(hint)
            self.failure = f"bad WebSocket data: {exc}"
            return b""
        received = bytearray()
        for event in events:
            if isinstance(event, BytesMessage):
                received += event.data
            elif isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Ping):
                self._out += ws.send(event.response())
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._out += ws.send(event.response())
                self.client_closed = event.code
                break
            elif isinstance(event, TextMessage):
                self._out += ws.send(
                    CloseConnection(code=1003, reason="MQTT needs binary messages")
                )
                self.failure = "WebSocket text message (MQTT needs binary ones)"
                break
            if self.failure is not None:
                break
        return bytes(received)

    def _handshake(self, request: Request) -> None:
        path = request.target.split("?", 1)[0]
        if self._path is not None and path != self._path:
            self._out += self._ws.send(RejectConnection(status_code=404))
            self.failure = f"WebSocket path {path!r} is not {self._path!r}"
            return
        offered = [p for p in request.subprotocols if p.lower() in WEBSOCKET_SUBPROTOCOLS]
        if not offered:
            self._out += self._ws.send(RejectConnection(status_code=400))
            self.failure = f"WebSocket subprotocols {request.subprotocols} do not include mqtt"
            return
        self._out += self._ws.send(AcceptConnection(subprotocol=offered[0]))
