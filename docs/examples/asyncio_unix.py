"""The asyncio client over a Unix socket: the host is the socket's path.

Connects to MQTT_SOCKET (default /run/mqttproto/mqtt.sock).
"""

from __future__ import annotations

import asyncio
import os

from mqttproto.adapters.asyncio import Client

SOCKET = os.environ.get("MQTT_SOCKET", "/run/mqttproto/mqtt.sock")


async def main() -> None:
    async with Client(SOCKET, transport="unix") as client:
        await client.subscribe("unix/hello", qos=1)
        await client.publish("unix/hello", b"over a Unix socket", qos=1)
        async for message in client.messages():
            print("received:", message.topic, message.payload.decode())
            break


asyncio.run(main())
