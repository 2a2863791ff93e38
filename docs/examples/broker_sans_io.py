"""The sans-IO Broker and two sans-IO clients, wired together in memory.

No socket and no thread: the loop below makes the calls a server makes
around the network, and a test could drive the clock instead.
"""

from __future__ import annotations

import time

from mqttproto import Broker, BrokerConfig, ClientConnection
from mqttproto.events import MessageReceived

broker = Broker(BrokerConfig(max_queued_messages=1000, sys_interval=10))
clients: dict[int, ClientConnection] = {}  # broker connection id -> its client


def now() -> float:
    return time.monotonic()  # any monotonic clock


def connect(client_id: str) -> ClientConnection:
    conn = broker.open_connection(now(), peer=f"memory/{client_id}", address="memory")
    client = clients[conn] = ClientConnection()
    client.connect(client_id=client_id)
    return client


def pump() -> None:
    """Carry bytes both ways until neither side has anything more to say."""
    moved = True
    while moved:
        moved = False
        for conn, client in list(clients.items()):
            data = client.data_to_send(now())
            if data:
                broker.receive_data(conn, data, now())  # never raises for a client's fault
                moved = True
        for conn, data in broker.flush(now()):  # every connection with output
            clients[conn].receive_data(data, now())
            moved = True
        for conn in broker.connections_to_close():  # written above; close, then tell
            clients.pop(conn).receive_eof(now())
            broker.connection_lost(conn, now())
        deadline = broker.get_timer()  # None: no timer
        if deadline is not None and deadline <= now():
            broker.handle_timer(now())  # keep-alive, expiry, $SYS, ...


sensor = connect("sensor")
display = connect("display")
pump()
display.subscribe("sensors/#")
pump()
sensor.publish("sensors/kitchen", b"21.5", qos=1)
pump()
for event in display.events():
    if isinstance(event, MessageReceived):
        print("display got", event.topic, event.payload)
print("subscribers of sensors/kitchen:", broker.subscribers("sensors/kitchen"))

broker.shutdown(now())  # MQTT 5 clients get DISCONNECT 0x8B
pump()
print("connections left:", broker.connection_count)
