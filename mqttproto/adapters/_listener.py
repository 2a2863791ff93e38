"""What a broker server listens on: :class:`Listener`, and TLS helpers.

Shared by the server adapters; nothing here opens a socket.
"""

from __future__ import annotations

import ssl as _ssl
from typing import Any, Literal

import attrs

__all__ = [
    "WEBSOCKET_SUBPROTOCOLS",
    "Listener",
    "certificate_common_name",
    "server_ssl_context",
]

Transport = Literal["tcp", "websocket", "unix"]
_TRANSPORTS = ("tcp", "websocket", "unix")

#: The WebSocket subprotocols a server accepts: ``mqtt`` is MQTT 3.1.1 and 5.0
#: [MQTT-6.0.0-3]; ``mqttv3.1`` is what MQTT 3.1 clients (paho among them) ask for.
WEBSOCKET_SUBPROTOCOLS = ("mqtt", "mqttv3.1")


def _check_transport(instance: Listener, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(_TRANSPORTS)}, not {value!r}")


def _check_port(instance: Listener, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be in 0..65535, not {value}")


def _check_backlog(
    instance: Listener, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and value < 1:
        raise ValueError(f"backlog must be at least 1, not {value}")


@attrs.frozen(kw_only=True)
class Listener:
    """One listening socket of a broker server.

    :ivar transport: ``"tcp"`` (MQTT over TCP, or TLS with :attr:`ssl`),
        ``"websocket"`` (MQTT over WebSocket, ``wss`` with :attr:`ssl`; needs
        the ``websocket`` extra, ``wsproto``) or ``"unix"`` (a Unix domain
        socket at :attr:`path`).
    :ivar host: the address(es) to listen on (TCP and WebSocket).
    :ivar port: the port; 0 lets the OS choose (TCP and WebSocket).
    :ivar path: the Unix socket's file name (``"unix"`` only). A stale socket
        file there is replaced; the file is removed when the server closes.
    :ivar ssl: a server :class:`ssl.SSLContext` (see :func:`server_ssl_context`).
    :ivar use_identity_as_username: take the username from the verified client
        certificate's subject CN instead of the CONNECT (like mosquitto's
        ``use_identity_as_username``); the CONNECT's password is ignored. Needs
        an :attr:`ssl` context that asks for client certificates. A client whose
        certificate has no CN is disconnected.
    :ivar websocket_path: the HTTP path a WebSocket client must ask for
        (others are refused with HTTP 404); ``None``, the default, accepts any
        path, as mosquitto does (paho-mqtt asks for ``/mqtt``, aiomqtt and
        MQTT.js for what they are told).
    :ivar backlog: the accept queue (``listen()``'s backlog, capped by the
        kernel's ``net.core.somaxconn``): raise it where thousands of clients
        connect at once, such as after a restart, or their SYNs are dropped
        and retried a second later. ``None``: the server's default (asyncio
        100, threads 128, trio the largest the kernel allows).
    """

    transport: Transport = attrs.field(default="tcp", validator=_check_transport)
    host: str | list[str] | None = "127.0.0.1"
    port: int = attrs.field(default=1883, validator=_check_port)
    path: str | None = None
    ssl: _ssl.SSLContext | None = None
    use_identity_as_username: bool = False
    websocket_path: str | None = None
    backlog: int | None = attrs.field(default=None, validator=_check_backlog)

    def __attrs_post_init__(self) -> None:
        if (self.transport == "unix") != (self.path is not None):
            raise ValueError("a path is needed for, and only for, a unix listener")
        if self.use_identity_as_username and (
            self.ssl is None or self.ssl.verify_mode == _ssl.CERT_NONE
        ):
            raise ValueError(
                "use_identity_as_username needs an ssl context that requires client certificates"
            )

    @property
    def kind(self) -> str:
        """How logs and the command line name it: TCP, TLS, WebSocket, …"""
        if self.transport == "tcp":
            return "TLS" if self.ssl is not None else "TCP"
        if self.transport == "websocket":
            return "WebSocket over TLS" if self.ssl is not None else "WebSocket"
        return "Unix socket over TLS" if self.ssl is not None else "Unix socket"


def server_ssl_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    cafile: str | None = None,
    require_certificate: bool = False,
) -> _ssl.SSLContext:
    """A TLS 1.2+ server context with the certificate chain in *certfile*.

    :param keyfile: the private key, if it is not in *certfile*.
    :param cafile: CA certificates that sign the client certificates the
        server accepts; with it alone a client *may* present a certificate
        (``CERT_OPTIONAL``), which is then verified.
    :param require_certificate: a client must present a certificate signed
        by *cafile* (``CERT_REQUIRED``); needs *cafile*.
    :raises ValueError: *require_certificate* without *cafile*.
    :raises OSError, ssl.SSLError: a file cannot be read, or the key does not
        match the certificate.
    """
    if require_certificate and cafile is None:
        raise ValueError("requiring client certificates needs a CA file to verify them")
    context = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        context.load_verify_locations(cafile=cafile)
        context.verify_mode = _ssl.CERT_REQUIRED if require_certificate else _ssl.CERT_OPTIONAL
    return context


def certificate_common_name(peercert: Any) -> str | None:
    """The subject CN of a certificate as :meth:`ssl.SSLSocket.getpeercert` returns it.

    The first CN when there are several (as mosquitto takes it); ``None``
    without a certificate or a CN.
    """
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
