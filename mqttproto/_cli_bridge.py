"""``[[bridge]]`` tables of ``mqttproto broker --config FILE``.

Each table is one :class:`~mqttproto.bridge.BridgeConfig`, with the same
names (``-`` or ``_`` between words)::

    [[bridge]]
    name = "central"
    address = ["mqtt1.example.com:8883", "mqtt2.example.com:8883"]
    topics = ["sensors/# out 1 edge/ site1/", "commands/# in 1"]
    cafile = "ca.pem"

File names are relative to the configuration file's folder. A mistake is
one line that names the bridge (or its position) and the entry, and the
broker does not start.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .bridge import BridgeConfig

__all__ = ["bridges_from_toml", "check_bridge_files"]


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("an integer")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("a number")
    return float(value)


def _timeouts(value: object) -> float | list[float]:
    # A number, or mosquitto's two values: [first delay, longest delay].
    if isinstance(value, list) and len(value) == 2:
        return [_number(item) for item in value]
    try:
        return _number(value)
    except TypeError:
        raise TypeError("a number, or [first, longest] in seconds") from None


def _strings(value: object) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise TypeError("a string or a list of strings")


def _lines(value: object) -> list[str]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise TypeError('a list of topic lines, such as ["sensors/# out 1"]')


#: key -> (check, whether it names a file).
_KEYS: dict[str, tuple[Callable[[object], Any], bool]] = {
    "name": (_str, False),
    "address": (_strings, False),
    "topics": (_lines, False),
    "client_id": (_str, False),
    "local_client_id": (_str, False),
    "username": (_str, False),
    "password": (_str, False),
    "local_username": (_str, False),
    "protocol_version": (_int, False),
    "clean_start": (_bool, False),
    "keep_alive": (_int, False),
    "try_private": (_bool, False),
    "notifications": (_bool, False),
    "notification_topic": (_str, False),
    "restart_timeout": (_timeouts, False),
    "restart_timeout_max": (_number, False),
    "tls": (_bool, False),
    "cafile": (_str, True),
    "certfile": (_str, True),
    "keyfile": (_str, True),
    "insecure": (_bool, False),
    "connect_timeout": (_number, False),
}
#: mosquitto's spellings of the same settings.
_ALIASES = {
    "addresses": "address",
    "remote_clientid": "client_id",
    "clientid": "client_id",
    "local_clientid": "local_client_id",
    "remote_username": "username",
    "remote_password": "password",
    "cleansession": "clean_start",
    "keepalive_interval": "keep_alive",
    "bridge_cafile": "cafile",
    "bridge_certfile": "certfile",
    "bridge_keyfile": "keyfile",
    "bridge_insecure": "insecure",
}


def _one(table: object, index: int, base: Path) -> BridgeConfig:
    if not isinstance(table, dict):
        raise ValueError(f"bridge #{index}: must be a table ([[bridge]])")
    name = table.get("name")
    label = f"bridge {name}" if isinstance(name, str) and name else f"bridge #{index}"
    values: dict[str, Any] = {}
    for key, value in table.items():
        field = key.replace("-", "_")
        field = _ALIASES.get(field, field)
        if field not in _KEYS:
            raise ValueError(f"{label}: unknown setting {key!r}")
        if field in values:
            raise ValueError(f"{label}: {key} is given twice")
        check, is_file = _KEYS[field]
        try:
            value = check(value)
        except TypeError as exc:
            raise ValueError(f"{label}: {key} must be {exc}, not {value!r}") from None
        if is_file:
            value = str(base / value)
        values[field] = value
    for needed in ("name", "address", "topics"):
        if needed not in values:
            raise ValueError(f"{label}: {needed} is missing")
    values["addresses"] = values.pop("address")
    timeouts = values.get("restart_timeout")
    if isinstance(timeouts, list):
        if "restart_timeout_max" in values:
            raise ValueError(f"{label}: restart_timeout has two values and restart_timeout_max")
        values["restart_timeout"], values["restart_timeout_max"] = timeouts
    try:
        return BridgeConfig(**values)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None


def bridges_from_toml(value: object, base: Path) -> list[BridgeConfig]:
    """The bridges of a configuration file's ``bridge`` array of tables.

    :raises ValueError: one line naming the bridge and what is wrong.
    """
    if not isinstance(value, list):
        raise ValueError("bridge must be an array of tables: write [[bridge]]")
    bridges = [_one(table, index, base) for index, table in enumerate(value, 1)]
    names: set[str] = set()
    client_ids: set[str] = set()
    for bridge in bridges:
        if bridge.name in names:
            raise ValueError(f"bridge {bridge.name}: another bridge has that name")
        names.add(bridge.name)
        for client_id in (bridge.client_id, bridge.local_client_id):
            if client_id in client_ids:
                raise ValueError(
                    f"bridge {bridge.name}: client id {client_id!r} is used by another bridge"
                )
            client_ids.add(client_id)
    return bridges


def check_bridge_files(bridges: list[BridgeConfig]) -> str | None:
    """Whether every bridge's TLS files can be used; the problem, one line, or None."""
    from .adapters._bridge import bridge_ssl_context

    for bridge in bridges:
        try:
            bridge_ssl_context(bridge)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return f"bridge {bridge.name}: TLS: {exc}"
    return None
