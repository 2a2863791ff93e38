"""How ``mqttproto pub``, ``sub`` and ``rr`` fail: one line on standard error
and mosquitto's exit status, never a traceback.

mosquitto_pub/sub/rr exit with 1 for bad options and for a connection that
cannot be made, with the CONNACK code for a refused CONNECT, and otherwise
with "a libmosquitto return value" (their manual's words): the ``MOSQ_ERR_*``
numbers below. Where mosquitto 2.0.11 prints an error and still exits 0 (a
QoS above the broker's maximum) or drops the message without a word (a
PUBLISH over the broker's Maximum Packet Size, retain on a broker without
retained messages), these tools print the error and exit with the number the
manual promises, so that a script sees the failure.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from typing import Protocol

from .enums import ProtocolVersion, ReasonCode


class ClientSettings(Protocol):
    """What a failure message names of where the tool connected (the
    settings of ``_cli_mqtt``, which imports this module)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def transport(self) -> str: ...
    @property
    def websocket_path(self) -> str: ...
    @property
    def tls(self) -> ssl.SSLContext | None: ...
    @property
    def version(self) -> ProtocolVersion: ...


__all__ = [
    "CONN_LOST",
    "OVERSIZE_PACKET",
    "QOS_NOT_SUPPORTED",
    "RETAIN_NOT_SUPPORTED",
    "TIMED_OUT",
    "TLS",
    "CommandError",
    "describe_connect_failure",
    "describe_refusal",
    "describe_v5_reason",
]

#: libmosquitto's return values (enum mosq_err_t), used as exit statuses.
PROTOCOL = 2
CONN_LOST = 7
TLS = 8
NOT_SUPPORTED = 10
QOS_NOT_SUPPORTED = 24
OVERSIZE_PACKET = 25
TIMED_OUT = 27
RETAIN_NOT_SUPPORTED = 28

#: mosquitto's texts for the MQTT 3.1/3.1.1 CONNACK return codes.
_V3_REFUSALS = {
    1: "Connection Refused: unacceptable protocol version.",
    2: "Connection Refused: identifier rejected.",
    3: "Connection Refused: broker unavailable.",
    4: "Connection Refused: bad user name or password.",
    5: "Connection Refused: not authorised.",
}

#: mosquitto's texts for MQTT 5 reason codes (mosquitto_reason_string).
_V5_REASONS = {
    0x80: "Unspecified error",
    0x81: "Malformed packet",
    0x82: "Protocol error",
    0x83: "Implementation specific error",
    0x84: "Unsupported protocol version",
    0x85: "Client identifier not valid",
    0x86: "Bad username or password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8C: "Bad authentication method",
    0x8D: "Keep alive timeout",
    0x8E: "Session taken over",
    0x8F: "Topic filter invalid",
    0x90: "Topic name invalid",
    0x91: "Packet identifier in use",
    0x92: "Packet identifier not found",
    0x93: "Receive maximum exceeded",
    0x94: "Topic alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared subscriptions not supported",
    0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time",
    0xA1: "Subscription identifiers not supported",
    0xA2: "Wildcard subscriptions not supported",
}


class CommandError(Exception):
    """Stop the command: print ``message`` (one line) and exit with ``status``."""

    def __init__(
        self, message: str, status: int = 1, *, refused: bool = False, timed_out: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        #: The server answered CONNECT with a refusal (trying again won't help).
        self.refused = refused
        #: Connecting timed out (an error inside the client may say why).
        self.timed_out = timed_out


def describe_v5_reason(code: int) -> str:
    """mosquitto's name for an MQTT 5 reason code."""
    return _V5_REASONS.get(code, f"reason code 0x{code:02X}")


def describe_refusal(code: ReasonCode, version: ProtocolVersion) -> CommandError:
    """mosquitto's message and exit status for a refused CONNECT."""
    if version != ProtocolVersion.MQTT_5_0:
        return_code = code.to_connack_return_code()
        text = _V3_REFUSALS.get(return_code, "Connection Refused: unknown reason.")
        return CommandError(f"Connection error: {text}", return_code, refused=True)
    if code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
        return CommandError(
            f"Connection error: {describe_v5_reason(code)}. Try connecting to an MQTT v5 "
            "broker, or use MQTT v3.x mode.",
            int(code),
            refused=True,
        )
    return CommandError(f"Connection error: {describe_v5_reason(code)}", int(code), refused=True)


def _where(settings: ClientSettings) -> str:
    if settings.transport == "unix":
        return settings.host
    return f"{settings.host}:{settings.port}"


def _tls_failure(exc: BaseException, settings: ClientSettings) -> CommandError:
    where = _where(settings)
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "verification failed"
        why = f"the server's certificate was not accepted ({detail})"
    elif isinstance(exc, ssl.SSLError) and exc.reason not in (None, "UNEXPECTED_EOF_WHILE_READING"):
        reason = str(exc.reason)
        if reason == "WRONG_VERSION_NUMBER":
            why = "the server did not answer in TLS (is this a plain MQTT port?)"
        else:
            why = reason.replace("_", " ").lower()
    else:
        # A plain MQTT listener reads the ClientHello as a broken CONNECT and
        # hangs up; so does a TLS listener that wants a client certificate.
        why = (
            "the server closed the connection during the TLS handshake (is this a plain "
            "MQTT port, or does the server want a client certificate: --cert/--key?)"
        )
    return CommandError(f"Error: A TLS error occurred connecting to {where}: {why}.", TLS)


def describe_connect_failure(exc: BaseException, settings: ClientSettings) -> CommandError:
    """A one-line error for a connection that did not come up."""
    from .adapters.asyncio import ConnectError, ConnectionLostError

    where = _where(settings)
    if isinstance(exc, ConnectError) and exc.reason_code is not None:
        return describe_refusal(ReasonCode(exc.reason_code), settings.version)
    if isinstance(exc, socket.gaierror):
        text = exc.strerror or "lookup error"
        return CommandError(f"Error: Unable to connect to {where}: lookup error ({text}).")
    if isinstance(exc, TimeoutError):
        return CommandError(f"Error: Connecting to {where} timed out.", timed_out=True)
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    ):
        # mosquitto prints the errno's text alone.
        return CommandError("Error: Connection refused")
    if isinstance(exc, FileNotFoundError) and settings.transport == "unix":
        return CommandError(f"Error: No such file or directory: {settings.host}")
    if settings.tls is not None and isinstance(
        exc, (ssl.SSLError, ConnectionResetError, ConnectionLostError, EOFError)
    ):
        return _tls_failure(exc, settings)
    if isinstance(exc, (ConnectionLostError, ConnectionResetError)):
        if settings.transport == "websocket":
            hint = f" (is it a WebSocket listener, with the path {settings.websocket_path}?)"
        else:
            hint = " (is it a TLS port? then give --cafile)"
        return CommandError(
            f"Error: The connection to {where} was closed before CONNACK{hint}.", CONN_LOST
        )
    if isinstance(exc, ConnectError):
        return CommandError(f"Error: {exc}.")
    if isinstance(exc, OSError):
        text = os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
        return CommandError(f"Error: {text}")
    return CommandError(f"Error: {exc or type(exc).__name__}")
