"""A complete MQTT client over a socket and a selector: the sans-IO loop.

Run it against the broker at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883).
"""

from __future__ import annotations

import os
import selectors
import socket
import time

from mqttproto import ClientConnection, RemoteProtocolError
from mqttproto.events import ConnectionAccepted, MessageReceived, SubscribeAcknowledged


def run(host: str = "127.0.0.1", port: int = 1883, timeout: float = 10.0) -> list[bytes]:
    """Subscribe to ``demo/hello``, publish to it at QoS 1, return what came back."""
    conn = ClientConnection()
    sock = socket.create_connection((host, port), timeout=timeout)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    conn.connect(client_id="sans-io-demo", keep_alive=30)
    received: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not conn.closed and time.monotonic() < deadline:
        sock.sendall(conn.data_to_send(time.monotonic()))
        timer = conn.get_timer() or deadline  # keep-alive: wake up in time to ping
        if selector.select(max(0.0, min(timer, deadline) - time.monotonic())):
            data = sock.recv(65536)
            try:
                if data:
                    conn.receive_data(data, time.monotonic())
                else:
                    conn.receive_eof(time.monotonic())
            except RemoteProtocolError:
                pass  # the goodbye is queued and the connection is closed
        conn.handle_timer(time.monotonic())
        for event in conn.events():
            if isinstance(event, ConnectionAccepted):
                conn.subscribe("demo/hello")
            elif isinstance(event, SubscribeAcknowledged):
                conn.publish("demo/hello", b"hello, sans-IO", qos=1)
            elif isinstance(event, MessageReceived):
                received.append(event.payload)
                conn.disconnect()
    sock.sendall(conn.data_to_send(time.monotonic()))
    sock.close()
    return received


if __name__ == "__main__":
    host = os.environ.get("MQTT_HOST", "127.0.0.1")
    port = int(os.environ.get("MQTT_PORT", "1883"))
    print("received:", run(host, port))
