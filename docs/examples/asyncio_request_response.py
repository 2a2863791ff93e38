"""MQTT 5 request/response with the asyncio client: a time service and a caller.

Connects to the broker at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from mqttproto.adapters.asyncio import Client, MessageIterator

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
    async with (
        Client(HOST, PORT, client_id="time-service") as service,
        Client(HOST, PORT, client_id="caller") as caller,
        service.subscription("services/time", qos=1) as requests,
    ):
        answering = asyncio.create_task(answer(service, requests))
        # Publishes with a response topic and fresh correlation data, and
        # waits for the matching response (TimeoutError after 5 s).
        response = await caller.request("services/time", b"", timeout=5)
        print("the time is", response.payload.decode(), "on", response.topic)
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering


asyncio.run(main())
