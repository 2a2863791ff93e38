"""A catalogue of malformed and illegal inputs, and the error each one raises.

Every case names the rule it breaks: a normative statement tag of the
specification (``MQTT-x.y.z-n``; 3.1.1 and 5.0 number some rules differently,
and the case's version says which document the tag is from) or, where the
specification states the rule without a tag, the section (``5.0 §3.8.3.1``).

Whether a failure is a Malformed Packet (0x81) or a Protocol Error (0x82, or a
more specific code) follows the specification's own words where it says which
("... is a Malformed Packet", "It is a Protocol Error ..."). Where it does not
say (an undefined reason code value, a Will QoS without the Will flag, a
trailing byte), the codec's choice is pinned here so that the compiled twin
makes the same one.

Each case runs through ``decode_packet`` and through ``PacketReader.feed``
(whole, and one byte at a time), unless it only makes sense for one of them:
a Remaining Length that disagrees with the bytes given is a ``decode_packet``
matter (a stream reader just waits for more, or reads on into the next
packet), and the maximum packet size and the first-packet rule belong to the
reader.
"""

from __future__ import annotations

import re
import types
from typing import NamedTuple

import pytest

from mqttproto.enums import ReasonCode
from mqttproto.errors import (
    ClientIdentifierNotValid,
    MalformedPacket,
    PacketTooLarge,
    RemoteProtocolError,
    TopicAliasInvalid,
    UnsupportedProtocolVersion,
)

V31, V311, V5 = 3, 4, 5
RC = ReasonCode
MP = MalformedPacket
PE = RemoteProtocolError
UPV = UnsupportedProtocolVersion
CINV = ClientIdentifierNotValid
MALFORMED = RC.MALFORMED_PACKET
PROTOCOL = RC.PROTOCOL_ERROR
NAME_INVALID = RC.TOPIC_NAME_INVALID
FILTER_INVALID = RC.TOPIC_FILTER_INVALID


class Case(NamedTuple):
    id: str
    #: The connection's protocol level; None is a server's reader before CONNECT.
    version: int | None
    data: bytes
    error_class: type[RemoteProtocolError]
    reason_code: ReasonCode
    rule: str
    #: "both", "decode" (decode_packet only) or "reader" (PacketReader only).
    via: str = "both"
    max_packet_size: int | None = None
    #: For UnsupportedProtocolVersion: the level the error must report.
    protocol_level: int | None = None


# ---------------------------------------------------------------------------
# Small builders. The fixed header is computed here (the Remaining Length is
# the body length), the rest is written out as hex.


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def vbi(value: int) -> bytes:
    """A Variable Byte Integer, minimally encoded (section 1.5.5 of 5.0)."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pkt(first: int, body: str | bytes) -> bytes:
    raw = h(body) if isinstance(body, str) else body
    return bytes((first,)) + vbi(len(raw)) + raw


def props(body: str) -> str:
    """A 5.0 property block: the property length, then the properties."""
    return vbi(len(h(body))).hex() + body


MQTT_311 = "0004 4d515454 04"
MQTT_5 = "0004 4d515454 05"


def connect311(flags: int = 0x02, payload: str = "0000") -> bytes:
    return pkt(0x10, f"{MQTT_311} {flags:02x} 003c {payload}")


def connect5(properties: str = "", flags: int = 0x02, payload: str = "0000") -> bytes:
    return pkt(0x10, f"{MQTT_5} {flags:02x} 003c {props(properties)} {payload}")


def will5(will_properties: str) -> bytes:
    """A 5.0 CONNECT with a Will (topic "t", empty payload) carrying these properties."""
    return connect5(flags=0x06, payload=f"0000 {props(will_properties)} 0001 74 0000")


def connack5(properties: str = "", code: str = "00", flags: str = "00") -> bytes:
    return pkt(0x20, f"{flags} {code} {props(properties)}")


def publish5(properties: str = "", topic: str = "0001 74", first: int = 0x30) -> bytes:
    return pkt(first, f"{topic} {props(properties)}")


def puback5(properties: str = "", code: str = "00") -> bytes:
    return pkt(0x40, f"0001 {code} {props(properties)}")


def subscribe5(properties: str = "", subscriptions: str = "0001 61 00") -> bytes:
    return pkt(0x82, f"0001 {props(properties)} {subscriptions}")


def disconnect5(properties: str = "", code: str = "00") -> bytes:
    return pkt(0xE0, f"{code} {props(properties)}")


def auth5(properties: str = "", code: str = "18") -> bytes:
    return pkt(0xF0, f"{code} {props(properties)}")


# ---------------------------------------------------------------------------
# The catalogue

CASES: list[Case] = [
    # --- Variable Byte Integer / Remaining Length -----------------------------
    Case("remaining-length-5-bytes", V5, h("30 ff ff ff ff 01"), MP, MALFORMED, "5.0 §1.5.5"),
    Case("remaining-length-5-bytes", V311, h("30 ff ff ff ff 01"), MP, MALFORMED, "3.1.1 §2.2.3"),
    Case("remaining-length-non-minimal", V5, h("30 80 00"), MP, MALFORMED, "MQTT-1.5.5-1"),
    Case("remaining-length-non-minimal-2", V5, h("c0 80 80 00"), MP, MALFORMED, "MQTT-1.5.5-1"),
    Case("property-length-non-minimal", V5, h("40 05 0001 00 80 00"), MP, MALFORMED, "MQTT-1.5.5-1"),
    Case(
        "subscription-identifier-non-minimal",
        V5,
        publish5("0b 81 00"),
        MP,
        MALFORMED,
        "MQTT-1.5.5-1",
    ),
    Case("remaining-length-exceeds-bytes", V5, h("30 0a 0003 612f62 00"), MP, MALFORMED,
         "5.0 §2.1.4", via="decode"),
    Case("remaining-length-short-of-bytes", V311, h("40 02 0001 ff"), MP, MALFORMED,
         "3.1.1 §2.2.3", via="decode"),
    Case("remaining-length-short-of-bytes", V5, h("c0 00 00"), MP, MALFORMED, "5.0 §2.1.4",
         via="decode"),
    Case("packet-of-one-byte", V5, h("c0"), MP, MALFORMED, "5.0 §2.1.1", via="decode"),
    # --- Packet types ----------------------------------------------------------
    Case("reserved-packet-type-0", V5, h("00 00"), MP, MALFORMED, "5.0 §2.1.2"),
    Case("reserved-packet-type-0", V311, h("00 00"), MP, MALFORMED, "3.1.1 §2.2.1"),
    Case("auth-type-15-before-5.0", V311, h("f0 00"), MP, MALFORMED, "3.1.1 §2.2.1"),
    Case("auth-type-15-before-5.0", V31, h("f0 00"), MP, MALFORMED, "3.1.1 §2.2.1"),
    # --- Reserved fixed-header flags (table 2-2) ----------------------------------
    Case("flags-connect", V311, b"\x11" + connect311()[1:], MP, MALFORMED, "MQTT-2.2.2-1"),
    Case("flags-connect", V5, b"\x18" + connect5()[1:], MP, MALFORMED, "MQTT-2.1.3-1"),
    Case("flags-connack", V311, h("21 02 00 00"), MP, MALFORMED, "MQTT-2.2.2-1"),
    Case("flags-connack", V5, h("28 03 00 00 00"), MP, MALFORMED, "MQTT-2.1.3-1"),
    Case("flags-puback", V311, h("48 02 0001"), MP, MALFORMED, "MQTT-2.2.2-1"),
    Case("flags-puback", V5, h("41 02 0001"), MP, MALFORMED, "MQTT-2.1.3-1"),
    Case("flags-pubrec", V5, h("52 02 0001"), MP, MALFORMED, "MQTT-2.1.3-1"),
    Case("flags-pubrel-0000", V311, h("60 02 0001"), MP, MALFORMED, "MQTT-3.6.1-1"),
    Case("flags-pubrel-0000", V5, h("60 02 0001"), MP, MALFORMED, "MQTT-3.6.1-1"),
    Case("flags-pubrel-0011", V5, h("63 02 0001"), MP, MALFORMED, "MQTT-3.6.1-1"),
    Case("flags-pubcomp", V311, h("7f 02 0001"), MP, MALFORMED, "MQTT-2.2.2-1"),
    Case("flags-subscribe-0000", V311, h("80 06 0001 0001 61 00"), MP, MALFORMED,
         "MQTT-3.8.1-1"),
    Case("flags-subscribe-0011", V5, h("83 07 0001 00 0001 61 00"), MP, MALFORMED,
         "MQTT-3.8.1-1"),
    Case("flags-suback", V311, h("92 03 0001 00"), MP, MALFORMED, "MQTT-2.2.2-1"),
    Case("flags-unsubscribe-0000", V5, h("a0 06 0001 00 0001 61"), MP, MALFORMED,
         "MQTT-3.10.1-1"),
    Case("flags-unsubscribe-0011", V311, h("a3 05 0001 0001 61"), MP, MALFORMED,
         "MQTT-3.10.1-1"),
    Case("flags-unsuback", V311, h("b1 02 0001"), MP, MALFORMED, "MQTT-2.2.2-1"),
    Case("flags-pingreq", V5, h("c1 00"), MP, MALFORMED, "MQTT-2.1.3-1"),
    Case("flags-pingresp", V311, h("d2 00"), MP, MALFORMED, "MQTT-2.2.2-1"),
    Case("flags-disconnect", V311, h("e4 00"), MP, MALFORMED, "MQTT-3.14.1-1"),
    Case("flags-disconnect", V5, h("e1 00"), MP, MALFORMED, "MQTT-3.14.1-1"),
    Case("flags-auth", V5, h("f1 00"), MP, MALFORMED, "MQTT-3.15.1-1"),
    # --- PUBLISH fixed header and packet identifiers ---------------------------
    Case("publish-qos-3", V311, h("36 07 0003 612f62 0001"), MP, MALFORMED, "MQTT-3.3.1-4"),
    Case("publish-qos-3", V5, h("36 08 0003 612f62 0001 00"), MP, MALFORMED, "MQTT-3.3.1-4"),
    Case("publish-dup-on-qos-0", V311, h("38 05 0003 612f62"), PE, PROTOCOL, "MQTT-3.3.1-2"),
    Case("publish-dup-on-qos-0", V5, h("38 06 0003 612f62 00"), PE, PROTOCOL, "MQTT-3.3.1-2"),
    Case("publish-packet-id-0", V311, h("32 07 0003 612f62 0000"), PE, PROTOCOL, "MQTT-2.3.1-1"),
    Case("publish-packet-id-0", V5, h("34 08 0003 612f62 0000 00"), PE, PROTOCOL,
         "MQTT-2.2.1-3"),
    Case("puback-packet-id-0", V311, h("40 02 0000"), PE, PROTOCOL, "3.1.1 §2.3.1"),
    Case("puback-packet-id-0", V5, h("40 02 0000"), PE, PROTOCOL, "5.0 §2.2.1"),
    Case("subscribe-packet-id-0", V311, h("82 08 0000 0003 612f62 00"), PE, PROTOCOL,
         "MQTT-2.3.1-1"),
    Case("subscribe-packet-id-0", V5, h("82 09 0000 00 0003 612f62 00"), PE, PROTOCOL,
         "MQTT-2.2.1-3"),
    Case("unsubscribe-packet-id-0", V5, h("a2 06 0000 00 0001 61"), PE, PROTOCOL,
         "MQTT-2.2.1-3"),
    Case("publish-truncated-packet-id", V5, h("32 04 0001 74 00"), MP, MALFORMED, "5.0 §3.3.2.2"),
    # --- UTF-8 Encoded Strings ---------------------------------------------------
    Case("utf8-overlong", V311, h("30 04 0002 c0af"), MP, MALFORMED, "MQTT-1.5.3-1"),
    Case("utf8-overlong", V5, h("30 05 0002 c0af 00"), MP, MALFORMED, "MQTT-1.5.4-1"),
    Case("utf8-surrogate-ed-a0-80", V5, h("30 06 0003 eda080 00"), MP, MALFORMED,
         "MQTT-1.5.4-1"),
    Case("utf8-surrogate-in-client-id", V311, connect311(payload="0003 eda080"), MP, MALFORMED,
         "MQTT-1.5.3-1"),
    Case("utf8-truncated-sequence", V5, h("30 05 0002 e282 00"), MP, MALFORMED,
         "MQTT-1.5.4-1"),
    Case("utf8-truncated-in-user-property", V5, puback5("26 0001 e2 0001 61"), MP, MALFORMED,
         "MQTT-1.5.7-1"),
    Case("utf8-byte-ff", V311, h("30 03 0001 ff"), MP, MALFORMED, "MQTT-1.5.3-1"),
    Case("utf8-byte-ff-in-reason-string", V5, puback5("1f 0001 ff"), MP, MALFORMED,
         "MQTT-1.5.4-1"),
    Case("u0000-in-topic", V311, h("30 05 0003 610062"), MP, MALFORMED, "MQTT-1.5.3-2"),
    Case("u0000-in-topic", V5, h("30 06 0003 610062 00"), MP, MALFORMED, "MQTT-1.5.4-2"),
    Case("u0000-in-client-id", V5, connect5(payload="0002 6100"), MP, MALFORMED, "MQTT-1.5.4-2"),
    Case("u0000-in-user-property-name", V5, publish5("26 0001 00 0001 61"), MP, MALFORMED,
         "MQTT-1.5.7-1"),
    Case("u0000-in-user-property-value", V5, connack5("26 0001 61 0002 6200"), MP, MALFORMED,
         "MQTT-1.5.7-1"),
    Case("string-runs-past-packet", V5, h("30 05 0009 612f62 00"), MP, MALFORMED,
         "5.0 §1.5.4"),
    # --- Topic names -------------------------------------------------------------
    Case("publish-topic-wildcard-plus", V311, h("30 05 0003 612f2b"), PE, NAME_INVALID,
         "MQTT-3.3.2-2"),
    Case("publish-topic-wildcard-hash", V5, h("30 06 0003 612f23 00"), PE, NAME_INVALID,
         "MQTT-3.3.2-2"),
    Case("publish-topic-empty", V311, h("30 02 0000"), PE, NAME_INVALID, "MQTT-4.7.3-1"),
    Case("publish-topic-empty-without-alias", V5, h("30 03 0000 00"), PE, PROTOCOL,
         "5.0 §3.3.2.3.4"),
    Case(
        "publish-topic-empty-without-alias-with-properties",
        V5,
        publish5("26 0001 61 0001 62", topic="0000"),
        PE,
        PROTOCOL,
        "5.0 §3.3.2.3.4",
    ),
    # --- CONNECT -----------------------------------------------------------------
    Case("connect-protocol-name-wrong", V311, pkt(0x10, "0004 4d515458 04 02 003c 0000"), UPV,
         RC.UNSUPPORTED_PROTOCOL_VERSION, "MQTT-3.1.2-1", protocol_level=4),
    Case("connect-protocol-name-mqtt-with-level-3", V31,
         pkt(0x10, "0004 4d515454 03 02 003c 0001 61"), UPV,
         RC.UNSUPPORTED_PROTOCOL_VERSION, "MQTT-3.1.2-1", protocol_level=3),
    Case("connect-protocol-name-mqisdp-with-level-5", V5,
         pkt(0x10, "0006 4d5149736470 05 02 003c 00 0001 61"), UPV,
         RC.UNSUPPORTED_PROTOCOL_VERSION, "MQTT-3.1.2-1", protocol_level=5),
    Case("connect-unknown-level-6", V5, pkt(0x10, "0004 4d515454 06 02 003c 00 0000"), UPV,
         RC.UNSUPPORTED_PROTOCOL_VERSION, "MQTT-3.1.2-2", protocol_level=6),
    Case("connect-unknown-level-0", V311, pkt(0x10, "0004 4d515454 00 02 003c 0000"), UPV,
         RC.UNSUPPORTED_PROTOCOL_VERSION, "MQTT-3.1.2-2", protocol_level=0),
    # An identifier the version forbids: a server answers CONNACK return code 2.
    Case("connect-empty-client-id-persistent-session", V311,
         pkt(0x10, "0004 4d515454 04 00 003c 0000"), CINV,
         RC.CLIENT_IDENTIFIER_NOT_VALID, "MQTT-3.1.3-8", protocol_level=4),
    Case("connect-empty-client-id", V31, pkt(0x10, "0006 4d5149736470 03 02 003c 0000"), CINV,
         RC.CLIENT_IDENTIFIER_NOT_VALID, "3.1 §3.1", protocol_level=3),
    Case("connect-client-id-24-characters", V31,
         pkt(0x10, "0006 4d5149736470 03 02 003c 0018" + "61" * 24), CINV,
         RC.CLIENT_IDENTIFIER_NOT_VALID, "3.1 §3.1", protocol_level=3),
    Case("connect-reserved-flag", V311, connect311(flags=0x03), MP, MALFORMED, "MQTT-3.1.2-3"),
    Case("connect-reserved-flag", V5, connect5(flags=0x01), MP, MALFORMED, "MQTT-3.1.2-3"),
    Case("connect-will-qos-3", V311, connect311(flags=0x1E), MP, MALFORMED, "MQTT-3.1.2-14"),
    Case("connect-will-qos-3", V5, connect5(flags=0x1E), MP, MALFORMED, "MQTT-3.1.2-12"),
    Case("connect-will-qos-without-will", V311, connect311(flags=0x0A), MP, MALFORMED,
         "MQTT-3.1.2-13"),
    Case("connect-will-qos-without-will", V5, connect5(flags=0x12), MP, MALFORMED,
         "MQTT-3.1.2-11"),
    Case("connect-will-retain-without-will", V311, connect311(flags=0x22), MP, MALFORMED,
         "MQTT-3.1.2-15"),
    Case("connect-will-retain-without-will", V5, connect5(flags=0x22), MP, MALFORMED,
         "MQTT-3.1.2-13"),
    Case("connect-password-without-username", V311, connect311(flags=0x42, payload="0000 0001 70"),
         MP, MALFORMED, "MQTT-3.1.2-22"),
    Case("connect-trailing-bytes", V311, connect311(payload="0000 00"), MP, MALFORMED,
         "MQTT-3.1.4-1"),
    Case("connect-trailing-bytes", V5, connect5(payload="0001 61 ff"), MP, MALFORMED,
         "MQTT-3.1.4-1"),
    Case("connect-missing-will-topic", V311, connect311(flags=0x06), MP, MALFORMED,
         "3.1.1 §3.1.3"),
    Case("connect-missing-user-name", V5, connect5(flags=0x82), MP, MALFORMED, "5.0 §3.1.3.5"),
    Case("connect-will-topic-wildcard", V311, connect311(flags=0x06, payload="0000 0001 23 0000"),
         PE, NAME_INVALID, "MQTT-4.7.1-1"),
    Case("connect-will-topic-wildcard", V5, connect5(flags=0x06, payload="0000 00 0003 612f2b 0000"),
         PE, NAME_INVALID, "MQTT-4.7.0-1"),
    # --- CONNACK -----------------------------------------------------------------
    Case("connack-reserved-ack-flags", V311, h("20 02 02 00"), MP, MALFORMED, "3.1.1 §3.2.2.1"),
    Case("connack-reserved-ack-flags", V5, h("20 03 80 00 00"), MP, MALFORMED, "MQTT-3.2.2-1"),
    Case("connack-reserved-return-code-6", V311, h("20 02 00 06"), MP, MALFORMED,
         "3.1.1 §3.2.2.3"),
    Case("connack-reserved-return-code-ff", V31, h("20 02 00 ff"), MP, MALFORMED,
         "3.1.1 §3.2.2.3"),
    Case("connack-reason-code-not-for-connack", V5, connack5(code="04"), MP, MALFORMED,
         "MQTT-3.2.2-8"),
    Case("connack-session-present-with-refusal", V311, h("20 02 01 05"), PE, PROTOCOL,
         "MQTT-3.2.2-4"),
    Case("connack-session-present-with-refusal", V5, connack5(code="87", flags="01"), PE,
         PROTOCOL, "MQTT-3.2.2-6"),
    Case("connack-3.1-has-no-session-present", V31, h("20 02 01 00"), MP, MALFORMED,
         "3.1 §3.2"),
    Case("connack-trailing-byte", V311, h("20 03 00 00 00"), MP, MALFORMED, "3.1.1 §3.2.3"),
    # --- SUBSCRIBE ---------------------------------------------------------------
    Case("subscribe-no-subscriptions", V311, h("82 02 0001"), PE, PROTOCOL, "MQTT-3.8.3-3"),
    Case("subscribe-no-subscriptions", V5, h("82 03 0001 00"), PE, PROTOCOL, "MQTT-3.8.3-2"),
    Case("subscribe-options-reserved-bits", V311, h("82 06 0001 0001 61 04"), MP, MALFORMED,
         "MQTT-3-8.3-4"),
    Case("subscribe-options-reserved-bit-7", V311, h("82 06 0001 0001 61 80"), MP, MALFORMED,
         "MQTT-3-8.3-4"),
    Case("subscribe-options-reserved-bits-6-7", V5, subscribe5(subscriptions="0001 61 40"), MP,
         MALFORMED, "MQTT-3.8.3-5"),
    Case("subscribe-options-reserved-bit-7", V5, subscribe5(subscriptions="0001 61 81"), MP,
         MALFORMED, "MQTT-3.8.3-5"),
    Case("subscribe-retain-handling-3", V5, subscribe5(subscriptions="0001 61 30"), PE, PROTOCOL,
         "5.0 §3.8.3.1"),
    # 3.1.1 calls QoS 3 malformed; 5.0 calls it a Protocol Error.
    Case("subscribe-qos-3", V311, h("82 06 0001 0001 61 03"), MP, MALFORMED, "MQTT-3-8.3-4"),
    Case("subscribe-qos-3", V5, subscribe5(subscriptions="0001 61 03"), PE, PROTOCOL,
         "5.0 §3.8.3.1"),
    Case("subscribe-no-local-on-shared", V5,
         subscribe5(subscriptions="000a 2473686172652f672f61 04"), PE, PROTOCOL, "MQTT-3.8.3-4"),
    Case("subscribe-options-missing", V311, h("82 05 0001 0001 61"), MP, MALFORMED,
         "3.1.1 §3.8.3"),
    Case("subscribe-filter-hash-not-last", V311, h("82 0a 0001 0005 612f232f62 00"), PE,
         FILTER_INVALID, "MQTT-4.7.1-2"),
    Case("subscribe-filter-hash-not-last", V5, subscribe5(subscriptions="0005 612f232f62 00"), PE,
         FILTER_INVALID, "MQTT-4.7.1-1"),
    Case("subscribe-filter-plus-in-level", V311, h("82 07 0001 0002 612b 00"), PE,
         FILTER_INVALID, "MQTT-4.7.1-3"),
    Case("subscribe-filter-plus-in-level", V5, subscribe5(subscriptions="0002 612b 00"), PE,
         FILTER_INVALID, "MQTT-4.7.1-2"),
    Case("subscribe-filter-empty", V5, subscribe5(subscriptions="0000 00"), PE, FILTER_INVALID,
         "MQTT-4.7.3-1"),
    Case("subscribe-filter-empty", V311, h("82 05 0001 0000 00"), PE, FILTER_INVALID,
         "MQTT-4.7.3-1"),
    Case("subscribe-shared-without-filter", V5,
         subscribe5(subscriptions="0008 247368617265 2f67 00"), PE, FILTER_INVALID,
         "MQTT-4.8.2-2"),
    Case("subscribe-shared-without-filter-after-slash", V5,
         subscribe5(subscriptions="0009 247368617265 2f67 2f 00"), PE, FILTER_INVALID,
         "MQTT-4.8.2-2"),
    Case("subscribe-shared-empty-share-name", V5,
         subscribe5(subscriptions="0009 2473686172652f 2f61 00"), PE, FILTER_INVALID,
         "MQTT-4.8.2-1"),
    Case("subscribe-shared-share-name-wildcard", V5,
         subscribe5(subscriptions="000a 2473686172652f 2b 2f61 00"), PE, FILTER_INVALID,
         "MQTT-4.8.2-2"),
    # --- SUBACK, UNSUBSCRIBE, UNSUBACK ------------------------------------------------
    Case("suback-return-code-3", V311, h("90 03 0001 03"), MP, MALFORMED, "MQTT-3.9.3-2"),
    Case("suback-return-code-81", V311, h("90 03 0001 81"), MP, MALFORMED, "MQTT-3.9.3-2"),
    Case("suback-reason-code-not-for-suback", V5, h("90 04 0001 00 04"), MP, MALFORMED,
         "MQTT-3.9.3-2"),
    Case("suback-without-codes", V5, h("90 03 0001 00"), MP, MALFORMED, "5.0 §3.9.3"),
    Case("suback-without-codes", V311, h("90 02 0001"), MP, MALFORMED, "3.1.1 §3.9.3"),
    Case("unsubscribe-empty", V311, h("a2 02 0001"), PE, PROTOCOL, "MQTT-3.10.3-2"),
    Case("unsubscribe-empty", V5, h("a2 03 0001 00"), PE, PROTOCOL, "MQTT-3.10.3-2"),
    Case("unsubscribe-filter-invalid", V311, h("a2 06 0001 0002 6123"), PE, FILTER_INVALID,
         "MQTT-4.7.1-2"),
    Case("unsubscribe-shared-empty-share-name", V5,
         h("a2 0e 0001 00 0009 2473686172652f2f61"), PE, FILTER_INVALID, "MQTT-4.8.2-1"),
    Case("unsuback-reason-code-not-for-unsuback", V5, h("b0 04 0001 00 01"), MP, MALFORMED,
         "MQTT-3.11.3-2"),
    Case("unsuback-without-codes", V5, h("b0 03 0001 00"), MP, MALFORMED, "5.0 §3.11.3"),
    Case("unsuback-with-payload", V311, h("b0 03 0001 00"), MP, MALFORMED, "3.1.1 §3.11.3"),
    # --- Reason codes not allowed in the packet -------------------------------------
    Case("puback-reason-code", V5, h("40 03 0001 92"), MP, MALFORMED, "MQTT-3.4.2-1"),
    Case("puback-reason-code-undefined", V5, h("40 03 0001 05"), MP, MALFORMED, "MQTT-3.4.2-1"),
    Case("pubrec-reason-code", V5, h("50 03 0001 04"), MP, MALFORMED, "MQTT-3.5.2-1"),
    Case("pubrel-reason-code", V5, h("62 03 0001 10"), MP, MALFORMED, "MQTT-3.6.2-1"),
    Case("pubcomp-reason-code", V5, h("70 03 0001 80"), MP, MALFORMED, "MQTT-3.7.2-1"),
    Case("disconnect-reason-code", V5, h("e0 01 01"), MP, MALFORMED, "MQTT-3.14.2-1"),
    Case("disconnect-reason-code-connack-only", V5, h("e0 01 84"), MP, MALFORMED,
         "MQTT-3.14.2-1"),
    Case("auth-reason-code", V5, h("f0 02 87 00"), MP, MALFORMED, "MQTT-3.15.2-1"),
    # --- Bodies where the packet has none (or a fixed one) -------------------------
    Case("pingreq-with-body", V5, h("c0 01 00"), MP, MALFORMED, "5.0 §3.12.2"),
    Case("pingreq-with-body", V311, h("c0 01 00"), MP, MALFORMED, "3.1.1 §3.12.2"),
    Case("pingresp-with-body", V311, h("d0 02 0000"), MP, MALFORMED, "3.1.1 §3.13.2"),
    Case("disconnect-with-body", V311, h("e0 01 00"), MP, MALFORMED, "3.1.1 §3.14.2"),
    Case("puback-with-reason-code-before-5.0", V311, h("40 03 0001 00"), MP, MALFORMED,
         "3.1.1 §3.4.2"),
    Case("puback-truncated", V5, h("40 01 00"), MP, MALFORMED, "5.0 §3.4.2"),
    # --- 5.0 properties ----------------------------------------------------------
    Case("property-unknown-identifier", V5, publish5("05 00"), MP, MALFORMED, "5.0 §2.2.2.2"),
    Case("property-unknown-identifier-7f", V5, connack5("7f 00"), MP, MALFORMED, "5.0 §2.2.2.2"),
    Case("property-topic-alias-in-connect", V5, connect5("23 0001"), MP, MALFORMED,
         "5.0 §2.2.2.2"),
    Case("property-will-delay-in-publish", V5, publish5("18 00000001"), MP, MALFORMED,
         "5.0 §2.2.2.2"),
    Case("property-session-expiry-in-puback", V5, puback5("11 00000001"), MP, MALFORMED,
         "5.0 §2.2.2.2"),
    Case("property-subscription-identifier-in-connack", V5, connack5("0b 01"), MP, MALFORMED,
         "5.0 §2.2.2.2"),
    Case("property-reason-string-in-subscribe", V5, subscribe5("1f 0001 61"), MP, MALFORMED,
         "5.0 §2.2.2.2"),
    Case("property-topic-alias-in-will", V5, will5("23 0001"), MP, MALFORMED, "5.0 §2.2.2.2"),
    Case("property-receive-maximum-0-in-connect", V5, connect5("21 0000"), PE, PROTOCOL,
         "5.0 §3.1.2.11.3"),
    Case("property-receive-maximum-0-in-connack", V5, connack5("21 0000"), PE, PROTOCOL,
         "5.0 §3.2.2.3.3"),
    Case("property-maximum-packet-size-0-in-connect", V5, connect5("27 00000000"), PE, PROTOCOL,
         "5.0 §3.1.2.11.4"),
    Case("property-maximum-packet-size-0-in-connack", V5, connack5("27 00000000"), PE, PROTOCOL,
         "5.0 §3.2.2.3.6"),
    Case("property-topic-alias-0", V5, publish5("23 0000"), TopicAliasInvalid,
         RC.TOPIC_ALIAS_INVALID, "5.0 §3.3.4"),
    Case("property-payload-format-indicator-2-in-publish", V5, publish5("01 02"), PE, PROTOCOL,
         "5.0 §3.3.2.3.2"),
    Case("property-payload-format-indicator-2-in-will", V5, will5("01 02"), PE, PROTOCOL,
         "5.0 §3.1.3.2.3"),
    Case("property-request-problem-information-2", V5, connect5("17 02"), PE, PROTOCOL,
         "5.0 §3.1.2.11.7"),
    Case("property-request-response-information-2", V5, connect5("19 02"), PE, PROTOCOL,
         "5.0 §3.1.2.11.6"),
    Case("property-maximum-qos-2", V5, connack5("24 02"), PE, PROTOCOL, "5.0 §3.2.2.3.4"),
    Case("property-retain-available-2", V5, connack5("25 02"), PE, PROTOCOL, "5.0 §3.2.2.3.5"),
    Case("property-wildcard-subscription-available-2", V5, connack5("28 02"), PE, PROTOCOL,
         "5.0 §3.2.2.3.11"),
    Case("property-subscription-identifiers-available-2", V5, connack5("29 ff"), PE, PROTOCOL,
         "5.0 §3.2.2.3.12"),
    Case("property-shared-subscription-available-2", V5, connack5("2a 02"), PE, PROTOCOL,
         "5.0 §3.2.2.3.13"),
    Case("property-subscription-identifier-0-in-publish", V5, publish5("0b 00"), PE, PROTOCOL,
         "5.0 §3.3.2.3.8"),
    Case("property-subscription-identifier-0-in-subscribe", V5, subscribe5("0b 00"), PE, PROTOCOL,
         "5.0 §3.8.2.1.2"),
    Case("property-two-subscription-identifiers-in-subscribe", V5, subscribe5("0b 01 0b 02"),
         PE, PROTOCOL, "5.0 §3.8.2.1.2"),
    Case("property-length-overruns-packet", V5, h("40 05 0001 00 05 1f"), MP, MALFORMED,
         "5.0 §2.2.2.1"),
    Case("property-length-overruns-connect", V5, pkt(0x10, f"{MQTT_5} 02 003c 7f 0000"), MP,
         MALFORMED, "5.0 §2.2.2.1"),
    Case("property-string-overruns-property-block", V5, h("40 0c 0001 00 04 1f 0005 61 62636465"),
         MP, MALFORMED, "5.0 §2.2.2.2"),
    Case("property-four-byte-integer-overruns-block", V5, h("30 0b 0001 74 03 02 0000 00000000"),
         MP, MALFORMED, "5.0 §2.2.2.2"),
    Case("property-value-missing", V5, connack5("24"), MP, MALFORMED, "5.0 §2.2.2.2"),
    Case("property-response-topic-wildcard", V5, publish5("08 0003 612f23"), PE, PROTOCOL,
         "MQTT-3.3.2-14"),
    Case("property-response-topic-wildcard-in-will", V5, will5("08 0001 2b"), PE, PROTOCOL,
         "MQTT-3.3.2-14"),
    Case("property-authentication-data-without-method-in-connect", V5, connect5("16 0001 00"), PE,
         PROTOCOL, "5.0 §3.1.2.11.10"),
    Case("property-authentication-data-without-method-in-auth", V5, auth5("16 0001 00"), PE, PROTOCOL,
         "5.0 §3.15.2.2.2"),
    # --- Stream reader rules -------------------------------------------------------
    Case("first-packet-not-connect", None, h("c0 00"), PE, PROTOCOL, "MQTT-3.1.0-1",
         via="reader"),
    Case("first-packet-publish", None, h("30 05 0003 612f62"), PE, PROTOCOL, "MQTT-3.1.0-1",
         via="reader"),
    Case("max-packet-size-exceeded", V5, h("30 08 0003 612f62 00 6869"), PacketTooLarge,
         RC.PACKET_TOO_LARGE, "5.0 §3.2.2.3.6", via="reader", max_packet_size=9),
    Case("max-packet-size-exceeded", V311, h("32 09 0003 612f62 0001 6869"), PacketTooLarge,
         RC.PACKET_TOO_LARGE, "5.0 §3.2.2.3.6", via="reader", max_packet_size=10),
    Case("max-packet-size-exceeded-by-connect", None, connect311(payload="0005 6162636465"),
         PacketTooLarge, RC.PACKET_TOO_LARGE, "5.0 §3.1.2.11.4", via="reader",
         max_packet_size=16),
    # A fixed header claiming the largest Remaining Length, 268,435,455 bytes:
    # refused on these five bytes, before anything is buffered.
    Case("max-packet-size-huge-claim", V5, h("30 ff ff ff 7f"), PacketTooLarge,
         RC.PACKET_TOO_LARGE, "5.0 §3.2.2.3.6", via="reader", max_packet_size=1024),
]

# Every non-repeatable property, twice, in a packet that may carry it. The
# sentence "It is a Protocol Error to include the X more than once" is in the
# section given for each (for the PUBLISH Payload Format Indicator and Message
# Expiry Interval the specification says it only for the Will, so the Will is
# where those two are tested).
_DUPLICATES: list[tuple[str, object, str, str]] = [
    ("session-expiry-interval", connect5, "11 00000001", "5.0 §3.1.2.11.2"),
    ("receive-maximum", connect5, "21 0001", "5.0 §3.1.2.11.3"),
    ("maximum-packet-size", connect5, "27 00000100", "5.0 §3.1.2.11.4"),
    ("topic-alias-maximum", connect5, "22 0001", "5.0 §3.1.2.11.5"),
    ("request-response-information", connect5, "19 01", "5.0 §3.1.2.11.6"),
    ("request-problem-information", connect5, "17 01", "5.0 §3.1.2.11.7"),
    ("authentication-method", connect5, "15 0001 6d", "5.0 §3.1.2.11.9"),
    ("will-delay-interval", will5, "18 00000001", "5.0 §3.1.3.2.2"),
    ("payload-format-indicator", will5, "01 01", "5.0 §3.1.3.2.3"),
    ("message-expiry-interval", will5, "02 00000001", "5.0 §3.1.3.2.4"),
    ("content-type", will5, "03 0001 61", "5.0 §3.1.3.2.5"),
    ("response-topic", will5, "08 0001 72", "5.0 §3.1.3.2.6"),
    ("correlation-data", will5, "09 0001 00", "5.0 §3.1.3.2.7"),
    ("session-expiry-interval", connack5, "11 00000001", "5.0 §3.2.2.3.2"),
    ("receive-maximum", connack5, "21 0001", "5.0 §3.2.2.3.3"),
    ("maximum-qos", connack5, "24 01", "5.0 §3.2.2.3.4"),
    ("retain-available", connack5, "25 01", "5.0 §3.2.2.3.5"),
    ("maximum-packet-size", connack5, "27 00000100", "5.0 §3.2.2.3.6"),
    ("assigned-client-identifier", connack5, "12 0001 61", "5.0 §3.2.2.3.7"),
    ("topic-alias-maximum", connack5, "22 0001", "5.0 §3.2.2.3.8"),
    ("reason-string", connack5, "1f 0001 61", "5.0 §3.2.2.3.9"),
    ("wildcard-subscription-available", connack5, "28 01", "5.0 §3.2.2.3.11"),
    ("subscription-identifiers-available", connack5, "29 01", "5.0 §3.2.2.3.12"),
    ("shared-subscription-available", connack5, "2a 01", "5.0 §3.2.2.3.13"),
    ("server-keep-alive", connack5, "13 0001", "5.0 §3.2.2.3.14"),
    ("response-information", connack5, "1a 0001 61", "5.0 §3.2.2.3.15"),
    ("server-reference", connack5, "1c 0001 61", "5.0 §3.2.2.3.16"),
    ("authentication-method", connack5, "15 0001 6d", "5.0 §3.2.2.3.17"),
    ("topic-alias", publish5, "23 0001", "5.0 §3.3.2.3.4"),
    ("response-topic", publish5, "08 0001 72", "5.0 §3.3.2.3.5"),
    ("correlation-data", publish5, "09 0001 00", "5.0 §3.3.2.3.6"),
    ("content-type", publish5, "03 0001 61", "5.0 §3.3.2.3.9"),
    ("reason-string", puback5, "1f 0001 61", "5.0 §3.4.2.2.2"),
    ("subscription-identifier", subscribe5, "0b 01", "5.0 §3.8.2.1.2"),
    ("session-expiry-interval", disconnect5, "11 00000001", "5.0 §3.14.2.2.2"),
    ("reason-string", disconnect5, "1f 0001 61", "5.0 §3.14.2.2.3"),
    ("server-reference", disconnect5, "1c 0001 61", "5.0 §3.14.2.2.5"),
    ("authentication-method", auth5, "15 0001 6d", "5.0 §3.15.2.2.2"),
]
for _name, _build, _value, _rule in _DUPLICATES:
    _packet = _build.__name__.rstrip("5")  # type: ignore[attr-defined]
    CASES.append(
        Case(f"duplicate-{_name}-in-{_packet}", V5, _build(_value + " " + _value),  # type: ignore[operator]
             PE, PROTOCOL, _rule)
    )
# Authentication Data: once with a method, then again.
CASES.append(
    Case("duplicate-authentication-data-in-connect", V5,
         connect5("15 0001 6d 16 0001 00 16 0001 00"), PE, PROTOCOL, "5.0 §3.1.2.11.10")
)
CASES.append(
    Case("duplicate-authentication-data-in-connack", V5,
         connack5("15 0001 6d 16 0001 00 16 0001 00"), PE, PROTOCOL, "5.0 §3.2.2.3.18")
)
CASES.append(
    Case("duplicate-reason-string-in-auth", V5,
         auth5("15 0001 6d 1f 0001 61 1f 0001 61"), PE, PROTOCOL, "5.0 §3.15.2.2.4")
)
CASES.append(
    Case("duplicate-authentication-data-in-auth", V5,
         auth5("15 0001 6d 16 0001 00 16 0001 00"), PE, PROTOCOL, "5.0 §3.15.2.2.3")
)


def _label(case: Case) -> str:
    version = {None: "server", V31: "3.1", V311: "3.1.1", V5: "5.0"}[case.version]
    return f"{case.id}[{version}]"


_RULE = re.compile(r"MQTT-\d+\.\d+\.\d+-\d+|MQTT-3-8\.3-4|(3\.1|3\.1\.1|5\.0) §\d+(\.\d+)*")


def test_catalogue_is_well_formed() -> None:
    assert len(CASES) >= 70
    labels = [_label(case) for case in CASES]
    assert len(labels) == len(set(labels)), "duplicate case"
    for case in CASES:
        assert _RULE.fullmatch(case.rule), case.rule
        assert case.via in ("both", "decode", "reader")
        assert (case.version is None) <= (case.via == "reader")
        assert issubclass(case.error_class, RemoteProtocolError)
        assert (case.protocol_level is not None) == (case.error_class in (UPV, CINV))


def _check(exc: BaseException, case: Case) -> None:
    assert type(exc) is case.error_class, f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, RemoteProtocolError)
    assert exc.reason_code == case.reason_code, f"0x{exc.reason_code:02X}: {exc}"
    if case.protocol_level is not None:
        assert isinstance(exc, UnsupportedProtocolVersion | ClientIdentifierNotValid)
        assert exc.protocol_level == case.protocol_level


_DECODE = [case for case in CASES if case.via in ("both", "decode")]
_READER = [case for case in CASES if case.via in ("both", "reader")]


@pytest.mark.parametrize("case", _DECODE, ids=[_label(c) for c in _DECODE])
def test_decode_packet(codec: types.ModuleType, case: Case) -> None:
    assert case.version is not None
    with pytest.raises(RemoteProtocolError) as info:
        codec.decode_packet(case.data, version=case.version)
    _check(info.value, case)


def _readers(codec: types.ModuleType, case: Case) -> list[object]:
    readers = [codec.PacketReader(version=case.version, max_packet_size=case.max_packet_size)]
    if case.version is not None and case.data[0] >> 4 == 1:
        # A CONNECT is also what a server's reader sees first.
        readers.append(codec.PacketReader(max_packet_size=case.max_packet_size))
    return readers


@pytest.mark.parametrize("case", _READER, ids=[_label(c) for c in _READER])
def test_reader_whole(codec: types.ModuleType, case: Case) -> None:
    for reader in _readers(codec, case):
        with pytest.raises(RemoteProtocolError) as info:
            reader.feed(case.data)  # type: ignore[attr-defined]
        _check(info.value, case)
        assert reader.buffered == 0  # type: ignore[attr-defined]
        # The reader is broken from then on: it raises the same error again.
        with pytest.raises(type(info.value)):
            reader.feed(b"\xc0\x00")  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", _READER, ids=[_label(c) for c in _READER])
def test_reader_byte_by_byte(codec: types.ModuleType, case: Case) -> None:
    for reader in _readers(codec, case):
        error: RemoteProtocolError | None = None
        for index in range(len(case.data)):
            try:
                packets = reader.feed(case.data[index : index + 1])  # type: ignore[attr-defined]
            except RemoteProtocolError as exc:
                error = exc
                break
            assert packets == []
        assert error is not None, "no error raised"
        _check(error, case)


def test_huge_claim_raises_at_once_without_buffering(codec: types.ModuleType) -> None:
    """Five bytes announcing 268,435,455 more: refused on arrival, nothing kept."""
    reader = codec.PacketReader(version=V5, max_packet_size=1024)
    with pytest.raises(PacketTooLarge) as info:
        reader.feed(h("30 ff ff ff 7f"))
    assert info.value.reason_code == RC.PACKET_TOO_LARGE
    assert reader.buffered == 0
    # Without a maximum the same header is just the start of a (huge) packet.
    reader = codec.PacketReader(version=V5)
    assert reader.feed(h("30 ff ff ff 7f")) == []
    assert reader.buffered == 5


def test_packets_before_the_bad_one_are_not_returned(codec: types.ModuleType) -> None:
    """A feed that holds good packets and then a bad one raises; the good ones are dropped."""
    reader = codec.PacketReader(version=V311)
    with pytest.raises(MalformedPacket):
        reader.feed(h("c0 00  d0 00  00 00"))


def test_password_without_username_is_allowed_in_5(codec: types.ModuleType) -> None:
    """The 3.1.1 case above, [MQTT-3.1.2-22], is not an error in 5.0 (section 3.1.2.9)."""
    packet = codec.decode_packet(connect5(flags=0x42, payload="0000 0001 70"), version=V5)
    assert packet.password == b"p"
    assert packet.username is None
