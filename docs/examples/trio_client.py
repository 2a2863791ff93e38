"""The trio client: the same API as asyncio's, with a nursery of its own.

Connects to the broker at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883).
Needs the trio extra.
"""

from __future__ import annotations

import os
import time

import trio

from mqttproto.adapters.trio import Client, MessageIterator

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))


async def answer(service: Client, requests: MessageIterator) -> None:
    async for request in requests:
        assert request.response_topic is not None
        await service.publish(
            request.response_topic,
            time.strftime("%H:%M:%S"),
            qos=1,
            correlation_data=request.correlation_data,
        )


async def main() -> None:
    async with Client(HOST, PORT, client_id="hall") as client:
        async with client.subscription("sensors/#", qos=1) as messages:
            await client.publish("sensors/hall", b"19.0", qos=1)
            async for message in messages:
                print("message:", message.topic, message.payload)
                break

        # A time service on a second connection, and a request to it.
        async with (
            Client(HOST, PORT, client_id="time-service") as service,
            service.subscription("services/time", qos=1) as requests,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(answer, service, requests)
            response = await client.request("services/time", b"", timeout=5)
            print("the time is", response.payload.decode())
            nursery.cancel_scope.cancel()


trio.run(main)
