"""MQTT over WebSocket for the clients: a byte-stream layer over ``wsproto``.

MQTT over WebSocket (MQTT 5.0 section 6) sends the MQTT byte stream in binary
data frames of a WebSocket with the subprotocol ``mqtt``; a frame may hold
any part of a packet. :class:`WebSocketLayer` is sans-IO like the rest: the
adapter passes it the transport's bytes and writes what it returns. The
framing is wsproto's (the ``websocket`` extra); none is written here.
"""

from __future__ import annotations

try:
    from wsproto import ConnectionType, WSConnection
    from wsproto.connection import ConnectionState
    from wsproto.events import (
        AcceptConnection,
        BytesMessage,
        CloseConnection,
        Ping,
        RejectConnection,
        Request,
        TextMessage,
    )
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "MQTT over WebSocket needs the wsproto package: pip install 'mqttproto[websocket]'"
    ) from exc

__all__ = ["WebSocketLayer"]

SUBPROTOCOL = "mqtt"


class WebSocketLayer:
    """The client side of one WebSocket carrying an MQTT byte stream."""

    def __init__(self, host: str, path: str = "/mqtt") -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._out = bytearray(
            self._ws.send(Request(host=host, target=path, subprotocols=[SUBPROTOCOL]))
        )
        self.open = False
        self.closed = False

    def data_to_send(self) -> bytes:
        """Handshake, pong and close frames waiting to be written."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def send(self, data: bytes) -> bytes:
        """Frame MQTT bytes (and anything else pending) for the transport."""
        if self.open and not self.closed and data:
            self._out += self._ws.send(BytesMessage(data=data))
        return self.data_to_send()

    def receive(self, data: bytes) -> bytes:
        """Transport bytes in, MQTT bytes out (b"" at EOF: ``data`` empty).

        :raises ConnectionRefusedError: the server refused the upgrade or
            did not agree to the ``mqtt`` subprotocol.
        """
        ws = self._ws
        ws.receive_data(data or None)
        received = bytearray()
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                if event.subprotocol != SUBPROTOCOL:
                    self.closed = True
                    raise ConnectionRefusedError(
                        f"the server chose subprotocol {event.subprotocol!r}, not 'mqtt'"
                    )
                self.open = True
            elif isinstance(event, RejectConnection):
                self.closed = True
                raise ConnectionRefusedError(f"HTTP status {event.status_code}")
            elif isinstance(event, BytesMessage):
                received += event.data
            elif isinstance(event, TextMessage):
                # MQTT uses binary frames only [MQTT-6.0.0-1]: a text frame ends it.
                self.closed = True
            elif isinstance(event, Ping):
                self._out += ws.send(event.response())
            elif isinstance(event, CloseConnection):
                if ws.state is not ConnectionState.CLOSED:
                    self._out += ws.send(event.response())
                self.closed = True
        if not data:
            self.closed = True
        return bytes(received)
