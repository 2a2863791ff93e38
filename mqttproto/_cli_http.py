"""``mqttproto broker --http-port``: the flags (and TOML keys) of the HTTP
listener, their checks, and starting it next to the broker server.

The listener binds 127.0.0.1 unless ``--http-host`` says otherwise; on any
other address it is refused without ``--http-token``, unless
``--http-insecure`` says that is meant (the admin API can disconnect
clients). h11 is the optional extra ``http``.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from typing import Any

__all__ = ["HTTP_SETTINGS", "add_http_arguments", "check_http_settings", "start_http_listener"]


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


#: The HTTP settings, in the form of ``_cli_broker.SETTINGS``.
HTTP_SETTINGS: dict[str, tuple[Callable[[object], Any], Any, bool]] = {
    "http_port": (_int, None, False),
    "http_host": (_str, "127.0.0.1", False),
    "http_token": (_str, None, False),
    "http_token_metrics": (_bool, False, False),
    "http_insecure": (_bool, False, False),
}


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {value}")
    return value


def add_http_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP (metrics, admin API, status page)")
    group.add_argument(
        "--http-port",
        type=_port,
        help="serve /metrics, the admin API (/api/v1/...) and a status page (/) on this port",
    )
    group.add_argument("--http-host", help="the address of the HTTP listener (127.0.0.1)")
    group.add_argument(
        "--http-token",
        metavar="TOKEN",
        help="a bearer token every HTTP request but /metrics must carry",
    )
    group.add_argument(
        "--http-token-metrics",
        action="store_true",
        default=None,
        help="/metrics needs the --http-token too",
    )
    group.add_argument(
        "--http-insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback --http-host without --http-token",
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_http_settings(settings: argparse.Namespace) -> str | None:
    """What is wrong with the HTTP settings (one line), or None."""
    port = settings.http_port
    if port is None:
        for name in ("http_token", "http_token_metrics", "http_insecure"):
            if getattr(settings, name):
                return f"--{name.replace('_', '-')} needs --http-port"
        return None
    if not 0 <= port <= 65535:
        return f"http_port must be 0..65535, not {port}"
    token = settings.http_token
    if token is not None and (not token or not token.isprintable() or " " in token):
        return "--http-token must be a non-empty token without spaces"
    if settings.http_token_metrics and token is None:
        return "--http-token-metrics needs --http-token"
    if not _loopback(settings.http_host) and token is None and not settings.http_insecure:
        return (
            f"--http-host {settings.http_host} is not a loopback address: give --http-token "
            "(or --http-insecure to serve the admin API to anyone who can reach it)"
        )
    try:
        import h11  # noqa: F401
    except ImportError:
        return "--http-port needs h11: pip install 'mqttproto[http]'"
    return None


async def start_http_listener(server: Any, settings: argparse.Namespace) -> Any:
    """Start the HTTP listener of ``server`` (a started BrokerServer), or
    None without ``--http-port``.

    :raises OSError: the address cannot be bound.
    """
    if settings.http_port is None:
        return None
    from .adapters._http_asyncio import start_http

    return await start_http(
        server,
        host=settings.http_host,
        port=settings.http_port,
        token=settings.http_token,
        token_metrics=bool(settings.http_token_metrics),
    )
