"""One broker on TCP, TLS with client certificates, WebSocket and a Unix socket.

Serves until SIGINT or SIGTERM. The environment says where (defaults in
brackets): MQTT_HOST [127.0.0.1], MQTT_PORT [1883], MQTT_TLS_PORT [8883],
MQTT_WS_PORT [8080], MQTT_SOCKET [/run/mqttproto/mqtt.sock]; and the TLS
files: MQTT_CERTFILE [server.pem], MQTT_KEYFILE [server.key], MQTT_CAFILE
[ca.pem], the CA that signs the client certificates. WebSocket needs the
websocket extra.
"""

from __future__ import annotations

import asyncio
import os
import signal

from mqttproto.adapters.asyncio import BrokerServer, Listener, server_ssl_context

env = os.environ.get
HOST = env("MQTT_HOST", "127.0.0.1")


async def main() -> None:
    tls = server_ssl_context(
        env("MQTT_CERTFILE", "server.pem"),
        env("MQTT_KEYFILE", "server.key"),
        cafile=env("MQTT_CAFILE", "ca.pem"),
        require_certificate=True,
    )
    listeners = [
        Listener(host=HOST, port=int(env("MQTT_PORT", "1883"))),
        # The client certificate's subject CN is the username (no password).
        Listener(
            host=HOST,
            port=int(env("MQTT_TLS_PORT", "8883")),
            ssl=tls,
            use_identity_as_username=True,
        ),
        Listener(transport="websocket", host=HOST, port=int(env("MQTT_WS_PORT", "8080"))),
        Listener(transport="unix", path=env("MQTT_SOCKET", "/run/mqttproto/mqtt.sock")),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with BrokerServer(listeners=listeners) as server:
        for endpoint in server.endpoints:  # where each listener listens
            print(f"listening on {endpoint} ({endpoint.listener.kind})", flush=True)
        await stop.wait()
    print("stopped")


asyncio.run(main())
