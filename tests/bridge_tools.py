"""What the bridge tests share: paho-mqtt clients that collect what they
receive, and ``[[bridge]]`` configuration files.

Every wait is bounded (``WAIT`` seconds); everything is on 127.0.0.1.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from interop import HOST, import_paho

WAIT = 15.0


class Paho:
    """A paho-mqtt client on a background thread; what it receives goes to a queue.

    ``messages`` holds ``(topic, payload, qos, retain)`` tuples.
    """

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        v5: bool = True,
        clean: bool = True,
        subscribe: Iterable[tuple[str, int]] = (),
    ) -> None:
        paho = import_paho()
        self._paho = paho
        protocol = paho.MQTTv5 if v5 else paho.MQTTv311
        kwargs: dict[str, Any] = {}
        if not v5:
            kwargs["clean_session"] = clean
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs
        )
        self.messages: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()
        self._events: queue.Queue[str] = queue.Queue()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda *args: self._events.put("connected")
        self.client.on_subscribe = lambda *args: self._events.put("subscribed")
        connect_args: dict[str, Any] = {}
        if v5:
            properties = paho.Properties(paho.PacketTypes.CONNECT)
            if not clean:
                properties.SessionExpiryInterval = 3600
            connect_args = {"clean_start": clean, "properties": properties}
        self.client.connect(HOST, port, keepalive=30, **connect_args)
        self.client.loop_start()
        self._wait("connected")
        for topic, qos in subscribe:
            self.client.subscribe(topic, qos)
            self._wait("subscribed")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.messages.put((message.topic, message.payload, message.qos, bool(message.retain)))

    def _wait(self, what: str) -> None:
        got = self._events.get(timeout=WAIT)
        assert got == what, (got, what)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait until the broker acknowledged (QoS 1/2)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published(), f"{topic} not acknowledged within {WAIT} s"

    def expect(self, count: int = 1) -> list[tuple[str, bytes, int, bool]]:
        """The next ``count`` messages (at most WAIT seconds for each)."""
        return [self.messages.get(timeout=WAIT) for _ in range(count)]

    def until(self, topic: str, payload: bytes) -> list[tuple[str, bytes, int, bool]]:
        """Every message up to and including ``(topic, payload)``, a bounded number."""
        seen = []
        for _ in range(1000):
            message = self.messages.get(timeout=WAIT)
            seen.append(message)
            if message[:2] == (topic, payload):
                return seen
        raise AssertionError(f"{topic} {payload!r} not received; got {seen[:20]}")

    def until_all(self, wanted: set[tuple[str, bytes]]) -> list[tuple[str, bytes, int, bool]]:
        """Every message until each of ``wanted`` (topic, payload) has come, a bounded number."""
        seen = []
        missing = set(wanted)
        for _ in range(1000):
            message = self.messages.get(timeout=WAIT)
            seen.append(message)
            missing.discard(message[:2])
            if not missing:
                return seen
        raise AssertionError(f"{missing} not received; got {seen[:20]}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Paho:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(value)


def bridge_config(path: Path, *bridges: dict[str, object], **settings: object) -> Path:
    """Write a broker TOML file with these top-level settings and ``[[bridge]]`` tables."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
    for bridge in bridges:
        lines.append("[[bridge]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in bridge.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def state_topic(client_id: str) -> str:
    return f"$SYS/broker/connection/{client_id}/state"
