"""``$SYS`` as mosquitto 2.0 publishes it: the names dashboards read, with
mosquitto's units, seen by a paho-mqtt subscriber of a broker process, and
the numbers after known traffic.

MOSQUITTO_SYS is what ``mosquitto`` 2.0.11 published with ``sys_interval 1``
(``mosquitto_sub -t '$SYS/#' -v``), less ``heap/current`` and
``heap/maximum``, which a Python process cannot report.
"""

from __future__ import annotations

import queue
import re
import time
from typing import Any

from interop import HOST
from test_http_ops import paho_client, subscribe
from test_interop_broker import WAIT, ProcessBroker

from mqttproto.broker import Broker
from mqttproto.config import BrokerConfig

LOADS = [
    f"load/{what}/{window}"
    for what in (
        "bytes/received",
        "bytes/sent",
        "connections",
        "messages/received",
        "messages/sent",
        "publish/dropped",
        "publish/received",
        "publish/sent",
        "sockets",
    )
    for window in ("1min", "5min", "15min")
]
MOSQUITTO_SYS = {
    f"$SYS/broker/{name}"
    for name in [
        "bytes/received",
        "bytes/sent",
        "clients/active",
        "clients/connected",
        "clients/disconnected",
        "clients/expired",
        "clients/inactive",
        "clients/maximum",
        "clients/total",
        *LOADS,
        "messages/received",
        "messages/sent",
        "messages/stored",
        "publish/messages/dropped",
        "publish/messages/received",
        "publish/messages/sent",
        "retained messages/count",
        "shared_subscriptions/count",
        "store/messages/count",
        "subscriptions/count",
        "uptime",
        "version",
    ]
}


def test_sys_tree_has_mosquittos_names_and_units() -> None:
    assert HOST == "127.0.0.1"
    with ProcessBroker("--sys-interval", "1") as broker:
        with (
            paho_client(broker, "watcher") as (client, messages),
            paho_client(broker, "pub") as (pub, _),
        ):
            subscribe(client, ("$SYS/#", 0), ("x/#", 0))
            for _ in range(3):
                pub.publish("x/y", b"abc", qos=0)
            seen: dict[str, str] = {}
            deadline = time.monotonic() + WAIT
            # Until an update after the traffic has come for every name.
            while time.monotonic() < deadline and not (
                set(seen) >= MOSQUITTO_SYS
                and int(seen["$SYS/broker/publish/messages/received"]) >= 3
                and seen["$SYS/broker/subscriptions/count"] == "2"
            ):
                try:
                    message: Any = messages.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
                seen[message.topic] = message.payload.decode()
        assert set(seen) >= MOSQUITTO_SYS, sorted(MOSQUITTO_SYS - set(seen))
        assert re.fullmatch(r"\d+ seconds", seen["$SYS/broker/uptime"])
        assert seen["$SYS/broker/version"].startswith("mqttproto version ")
        for name in LOADS:
            assert re.fullmatch(r"\d+\.\d\d", seen[f"$SYS/broker/{name}"]), name
        assert seen["$SYS/broker/clients/connected"] == "2"
        assert seen["$SYS/broker/clients/maximum"] == "2"
        assert int(seen["$SYS/broker/publish/messages/received"]) == 3
        assert int(seen["$SYS/broker/bytes/received"]) > 3 * len(b"x/yabc")
        assert int(seen["$SYS/broker/subscriptions/count"]) == 2
        assert broker.stop() == 0


def test_load_averages_are_mosquittos_per_minute_rates() -> None:
    broker = Broker(BrokerConfig())
    broker.publish("warm/up", b"", now=0.0)
    broker.sys_topics(0.0)
    broker.messages_received += 120  # two a second for the next minute
    topics = broker.sys_topics(60.0)
    # One minute at 120/min: the 1-minute average is 120 * (1 - e^-1).
    assert topics["$SYS/broker/load/messages/received/1min"] == "75.85"
    assert topics["$SYS/broker/load/messages/received/5min"] == "21.75"
    assert topics["$SYS/broker/load/messages/received/15min"] == "7.74"
    assert topics["$SYS/broker/uptime"] == "60 seconds"
