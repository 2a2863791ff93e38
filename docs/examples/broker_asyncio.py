"""Serve the broker from asyncio until SIGINT (Ctrl-C) or SIGTERM.

Listens on MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883; 0 lets the system
choose a port).
"""

from __future__ import annotations

import asyncio
import os
import signal

from mqttproto.adapters.asyncio import BrokerServer
from mqttproto.config import BrokerConfig

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with BrokerServer(host=HOST, port=PORT, config=BrokerConfig()) as server:
        print("listening on port", server.port, flush=True)  # the port the OS chose
        await stop.wait()
    # Leaving the block: shutdown, DISCONNECT 0x8B to MQTT 5 clients, all closed.
    print("stopped")


asyncio.run(main())
