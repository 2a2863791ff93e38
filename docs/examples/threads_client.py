"""The blocking client: one background I/O thread, paho-style callbacks.

Connects to the broker at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883).
"""

from __future__ import annotations

import os
import time

from mqttproto.adapters.threads import Client
from mqttproto.events import MessageReceived

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))


def tell_the_time(service: Client, request: MessageReceived) -> None:
    # Runs in the service's I/O thread: publish() queues the answer and
    # returns at once (the other blocking methods may not be called here).
    if request.response_topic is not None:
        answer = time.strftime("%H:%M:%S")
        service.publish(
            request.response_topic, answer, qos=1, correlation_data=request.correlation_data
        )


with Client(HOST, PORT, client_id="time-service") as service:
    service.on_message = tell_the_time
    service.subscribe("services/time", qos=1, timeout=5)

    with Client(HOST, PORT, reconnect=True) as client:
        client.subscribe("sensors/#", qos=1, timeout=5)
        client.publish("sensors/kitchen", b"21.5", qos=1)  # blocks until PUBACK
        for message in client.messages(timeout=10):  # ends after 10 s of silence
            print("message:", message.topic, message.payload)
            break
        with client.subscription("alerts/#", qos=2) as alerts:
            client.publish("alerts/smoke", b"kitchen", qos=2)
            alert = alerts.get(timeout=5)  # None on timeout
            assert alert is not None
            print("alert:", alert.topic, alert.payload)
        response = client.request("services/time", b"", timeout=5)
        print("the time is", response.payload.decode())
