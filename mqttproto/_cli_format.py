"""``sub -F FORMAT`` (and ``rr -F``): mosquitto_sub 2.0's output format.

``%`` fields of the message (``%t`` topic, ``%p`` payload, ``%x``/``%X``
hex, ``%q``, ``%r``, ``%m``, ``%l``, the MQTT 5 properties ``%A %C %D %E %F
%P %R %S``, the helpers ``%I %U %j %J`` and ``%%``) with the ``-``/``0``
flags, a field width and a ``.precision``; ``@`` + one character through
strftime (``@N``: nanoseconds, ``@@``: ``@``); ``\\`` escapes. The format is
checked as mosquitto_sub checks it, with its messages, and printed byte for
byte as mosquitto_sub 2.0.11 prints it, down to its quirks: widths count
bytes, a width on ``%x`` halves the bytes shown, and ``%-p`` without a width
pads with as many blanks as the payload is long.

The JSON of ``%j``/``%J`` is cJSON's (what mosquitto_sub is built with):
no blanks, the message properties under ``"properties"`` in a fixed order,
``%J`` re-printing the payload's JSON (numbers as cJSON writes them).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from ._cli_errors import CommandError
from .events import MessageReceived

__all__ = ["check_format", "format_message"]

_FIELDS = frozenset(b"%ACDEFIlmPpqRSrtjJUxX")
_ESCAPES = {
    ord("\\"): b"\\",
    ord("0"): b"\0",
    ord("a"): b"\a",
    ord("e"): b"\033",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("v"): b"\v",
}
_INT_MAX, _INT_MIN = 2**31 - 1, -(2**31)


def _incomplete(what: str = "format") -> CommandError:
    return CommandError(f"Error: Incomplete {what} specifier.")


def check_format(text: str) -> bytes:
    """The format as bytes, checked as mosquitto_sub checks ``-F``.

    :raises CommandError: mosquitto's message for the first fault.
    """
    fmt = os.fsencode(text)
    n = len(fmt)
    i = 0
    while i < n:
        c = fmt[i]
        if c == ord("%"):
            if i == n - 1:
                raise _incomplete()
            if fmt[i + 1] in b"0-":
                i += 1
                if i == n - 1:
                    raise _incomplete()
            while i + 1 < n and fmt[i + 1] in b"0123456789":
                i += 1
                if i == n - 1:
                    raise _incomplete()
            if fmt[i + 1] == ord("."):
                i += 1
                if i == n - 1:
                    raise _incomplete()
                while i + 1 < n and fmt[i + 1] in b"0123456789":
                    i += 1
                    if i == n - 1:
                        raise _incomplete()
            if fmt[i + 1] not in _FIELDS:
                raise CommandError(f"Error: Invalid format specifier '{chr(fmt[i + 1])}'.")
            i += 1
        elif c == ord("@"):
            if i == n - 1:
                raise _incomplete()
            i += 1
        elif c == ord("\\"):
            if i == n - 1:
                raise _incomplete("escape")
            if fmt[i + 1] not in _ESCAPES:
                raise CommandError(f"Error: Invalid escape specifier '{chr(fmt[i + 1])}'.")
            i += 1
        i += 1
    return fmt


# -- printf's conversions, as mosquitto_sub uses them -------------------------------


def _int(value: int, align: str, pad: str, width: int) -> bytes:
    if width == 0:
        return b"%d" % value
    if align == "-":
        return b"%-*d" % (width, value)
    if pad == "0":
        return b"%0*d" % (width, value)
    return b"%*d" % (width, value)


def _str(value: bytes, align: str, width: int, precision: int) -> bytes:
    if precision >= 0:
        value = value[:precision]
    if align == "-":
        return value.ljust(width)
    return value.rjust(width)


def _payload(payload: bytes, hex_case: str, align: str, pad: str, width: int) -> bytes:
    length = len(payload)
    if width > 0:
        length = min(length, width)
        if hex_case:
            length //= 2
            padding = width - length * 2
        else:
            padding = width - length
    else:
        padding = width - length
    shown = payload[:length]
    if hex_case == "x":
        shown = shown.hex().encode()
    elif hex_case == "X":
        shown = shown.hex().upper().encode()
    if align == "-":
        # printf("%*s", padding, ""): a negative width pads all the same.
        return shown + b" " * abs(padding)
    return pad.encode() * max(padding, 0) + shown


# -- JSON as cJSON prints it --------------------------------------------------------


def _json_string(value: bytes) -> bytes:
    out = bytearray(b'"')
    for byte in value:
        if byte == 0x22:
            out += b'\\"'
        elif byte == 0x5C:
            out += b"\\\\"
        elif byte < 0x20:
            short = {0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}
            out += short.get(byte, b"\\u%04x" % byte)
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)


def _json_number(value: float) -> bytes:
    if value != value or value in (float("inf"), float("-inf")):
        return b"null"
    as_int = _INT_MAX if value >= _INT_MAX else _INT_MIN if value <= _INT_MIN else int(value)
    if value == as_int:
        return b"%d" % as_int
    text = b"%1.15g" % value
    if float(text) != value:
        text = b"%1.17g" % value
    return text


def _utf8(text: str) -> bytes:
    """Back to the payload's bytes (invalid UTF-8 was kept as surrogate escapes)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A \\ud800 escape in the JSON text: a lone surrogate cJSON writes as is.
        return text.encode("utf-8", "surrogatepass")


def _json_value(value: Any) -> bytes:
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, (int, float)):
        return _json_number(float(value))
    if isinstance(value, str):
        return _json_string(_utf8(value))
    if isinstance(value, _Pairs):
        items = (_json_string(_utf8(key)) + b":" + _json_value(item) for key, item in value)
        return b"{" + b",".join(items) + b"}"
    assert isinstance(value, list)
    return b"[" + b",".join(_json_value(item) for item in value) + b"]"


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs: duplicates and order kept, as cJSON does."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_payload(payload: bytes) -> bytes | None:
    """The payload re-printed as cJSON would, or None if it is not one JSON value."""
    if b"\0" in payload:
        return None
    try:
        value = json.loads(
            payload.decode("utf-8", "surrogateescape"),
            object_pairs_hook=_Pairs,
            parse_int=float,
            parse_constant=_reject_constant,
        )
    except ValueError:
        return None
    return _json_value(value)


def _json_properties(message: MessageReceived) -> bytes:
    packet = message.packet
    items: list[bytes] = []

    def add(name: str, value: bytes) -> None:
        items.append(b'"' + name.encode() + b'":' + value)

    if packet.payload_format_indicator is not None:
        add("payload-format-indicator", b"%d" % packet.payload_format_indicator)
    if packet.message_expiry_interval is not None:
        add("message-expiry-interval", b"%d" % packet.message_expiry_interval)
    if packet.content_type is not None:
        add("content-type", _json_string(packet.content_type.encode()))
    if packet.response_topic is not None:
        add("response-topic", _json_string(packet.response_topic.encode()))
    if packet.correlation_data is not None:
        add("correlation-data", _json_string(packet.correlation_data.split(b"\0", 1)[0]))
    for identifier in packet.subscription_identifiers:
        add("subscription-identifier", b"%d" % identifier)
    if packet.user_properties:
        pairs = b",".join(
            _json_string(key.encode()) + b":" + _json_string(value.encode())
            for key, value in packet.user_properties
        )
        add("user-properties", b"{" + pairs + b"}")
    if not items:
        return b""
    return b'"properties":{' + b",".join(items) + b"},"


def _json(message: MessageReceived, now_ns: int, *, escaped: bool) -> bytes | None:
    seconds, ns = divmod(now_ns, 1_000_000_000)
    local = time.localtime(seconds)
    tst = "{}.{:06d}Z{}".format(
        time.strftime("%Y-%m-%dT%H:%M:%S", local), ns // 1000, time.strftime("%z", local)
    )
    payload = message.payload
    body: bytes | None
    if escaped:
        # libmosquitto hands a NUL-terminated payload to cJSON: it ends at a NUL.
        body = _json_string(payload.split(b"\0", 1)[0]) if payload else b"null"
    else:
        body = _json_payload(payload) if payload else b"null"
        if body is None:
            return None
    mid = b'"mid":%d,' % (message.packet_id or 0) if message.qos > 0 else b""
    return (
        b'{"tst":'
        + _json_string(tst.encode())
        + b',"topic":'
        + _json_string(message.topic.encode())
        + b',"qos":%d,"retain":%d,"payloadlen":%d,' % (message.qos, message.retain, len(payload))
        + mid
        + _json_properties(message)
        + b'"payload":'
        + body
        + b"}"
    )


# -- the whole format ---------------------------------------------------------------


def _field(
    message: MessageReceived,
    code: int,
    align: str,
    pad: str,
    width: int,
    precision: int,
    now_ns: int,
) -> bytes:
    packet = message.packet
    field = chr(code)
    if field == "%":
        return b"%"
    if field in "AEFS":
        value = {
            "A": packet.topic_alias,
            "E": packet.message_expiry_interval,
            "F": packet.payload_format_indicator,
            "S": packet.subscription_identifiers[0] if packet.subscription_identifiers else None,
        }[field]
        return pad.encode() * width if value is None else _int(value, align, pad, width)
    if field in "CRt":
        text = {"C": packet.content_type, "R": packet.response_topic, "t": packet.topic}[field]
        if text is None:
            # mosquitto pads an absent content type, but not a response topic.
            return b" " * width if field == "C" else b""
        return _str(text.encode(), align, width, precision)
    if field == "D":
        return packet.correlation_data or b""
    if field == "I":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now_ns // 1_000_000_000))
        return _str(stamp.encode(), align, width, precision)
    if field in "jJ":
        json_text = _json(message, now_ns, escaped=field == "j")
        if json_text is None:
            print(
                f"Error: Message payload is not valid JSON on topic {message.topic}.",
                file=sys.stderr,
            )
            return b""
        return json_text
    if field in "lm":
        number = len(packet.payload) if field == "l" else packet.packet_id or 0
        return _int(number, align, pad, width)
    if field == "P":
        return b" ".join(f"{k}:{v}".encode() for k, v in packet.user_properties)
    if field in "pxX":
        return _payload(packet.payload, "" if field == "p" else field, align, pad, width)
    if field == "q":
        return b"%d" % packet.qos
    if field == "r":
        return b"1" if packet.retain else b"0"
    if field == "U":
        seconds, ns = divmod(now_ns, 1_000_000_000)
        return b"%d.%09d" % (seconds, ns)
    return b""


def _strftime(code: int, now_ns: int) -> bytes:
    seconds, ns = divmod(now_ns, 1_000_000_000)
    if code == ord("N"):
        return b"%09d" % ns
    try:
        return time.strftime("%" + chr(code), time.localtime(seconds)).encode()
    except (ValueError, UnicodeError):
        return b""


def format_message(fmt: bytes, message: MessageReceived, *, eol: bool) -> bytes:
    """``message`` printed with a format :func:`check_format` accepted."""
    now_ns = time.time_ns()
    out = bytearray()
    n = len(fmt)
    i = 0
    while i < n:
        c = fmt[i]
        if c == ord("%"):
            align, pad, width, precision = "", " ", 0, -1
            if i < n - 1:
                i += 1
                if fmt[i] == ord("-"):
                    align = "-"
                    if i < n - 1:
                        i += 1
                if fmt[i] == ord("0"):
                    pad = "0"
                    if i < n - 1:
                        i += 1
                while i < n - 1 and fmt[i] in b"0123456789":
                    width = width * 10 + fmt[i] - ord("0")
                    i += 1
                if fmt[i] == ord(".") and i < n - 1:
                    i += 1
                    precision = 0
                    while i < n - 1 and fmt[i] in b"0123456789":
                        precision = precision * 10 + fmt[i] - ord("0")
                        i += 1
                out += _field(message, fmt[i], align, pad, width, precision, now_ns)
        elif c == ord("@"):
            if i < n - 1:
                i += 1
                out += b"@" if fmt[i] == ord("@") else _strftime(fmt[i], now_ns)
        elif c == ord("\\"):
            if i < n - 1:
                i += 1
                out += _ESCAPES.get(fmt[i], b"")
        else:
            out.append(c)
        i += 1
    if eol:
        out += b"\n"
    return bytes(out)
