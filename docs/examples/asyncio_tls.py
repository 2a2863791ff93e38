"""The asyncio client over TLS.

Connects to MQTT_HOST:MQTT_PORT (default 127.0.0.1:8883) and checks the
server's certificate against the CA certificates in MQTT_CAFILE (ca.pem).
For a server that asks for a client certificate, MQTT_CLIENT_CERTFILE names
a PEM file with the certificate and its private key.
"""

from __future__ import annotations

import asyncio
import os
import ssl

from mqttproto.adapters.asyncio import Client

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "8883"))
CAFILE = os.environ.get("MQTT_CAFILE", "ca.pem")
CLIENT_CERTFILE = os.environ.get("MQTT_CLIENT_CERTFILE")


async def main() -> None:
    context = ssl.create_default_context(cafile=CAFILE)
    if CLIENT_CERTFILE:
        context.load_cert_chain(CLIENT_CERTFILE)
    async with Client(HOST, PORT, tls=context) as client:
        await client.subscribe("tls/hello", qos=1)
        await client.publish("tls/hello", b"over TLS", qos=1)
        async for message in client.messages():
            print("received:", message.topic, message.payload.decode())
            break


asyncio.run(main())
