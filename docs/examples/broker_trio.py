"""Serve the broker from trio until SIGINT (Ctrl-C) or SIGTERM.

Listens on MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883; 0 lets the system
choose a port). Needs the trio extra.
"""

from __future__ import annotations

import os
import signal

import trio

from mqttproto.adapters.trio import serve

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))


async def main() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, HOST, PORT)
            print("listening on port", server.port, flush=True)
            async for _ in signals:
                break
            await server.close()  # DISCONNECT 0x8B to MQTT 5 clients, all closed
    print("stopped")


trio.run(main)
