"""Every :class:`~mqttproto.config.BrokerConfig` setting on the broker's
command line and in its TOML file.

The flags are made from the fields of ``BrokerConfig``, one for each, named
after it (``max_queued_bytes`` is ``--max-queued-bytes``, and the TOML key
``max_queued_bytes`` or ``max-queued-bytes``), so that a limit exists on the
command line as soon as it exists in the library, with the same name, the
same default and the same check. :data:`HELP` holds the one line of help of
each (a test makes sure every field has one); the full meaning is in the
``BrokerConfig`` reference. A setting that may be "no limit" (``None`` in
Python) takes ``none``, on the command line and as a TOML string.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import attrs

from .config import BrokerConfig

__all__ = [
    "ALIASES",
    "HELP",
    "NO_LIMIT",
    "TOML_ALIASES",
    "add_config_arguments",
    "config_checks",
    "config_from",
]


class _NoLimit:
    """``none`` as given: told apart from a setting not given (None)."""

    def __repr__(self) -> str:
        return "none"


#: What ``none`` reads as, until :func:`config_from` makes it None.
NO_LIMIT: Any = _NoLimit()

#: field -> (metavar, help). Units in the metavar; defaults are added from
#: BrokerConfig itself.
HELP: dict[str, tuple[str, str]] = {
    "max_packet_size": ("BYTES", "largest packet accepted from a client"),
    "max_buffered_input": ("BYTES", "bytes of large incomplete packets held across clients"),
    "receive_maximum": ("N", "unacknowledged QoS 1/2 PUBLISH a client may have with the broker"),
    "topic_alias_maximum": ("N", "topic aliases a client may define (0: none)"),
    "maximum_qos": ("QOS", "highest QoS accepted and granted (0, 1 or 2)"),
    "retain_available": ("", "accept retained messages"),
    "wildcard_subscription_available": ("", "accept wildcard subscriptions"),
    "shared_subscription_available": ("", "accept shared subscriptions ($share/...)"),
    "subscription_identifiers_available": ("", "accept subscription identifiers"),
    "max_inflight_messages": ("N", "QoS 1/2 messages in flight to one client at once"),
    "max_queued_messages": ("N", "messages waiting for one session"),
    "max_queued_bytes": ("BYTES", "bytes of the messages waiting for one session"),
    "memory_limit": (
        "BYTES",
        "broker-wide bytes of queued and in-flight messages (each counted once); "
        "readers that are behind are held back past it",
    ),
    "queue_qos0_offline": (
        "",
        "queue QoS 0 messages for a persistent session whose client is away",
    ),
    "max_subscriptions_per_session": ("N", "subscriptions one session may hold"),
    "max_filters_per_subscribe": ("N", "topic filters one SUBSCRIBE may carry"),
    "max_topic_levels": ("N", "levels of a topic name or filter"),
    "max_topic_length": ("BYTES", "UTF-8 bytes of a topic name or filter"),
    "max_user_properties": ("N", "user properties one packet may carry"),
    "max_user_property_bytes": ("BYTES", "UTF-8 bytes of the user properties of one packet"),
    "max_retained_messages": ("N", "retained messages kept"),
    "max_retained_bytes": ("BYTES", "bytes of the retained messages kept"),
    "max_retained_messages_per_client": ("N", "retained messages one client id may have set"),
    "max_retained_bytes_per_client": ("BYTES", "bytes of the retained messages of one client id"),
    "max_connections": ("N", "network connections open at once"),
    "max_client_id_length": ("BYTES", "longest client identifier (at least 23)"),
    "min_keep_alive": ("SECONDS", "shortest keep-alive a client may use"),
    "max_keep_alive": (
        "SECONDS",
        "longest keep-alive a client may use (0 counts as longer): MQTT 5 clients are told "
        "it as Server Keep Alive, 3.x clients asking more are refused (return code 2); "
        "0 here: no maximum",
    ),
    "max_unsent_bytes": (
        "BYTES",
        "output one connection may have unwritten before its QoS 0 messages are dropped",
    ),
    "connect_timeout": ("SECONDS", "time a new connection has to send CONNECT"),
    "server_keep_alive": ("SECONDS", "keep-alive imposed on MQTT 5 clients"),
    "max_session_expiry_interval": (
        "SECONDS",
        "longest session expiry granted; 3.x persistent sessions expire after it too",
    ),
    "session_identity_mismatch": (
        "{refuse,discard}",
        "a CONNECT for a client id whose session another user made: refuse it (0x87), "
        "or discard that session",
    ),
    "deny_reason": (
        "{not-authorized,unspecified}",
        "what an MQTT 5 client is told when the ACL refuses a subscription or a QoS 1/2"
        " message: 0x87, or 0x80 (which does not reveal why)",
    ),
    "auto_topic_alias": ("", "give MQTT 5 clients that accept them topic aliases"),
    "auto_topic_alias_min_length": ("CHARS", "shortest topic given a topic alias"),
    "auto_topic_alias_limit": ("N", "topic aliases per connection, at most"),
    "sys_interval": ("SECONDS", "publish $SYS statistics this often"),
    "route_cache_size": ("N", "topics whose routing is cached"),
    "max_pending_authentications": (
        "N",
        "password checks waiting at once; past it a CONNECT is refused at once "
        "(0x89 Server busy, return code 3)",
    ),
    "auth_failure_delay": (
        "SECONDS",
        "after a failed authentication, the next one from that address waits this long, "
        "doubling with each further failure",
    ),
    "auth_failure_max_delay": (
        "SECONDS",
        "the longest such delay (keep it below the connect timeout)",
    ),
    "auth_failure_decay": ("SECONDS", "one failure of an address is forgotten this often"),
    "auth_failure_addresses": ("N", "addresses whose failures are remembered, oldest out first"),
}

#: Other spellings a mosquitto user knows: field -> extra flags (and, without
#: the dashes, extra TOML keys: ``max_keepalive = 60``).
ALIASES: dict[str, tuple[str, ...]] = {
    "max_packet_size": ("--message-size-limit",),
    "max_keep_alive": ("--max-keepalive",),
}

#: TOML key (underscores) -> the field it is another name of.
TOML_ALIASES: dict[str, str] = {
    flag.removeprefix("--").replace("-", "_"): name
    for name, flags in ALIASES.items()
    for flag in flags
}

#: Fields that take one of a few words: field -> the words.
_CHOICES: dict[str, tuple[str, ...]] = {
    "session_identity_mismatch": ("refuse", "discard"),
    "deny_reason": ("not-authorized", "unspecified"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(kind: type, optional: bool) -> Callable[[str], Any]:
    """An argparse type: an int or float, or ``none`` where None is allowed."""

    def parse(text: str) -> Any:
        if optional and text.strip().lower() == "none":
            return NO_LIMIT
        try:
            return kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"must be {what}{' or none' if optional else ''}, not {text!r}"
            ) from None

    return parse


def _kind(field: attrs.Attribute[Any]) -> tuple[type, bool]:
    """``(int/float/bool/str, whether None is allowed)`` from the annotation."""
    annotation = str(field.type).replace(" ", "")
    optional = annotation.endswith("|None")
    base = annotation.removesuffix("|None")
    kinds: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
    if base not in kinds:
        raise TypeError(f"BrokerConfig.{field.name}: no command line form for {field.type}")
    return kinds[base], optional


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024)} MiB"
    return str(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per BrokerConfig field, in a group of its own (default: not given)."""
    group = parser.add_argument_group(
        "limits and switches", "every BrokerConfig setting (see the broker guide)"
    )
    for field in attrs.fields(BrokerConfig):
        name = field.name
        metavar, text = HELP[name]
        kind, optional = _kind(field)
        flags = [_flag(name), *ALIASES.get(name, ())]
        help_text = f"{text} (default: {_default_text(field.default)})"
        if kind is bool:
            group.add_argument(
                *flags,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif kind is str:
            group.add_argument(
                *flags, dest=name, choices=_CHOICES[name], default=None, help=help_text
            )
        else:
            group.add_argument(
                *flags,
                dest=name,
                type=_number(kind, optional),
                metavar=metavar,
                default=None,
                help=help_text,
            )


def _toml_check(kind: type, optional: bool, name: str) -> Callable[[object], Any]:
    """How a TOML value of this field is checked (TypeError says what it must be)."""

    def check(value: object) -> Any:
        if optional and isinstance(value, str) and value.lower() == "none":
            return NO_LIMIT
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise TypeError("true or false")
        if kind is str:
            if isinstance(value, str) and value in _CHOICES[name]:
                return value
            raise TypeError(" or ".join(repr(c) for c in _CHOICES[name]))
        what = ("an integer" if kind is int else "a number") + (' or "none"' if optional else "")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(what)
        if kind is int and not isinstance(value, int):
            raise TypeError(what)
        return kind(value)

    return check


def config_checks() -> dict[str, Callable[[object], Any]]:
    """field -> the check of its TOML value, for the broker's settings table."""
    checks = {}
    for field in attrs.fields(BrokerConfig):
        kind, optional = _kind(field)
        checks[field.name] = _toml_check(kind, optional, field.name)
    return checks


def config_from(settings: argparse.Namespace) -> BrokerConfig:
    """The BrokerConfig the settings ask for; a setting not given (None)
    keeps the BrokerConfig default, and ``none`` (:data:`NO_LIMIT`) is None.

    :raises ValueError: a value BrokerConfig refuses (the message names it).
    """
    values: dict[str, Any] = {}
    for field in attrs.fields(BrokerConfig):
        value = getattr(settings, field.name, None)
        if value is not None:
            values[field.name] = None if value is NO_LIMIT else value
    keep_alive = values.get("max_keep_alive")
    # 0 is mosquitto's "no maximum" (keep-alive 0 allowed), and the config's.
    if isinstance(keep_alive, int) and not 0 <= keep_alive <= 65535:
        raise ValueError(
            f"max_keep_alive must be between 0 (no maximum) and 65535, not {keep_alive}"
        )
    try:
        return BrokerConfig(**values)
    except TypeError as exc:  # a wrong type that slipped past the readers
        raise ValueError(str(exc)) from None
