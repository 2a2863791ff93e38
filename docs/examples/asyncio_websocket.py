"""The asyncio client over WebSocket (needs wsproto: the websocket extra).

Connects to ws://MQTT_HOST:MQTT_PORT/mqtt (default 127.0.0.1:8080); the
subprotocol is "mqtt", MQTT goes in binary frames. Add tls= for wss://.
"""

from __future__ import annotations

import asyncio
import os

from mqttproto.adapters.asyncio import Client

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "8080"))


async def main() -> None:
    async with Client(HOST, PORT, transport="websocket", websocket_path="/mqtt") as client:
        await client.subscribe("ws/hello", qos=1)
        await client.publish("ws/hello", b"over WebSocket", qos=1)
        async for message in client.messages():
            print("received:", message.topic, message.payload.decode())
            break


asyncio.run(main())
