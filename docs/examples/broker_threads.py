"""Serve the broker from one background I/O thread until SIGINT or SIGTERM.

Listens on MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883; 0 lets the system
choose a port) and, with MQTT_SOCKET set, on that Unix socket too.
"""

from __future__ import annotations

import os
import signal
import threading

from mqttproto.adapters.threads import BrokerServer, Listener

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))
SOCKET = os.environ.get("MQTT_SOCKET")

listeners = [Listener(host=HOST, port=PORT)]
if SOCKET:
    listeners.append(Listener(transport="unix", path=SOCKET))

stop = threading.Event()
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda signum, frame: stop.set())

with BrokerServer(listeners=listeners) as server:
    print("listening on port", server.port, flush=True)
    stop.wait()
# Leaving the block: DISCONNECT 0x8B to MQTT 5 clients, all closed.
print("stopped")
