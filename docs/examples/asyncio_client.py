"""The asyncio client: subscribe, publish, read messages, a subscription of its own.

Connects to the broker at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883).
"""

from __future__ import annotations

import asyncio
import os

from mqttproto.adapters.asyncio import Client

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))


async def main() -> None:
    async with Client(HOST, PORT, client_id="kitchen") as client:
        granted = await client.subscribe("sensors/#", qos=1)  # one code per filter
        print("granted:", [code.name for code in granted])
        ack = await client.publish(
            "sensors/kitchen",
            b"21.5",
            qos=1,  # returns once the PUBACK is in
            message_expiry_interval=60,  # MQTT 5 properties are keyword arguments
            user_properties=[("unit", "C")],
        )
        assert ack is not None
        print("acknowledged:", ack.reason_code.name)
        async for message in client.messages():
            print("message:", message.topic, message.payload, message.qos, message.retain)
            break

        # A subscription claims the messages its filter matches: they go to
        # this iterator, not to messages().
        async with client.subscription("alerts/+", qos=1) as alerts:
            await client.publish("alerts/door", b"open", qos=1)
            async for message in alerts:
                print("alert:", message.topic, message.payload)
                break


asyncio.run(main())
