"""A client that reconnects by itself and resumes its session.

Connects to the broker at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883).
"""

from __future__ import annotations

import asyncio
import os
import random

from mqttproto.adapters.asyncio import Client, ReconnectPolicy

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))

# Attempt n waits min(30, 0.5 * 2**n) seconds, less up to half of it at random.
policy = ReconnectPolicy(initial=0.5, maximum=30, factor=2, jitter=0.5)


async def main() -> None:
    async with Client(
        HOST,
        PORT,
        client_id="meter-7",
        session_expiry_interval=3600,  # the server keeps the session for an hour
        reconnect=policy,
        rng=random.Random(),  # the jitter's random numbers; seed it to replay them
    ) as client:
        assert client.connack is not None
        print("session present:", client.connack.session_present)
        await client.subscribe("meters/7/commands", qos=1)
        # Made while the connection is down, this would wait for the next one.
        await client.publish("meters/7/reading", b"1234.5", qos=1)
        print("published")


asyncio.run(main())
