"""What ``mqttproto pub``, ``sub`` and ``rr`` will send, checked before they
connect: topics and filters (with mosquitto's messages), ``-D`` properties,
and the CONNECT, PUBLISH and SUBSCRIBE they make, encoded once by the
library's own codec so that every rule it enforces is a one-line error here
rather than an exception inside the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._cli_errors import CommandError
from .codec import encode_packet
from .enums import ProtocolVersion, QoS
from .errors import MQTTError
from .packets import ConnectPacket, PublishPacket, SubscribePacket, Subscription, Will
from .topics import validate_topic_filter, validate_topic_name

__all__ = [
    "check_connect",
    "check_filter",
    "check_publish",
    "check_subscribe",
    "check_topic",
    "make_will",
    "parse_properties",
]


def _bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return text == "1"


def _bytes(text: str) -> bytes:
    return text.encode()


#: ``-D`` properties: command -> property name -> (keyword, value parser).
_Property = tuple[str, Callable[[str], Any]]
_COMMON_MESSAGE: dict[str, _Property] = {
    "payload-format-indicator": ("payload_format_indicator", int),
    "message-expiry-interval": ("message_expiry_interval", int),
    "content-type": ("content_type", str),
    "response-topic": ("response_topic", str),
    "correlation-data": ("correlation_data", _bytes),
}
_PROPERTIES: dict[str, dict[str, _Property]] = {
    "connect": {
        "session-expiry-interval": ("session_expiry_interval", int),
        "receive-maximum": ("receive_maximum", int),
        "maximum-packet-size": ("maximum_packet_size", int),
        "topic-alias-maximum": ("topic_alias_maximum", int),
        "request-response-information": ("request_response_information", _bool),
        "request-problem-information": ("request_problem_information", _bool),
        "authentication-method": ("authentication_method", str),
        "authentication-data": ("authentication_data", _bytes),
    },
    "publish": {**_COMMON_MESSAGE, "topic-alias": ("topic_alias", int)},
    "subscribe": {"subscription-identifier": ("subscription_identifier", int)},
    "unsubscribe": {},
    "will": {**_COMMON_MESSAGE, "will-delay-interval": ("will_delay_interval", int)},
}

#: How mosquitto names each command in "Error in ... properties".
_PACKET_NAMES = {
    "connect": "CONNECT",
    "publish": "PUBLISH",
    "subscribe": "SUBSCRIBE",
    "unsubscribe": "UNSUBSCRIBE",
    "will": "Will",
}


def parse_properties(
    arguments: list[list[str]], version: ProtocolVersion
) -> dict[str, dict[str, Any]]:
    """``-D COMMAND NAME VALUE`` arguments as keyword arguments per command.

    ``-D publish topic-alias N`` is checked (1 to 65535) and then left out:
    the client gives repeated topics an alias of its own choosing, within
    the server's Topic Alias Maximum, which is what mosquitto_pub uses the
    property for (``--repeat``, ``-l``).
    """
    found: dict[str, dict[str, Any]] = {}
    for words in arguments:
        if len(words) < 3:
            raise CommandError("Error: -D needs a command, a property and a value.")
        command, name, *values = words
        if command not in _PROPERTIES:
            raise CommandError(f"Error: Invalid command {command!r} given in -D.")
        into = found.setdefault(command, {})
        if name == "user-property":
            if len(values) != 2:
                raise CommandError("Error: -D ... user-property needs a key and a value.")
            into.setdefault("user_properties", []).append((values[0], values[1]))
            continue
        known = _PROPERTIES[command]
        if name not in known:
            raise CommandError(f"Error: Invalid property {name!r} for command {command!r}.")
        if len(values) != 1:
            raise CommandError(f"Error: -D {command} {name} needs one value.")
        keyword, parse = known[name]
        try:
            into[keyword] = parse(values[0])
        except ValueError as exc:
            raise CommandError(f"Error: Invalid value for {name}: {exc}.") from None
    if found and version != ProtocolVersion.MQTT_5_0:
        raise CommandError("Error: -D properties need MQTT 5 (-V 5).")
    for properties in found.values():
        if "user_properties" in properties:
            properties["user_properties"] = tuple(properties["user_properties"])
    alias = found.get("publish", {}).pop("topic_alias", None)
    if alias is not None and not 1 <= alias <= 65535:
        raise CommandError(
            f"Error in PUBLISH properties: topic-alias must be between 1 and 65535, not {alias}."
        )
    return found


def _reason(exc: BaseException) -> str:
    return str(exc).rstrip(".") or type(exc).__name__


def check_topic(topic: str, kind: str = "publish") -> None:
    """A topic name to publish to (``kind``: publish, will, response).

    :raises CommandError: mosquitto's message for a wildcard, ours otherwise.
    """
    try:
        validate_topic_name(topic)
    except MQTTError as exc:
        if "+" in topic or "#" in topic:
            raise CommandError(
                f"Error: Invalid {kind} topic '{topic}', does it contain '+' or '#'?"
            ) from None
        raise CommandError(f"Error: Invalid {kind} topic '{topic}': {_reason(exc)}.") from None


def check_filter(topic_filter: str, kind: str = "subscription") -> None:
    """A topic filter (``kind``: subscription, filter for ``-T``, unsubscribe)."""
    try:
        validate_topic_filter(topic_filter)
    except MQTTError as exc:
        if "+" in topic_filter or "#" in topic_filter:
            raise CommandError(
                f"Error: Invalid {kind} topic '{topic_filter}', are all '+' and '#' "
                "wildcards correct?"
            ) from None
        raise CommandError(
            f"Error: Invalid {kind} topic '{topic_filter}': {_reason(exc)}."
        ) from None


def _encode(packet: Any, version: ProtocolVersion, what: str) -> None:
    try:
        encode_packet(packet, version=version)
    except (MQTTError, ValueError, TypeError, OverflowError) as exc:
        raise CommandError(f"Error in {what}: {_reason(exc)}.") from None


def check_connect(
    *,
    version: ProtocolVersion,
    client_id: str,
    clean_start: bool,
    keep_alive: int,
    username: str | None,
    password: str | None,
    will: Will | None,
    properties: dict[str, Any],
) -> None:
    """Encode the CONNECT the client will send: its faults, before connecting."""
    base: dict[str, Any] = dict(
        client_id=client_id,
        protocol_version=version,
        clean_start=clean_start,
        keep_alive=keep_alive,
        username=username,
        password=None if password is None else password.encode(),
    )
    _encode(ConnectPacket(**base), version, "CONNECT")
    if will is not None:
        _encode(ConnectPacket(**base, will=will), version, "Will properties")
    try:
        packet = ConnectPacket(**base, will=will, **properties)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"Error in CONNECT properties: {_reason(exc)}.") from None
    _encode(packet, version, "CONNECT properties")


def make_will(
    topic: str, payload: str | None, qos: QoS, retain: bool, properties: dict[str, Any]
) -> Will:
    """The ``--will-*`` options as a :class:`Will`."""
    check_topic(topic, "will")
    try:
        return Will(topic, (payload or "").encode(), qos, retain, **properties)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"Error in Will properties: {_reason(exc)}.") from None


def check_publish(
    topic: str, qos: QoS, retain: bool, version: ProtocolVersion, properties: dict[str, Any]
) -> None:
    """Encode a PUBLISH with the ``-D publish`` properties (empty payload)."""
    try:
        packet = PublishPacket(topic, b"", qos, retain, False, 1 if qos else None, **properties)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"Error in PUBLISH properties: {_reason(exc)}.") from None
    _encode(packet, version, "PUBLISH properties")


def check_subscribe(
    filters: Iterable[str], qos: QoS, version: ProtocolVersion, properties: dict[str, Any]
) -> None:
    """Encode the SUBSCRIBE with the ``-D subscribe`` properties."""
    try:
        packet = SubscribePacket(
            1, tuple(Subscription(topic_filter, qos) for topic_filter in filters), **properties
        )
    except (TypeError, ValueError) as exc:
        raise CommandError(f"Error in SUBSCRIBE properties: {_reason(exc)}.") from None
    _encode(packet, version, "SUBSCRIBE properties")
