"""Hand-written byte vectors for every control packet in every protocol version.

Each vector's bytes were written out by hand from the packet layouts of the
specifications (MQTT 3.1, OASIS MQTT 3.1.1, OASIS MQTT 5.0), not produced by
the encoder. Every vector is checked both ways: ``decode_packet(bytes)`` gives
the packet and ``encode_packet(packet)`` gives the bytes back.

Reading aid for the hex: the first byte is the packet type (high nibble) and
flags (low nibble); then comes the Remaining Length (a Variable Byte
Integer); strings are a two-byte length then UTF-8; 5.0 properties are a
Variable Byte Integer length then ``identifier value`` pairs. The encoder
writes properties in identifier order, so the vectors do too (order does not
matter on decode: see ``DECODE_ONLY``).
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple

import pytest

from mqttproto.enums import ProtocolVersion, QoS, ReasonCode, RetainHandling
from mqttproto.packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    PingReqPacket,
    PingRespPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    UnsubAckPacket,
    UnsubscribePacket,
    Will,
)

V31 = ProtocolVersion.MQTT_3_1
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
RC = ReasonCode


class Vector(NamedTuple):
    id: str
    version: ProtocolVersion
    data: bytes
    packet: Any


def h(text: str) -> bytes:
    """Bytes from hex written with spaces (and line breaks) for readability."""
    return bytes.fromhex(text)


VECTORS: list[Vector] = [
    # ------------------------------------------------------------------ CONNECT
    # 3.1: protocol name "MQIsdp", level 3.
    Vector(
        "connect-3.1-minimal",
        V31,
        h("10 11  0006 4d5149736470  03  02  003c  0003 616263"),
        ConnectPacket(client_id="abc", protocol_version=V31, keep_alive=60),
    ),
    Vector(
        # flags 0xEE: user name, password, will retain, will QoS 1, will, clean.
        "connect-3.1-will-username-password",
        V31,
        h("10 1e  0006 4d5149736470  03  ee  000a"
          "  0002 6331  0001 77  0003 627965  0001 75  0001 70"),
        ConnectPacket(
            client_id="c1",
            protocol_version=V31,
            keep_alive=10,
            username="u",
            password=b"p",
            will=Will(topic="w", payload=b"bye", qos=QoS.AT_LEAST_ONCE, retain=True),
        ),
    ),
    Vector(
        "connect-3.1.1-minimal-empty-client-id",
        V311,
        h("10 0c  0004 4d515454  04  02  003c  0000"),
        ConnectPacket(client_id="", protocol_version=V311, keep_alive=60),
    ),
    Vector(
        # flags 0x14: will QoS 2 and will flag, clean session 0; keep alive 0.
        "connect-3.1.1-will-qos2-empty-payload",
        V311,
        h("10 15  0004 4d515454  04  14  0000  0002 6964  0003 612f62  0000"),
        ConnectPacket(
            client_id="id",
            protocol_version=V311,
            clean_start=False,
            keep_alive=0,
            will=Will(topic="a/b", payload=b"", qos=QoS.EXACTLY_ONCE),
        ),
    ),
    Vector(
        # flags 0xC2: user name, password, clean session. The password is binary.
        "connect-3.1.1-username-password",
        V311,
        h("10 19  0004 4d515454  04  c2  012c  0001 78  0004 75736572  0004 00ff7077"),
        ConnectPacket(
            client_id="x",
            protocol_version=V311,
            keep_alive=300,
            username="user",
            password=b"\x00\xffpw",
        ),
    ),
    Vector(
        "connect-3.1.1-username-only",
        V311,
        h("10 10  0004 4d515454  04  82  003c  0001 78  0001 75"),
        ConnectPacket(client_id="x", protocol_version=V311, username="u"),
    ),
    Vector(
        "connect-5.0-minimal",
        V5,
        h("10 0d  0004 4d515454  05  02  003c  00  0000"),
        ConnectPacket(client_id="", protocol_version=V5, keep_alive=60),
    ),
    Vector(
        # 5.0 allows a password without a user name (section 3.1.2.9): flags 0x42.
        "connect-5.0-password-without-username",
        V5,
        h("10 11  0004 4d515454  05  42  003c  00  0001 61  0001 73"),
        ConnectPacket(client_id="a", protocol_version=V5, password=b"s"),
    ),
    Vector(
        # Every CONNECT property and every Will property; the Remaining Length
        # (129) takes two bytes.
        "connect-5.0-properties-and-will-properties",
        V5,
        h(
            "10 8101"
            " 0004 4d515454  05  ee  001e"
            " 2f"  # property length 47
            "  11 00000e10"  # session expiry interval 3600
            "  15 0005 534352414d"  # authentication method "SCRAM"
            "  16 0002 0102"  # authentication data
            "  17 00"  # request problem information 0
            "  19 01"  # request response information 1
            "  21 0014"  # receive maximum 20
            "  22 000a"  # topic alias maximum 10
            "  26 0001 6b 0001 76"  # user property k=v
            "  26 0001 6b 0001 77"  # user property k=w (same name again)
            "  27 00001000"  # maximum packet size 4096
            " 0003 636964"  # client identifier "cid"
            " 2c"  # will property length 44
            "  01 01"  # payload format indicator 1
            "  02 0000003c"  # message expiry interval 60
            "  03 000a 746578742f706c61696e"  # content type "text/plain"
            "  08 0004 72657370"  # response topic "resp"
            "  09 0002 abcd"  # correlation data
            "  18 0000001e"  # will delay interval 30
            "  26 0001 61 0001 62"  # user property a=b
            " 0006 77696c6c2f74"  # will topic "will/t"
            " 0004 676f6e65"  # will payload "gone"
            " 0001 75"  # user name "u"
            " 0002 7077"  # password "pw"
        ),
        ConnectPacket(
            client_id="cid",
            protocol_version=V5,
            keep_alive=30,
            username="u",
            password=b"pw",
            will=Will(
                topic="will/t",
                payload=b"gone",
                qos=QoS.AT_LEAST_ONCE,
                retain=True,
                will_delay_interval=30,
                payload_format_indicator=1,
                message_expiry_interval=60,
                content_type="text/plain",
                response_topic="resp",
                correlation_data=b"\xab\xcd",
                user_properties=[("a", "b")],
            ),
            session_expiry_interval=3600,
            receive_maximum=20,
            maximum_packet_size=4096,
            topic_alias_maximum=10,
            request_response_information=True,
            request_problem_information=False,
            user_properties=[("k", "v"), ("k", "w")],
            authentication_method="SCRAM",
            authentication_data=b"\x01\x02",
        ),
    ),
    # ------------------------------------------------------------------ CONNACK
    Vector("connack-3.1-accepted", V31, h("20 02 00 00"), ConnAckPacket()),
    Vector(
        "connack-3.1-not-authorized",
        V31,
        h("20 02 00 05"),
        ConnAckPacket(reason_code=RC.NOT_AUTHORIZED),
    ),
    *[
        # 3.1.1 return codes 0-5 (table 3.1) and the reason codes they map to.
        Vector(f"connack-3.1.1-return-code-{code}", V311, h(f"20 02 00 0{code}"),
               ConnAckPacket(reason_code=reason))
        for code, reason in enumerate(
            (
                RC.SUCCESS,
                RC.UNSUPPORTED_PROTOCOL_VERSION,
                RC.CLIENT_IDENTIFIER_NOT_VALID,
                RC.SERVER_UNAVAILABLE,
                RC.BAD_USER_NAME_OR_PASSWORD,
                RC.NOT_AUTHORIZED,
            )
        )
    ],
    Vector(
        "connack-3.1.1-session-present",
        V311,
        h("20 02 01 00"),
        ConnAckPacket(session_present=True),
    ),
    Vector("connack-5.0-minimal", V5, h("20 03 00 00 00"), ConnAckPacket()),
    Vector(
        "connack-5.0-refused",
        V5,
        h("20 03 00 87 00"),
        ConnAckPacket(reason_code=RC.NOT_AUTHORIZED),
    ),
    Vector(
        "connack-5.0-use-another-server",
        V5,
        h("20 07 00 9c 04  1c 0001 68"),
        ConnAckPacket(reason_code=RC.USE_ANOTHER_SERVER, server_reference="h"),
    ),
    Vector(
        # Every CONNACK property.
        "connack-5.0-every-property",
        V5,
        h(
            "20 49  01 00  46"
            "  11 00000078"  # session expiry interval 120
            "  12 0003 616263"  # assigned client identifier "abc"
            "  13 0014"  # server keep alive 20
            "  15 0005 534352414d"  # authentication method "SCRAM"
            "  16 0001 ff"  # authentication data
            "  1a 0004 72657370"  # response information "resp"
            "  1c 0001 73"  # server reference "s"
            "  1f 0002 6f6b"  # reason string "ok"
            "  21 0100"  # receive maximum 256
            "  22 0005"  # topic alias maximum 5
            "  24 01"  # maximum QoS 1
            "  25 00"  # retain available 0
            "  26 0001 78 0001 79"  # user property x=y
            "  27 0000ffff"  # maximum packet size 65535
            "  28 01"  # wildcard subscription available
            "  29 00"  # subscription identifiers available
            "  2a 01"  # shared subscription available
        ),
        ConnAckPacket(
            session_present=True,
            session_expiry_interval=120,
            assigned_client_identifier="abc",
            server_keep_alive=20,
            authentication_method="SCRAM",
            authentication_data=b"\xff",
            response_information="resp",
            server_reference="s",
            reason_string="ok",
            receive_maximum=256,
            topic_alias_maximum=5,
            maximum_qos=QoS.AT_LEAST_ONCE,
            retain_available=False,
            user_properties=[("x", "y")],
            maximum_packet_size=65535,
            wildcard_subscription_available=True,
            subscription_identifiers_available=False,
            shared_subscription_available=True,
        ),
    ),
    # ------------------------------------------------------------------ PUBLISH
    Vector(
        "publish-3.1-qos1",
        V31,
        h("32 09  0003 612f62  000a  6869"),
        PublishPacket(topic="a/b", payload=b"hi", qos=QoS.AT_LEAST_ONCE, packet_id=10),
    ),
    Vector(
        "publish-3.1.1-qos0",
        V311,
        h("30 07  0003 612f62  6869"),
        PublishPacket(topic="a/b", payload=b"hi"),
    ),
    Vector(
        "publish-3.1.1-qos1",
        V311,
        h("32 09  0003 612f62  000a  6869"),
        PublishPacket(topic="a/b", payload=b"hi", qos=QoS.AT_LEAST_ONCE, packet_id=10),
    ),
    Vector(
        # 0x3D: DUP, QoS 2, RETAIN.
        "publish-3.1.1-qos2-dup-retain",
        V311,
        h("3d 09  0003 612f62  1234  6869"),
        PublishPacket(
            topic="a/b",
            payload=b"hi",
            qos=QoS.EXACTLY_ONCE,
            packet_id=0x1234,
            retain=True,
            duplicate=True,
        ),
    ),
    Vector(
        "publish-3.1.1-retain-empty-payload",
        V311,
        h("31 05  0003 612f62"),
        PublishPacket(topic="a/b", retain=True),
    ),
    Vector(
        # [MQTT-1.5.3-3] U+FEFF (EF BB BF) at the start is kept, not stripped.
        "publish-3.1.1-leading-bom-kept",
        V311,
        h("30 08  0004 efbbbf61  6869"),
        PublishPacket(topic="\ufeffa", payload=b"hi"),
    ),
    Vector(
        "publish-5.0-qos0",
        V5,
        h("30 08  0003 612f62  00  6869"),
        PublishPacket(topic="a/b", payload=b"hi"),
    ),
    Vector(
        "publish-5.0-qos1-dup",
        V5,
        h("3a 0a  0003 612f62  0001  00  6869"),
        PublishPacket(
            topic="a/b", payload=b"hi", qos=QoS.AT_LEAST_ONCE, packet_id=1, duplicate=True
        ),
    ),
    Vector(
        "publish-5.0-qos2-retain",
        V5,
        h("35 0a  0003 612f62  ffff  00  6869"),
        PublishPacket(
            topic="a/b", payload=b"hi", qos=QoS.EXACTLY_ONCE, packet_id=0xFFFF, retain=True
        ),
    ),
    Vector(
        # [MQTT-1.5.4-3] U+FEFF at the start of a topic is kept.
        "publish-5.0-leading-bom-kept",
        V5,
        h("30 09  0004 efbbbf61  00  6869"),
        PublishPacket(topic="\ufeffa", payload=b"hi"),
    ),
    Vector(
        # Every PUBLISH property but the Payload Format Indicator (next
        # vector); user properties keep their order and duplicates
        # [MQTT-3.3.2-18]; three subscription identifiers, of 1, 2 and 4 bytes
        # [MQTT-3.3.4-4].
        "publish-5.0-every-property",
        V5,
        h(
            "32 49  0001 74  0005"
            " 41"  # property length 65
            "  02 00000e10"  # message expiry interval 3600
            "  03 0004 6a736f6e"  # content type "json"
            "  08 0005 7265706c79"  # response topic "reply"
            "  09 0003 010203"  # correlation data
            "  0b 01"  # subscription identifier 1
            "  0b 8001"  # subscription identifier 128
            "  0b ffffff7f"  # subscription identifier 268,435,455
            "  23 0007"  # topic alias 7
            "  26 0001 6b 0001 31"  # user property k=1
            "  26 0001 6b 0001 32"  # user property k=2
            "  26 0001 6b 0001 31"  # user property k=1 again
            "  26 0000 0000"  # user property with empty name and value
            " 7b7d"  # payload "{}"
        ),
        PublishPacket(
            topic="t",
            payload=b"{}",
            qos=QoS.AT_LEAST_ONCE,
            packet_id=5,
            message_expiry_interval=3600,
            content_type="json",
            response_topic="reply",
            correlation_data=b"\x01\x02\x03",
            subscription_identifiers=[1, 128, 268_435_455],
            topic_alias=7,
            user_properties=[("k", "1"), ("k", "2"), ("k", "1"), ("", "")],
        ),
    ),
    Vector(
        "publish-5.0-payload-format-indicator",
        V5,
        h("30 06  0001 74  02 01 01"),
        PublishPacket(topic="t", payload_format_indicator=1),
    ),
    Vector(
        # A zero-length topic name with a Topic Alias (section 3.3.2.3.4).
        "publish-5.0-empty-topic-with-alias",
        V5,
        h("30 08  0000  03 23 0007  6869"),
        PublishPacket(topic="", payload=b"hi", topic_alias=7),
    ),
    # ------------------------------------------- PUBACK, PUBREC, PUBREL, PUBCOMP
    *[
        Vector(f"{name}-{label}", version, h(f"{first} 02 0001"), cls(packet_id=1))
        for name, first, cls in (
            ("puback", "40", PubAckPacket),
            ("pubrec", "50", PubRecPacket),
            ("pubrel", "62", PubRelPacket),  # PUBREL flags are 0010 [MQTT-3.6.1-1]
            ("pubcomp", "70", PubCompPacket),
        )
        for label, version in (("3.1", V31), ("3.1.1", V311), ("5.0-short", V5))
    ],
    # 5.0 with a Remaining Length of 3: the reason code only.
    Vector(
        "puback-5.0-reason-only",
        V5,
        h("40 03 0001 10"),
        PubAckPacket(packet_id=1, reason_code=RC.NO_MATCHING_SUBSCRIBERS),
    ),
    Vector(
        "pubrec-5.0-reason-only",
        V5,
        h("50 03 0002 80"),
        PubRecPacket(packet_id=2, reason_code=RC.UNSPECIFIED_ERROR),
    ),
    Vector(
        "pubrel-5.0-reason-only",
        V5,
        h("62 03 0003 92"),
        PubRelPacket(packet_id=3, reason_code=RC.PACKET_IDENTIFIER_NOT_FOUND),
    ),
    Vector(
        "pubcomp-5.0-reason-only",
        V5,
        h("70 03 0004 92"),
        PubCompPacket(packet_id=4, reason_code=RC.PACKET_IDENTIFIER_NOT_FOUND),
    ),
    # 5.0 with properties.
    Vector(
        "puback-5.0-full",
        V5,
        h("40 0f  0007  97  0b  1f 0001 71  26 0001 61 0001 62"),
        PubAckPacket(
            packet_id=7,
            reason_code=RC.QUOTA_EXCEEDED,
            reason_string="q",
            user_properties=[("a", "b")],
        ),
    ),
    Vector(
        "pubrec-5.0-full",
        V5,
        h("50 0a  0001  99  06  1f 0003 626164"),
        PubRecPacket(packet_id=1, reason_code=RC.PAYLOAD_FORMAT_INVALID, reason_string="bad"),
    ),
    Vector(
        "pubrel-5.0-full",
        V5,
        h("62 0b  0001  00  07  26 0001 6b 0001 76"),
        PubRelPacket(packet_id=1, user_properties=[("k", "v")]),
    ),
    Vector(
        "pubcomp-5.0-full",
        V5,
        h("70 09  0001  00  05  1f 0002 6f6b"),
        PubCompPacket(packet_id=1, reason_string="ok"),
    ),
    # ---------------------------------------------------------------- SUBSCRIBE
    *[
        Vector(
            f"subscribe-{label}",
            version,
            h("82 0e  000a  0003 612f62 01  0003 632f23 02"),
            SubscribePacket(
                packet_id=10,
                subscriptions=[
                    Subscription("a/b", QoS.AT_LEAST_ONCE),
                    Subscription("c/#", QoS.EXACTLY_ONCE),
                ],
            ),
        )
        for label, version in (("3.1", V31), ("3.1.1", V311))
    ],
    Vector(
        "subscribe-5.0-minimal",
        V5,
        h("82 07  0002  00  0001 23 00"),
        SubscribePacket(packet_id=2, subscriptions=[Subscription("#")]),
    ),
    Vector(
        # Subscription options: bits 0-1 QoS, 2 No Local, 3 Retain As
        # Published, 4-5 Retain Handling. Subscription identifier 300 = ac 02.
        "subscribe-5.0-options",
        V5,
        h(
            "82 2e  0001"
            " 0a  0b ac02  26 0001 61 0001 62"
            " 0001 61 04"  # no local
            " 0001 62 09"  # retain as published, QoS 1
            " 0001 63 12"  # retain handling 1, QoS 2
            " 0001 64 20"  # retain handling 2
            " 0001 65 2e"  # all three, QoS 2
            " 000a 2473686172652f672f78 01"  # "$share/g/x", QoS 1
        ),
        SubscribePacket(
            packet_id=1,
            subscriptions=[
                Subscription("a", no_local=True),
                Subscription("b", QoS.AT_LEAST_ONCE, retain_as_published=True),
                Subscription(
                    "c", QoS.EXACTLY_ONCE, retain_handling=RetainHandling.SEND_IF_NEW_SUBSCRIPTION
                ),
                Subscription("d", retain_handling=RetainHandling.DO_NOT_SEND),
                Subscription(
                    "e",
                    QoS.EXACTLY_ONCE,
                    no_local=True,
                    retain_as_published=True,
                    retain_handling=RetainHandling.DO_NOT_SEND,
                ),
                Subscription("$share/g/x", QoS.AT_LEAST_ONCE),
            ],
            subscription_identifier=300,
            user_properties=[("a", "b")],
        ),
    ),
    # ------------------------------------------------------------------- SUBACK
    Vector(
        "suback-3.1",
        V31,
        h("90 03 000a 01"),
        SubAckPacket(packet_id=10, reason_codes=[RC.GRANTED_QOS_1]),
    ),
    Vector(
        # 3.1.1 return codes 0x00, 0x01, 0x02 and 0x80 (failure).
        "suback-3.1.1",
        V311,
        h("90 06 000a 01 02 80 00"),
        SubAckPacket(
            packet_id=10,
            reason_codes=[RC.GRANTED_QOS_1, RC.GRANTED_QOS_2, RC.UNSPECIFIED_ERROR, RC.GRANTED_QOS_0],
        ),
    ),
    Vector(
        "suback-5.0-minimal",
        V5,
        h("90 04 0001 00 00"),
        SubAckPacket(packet_id=1, reason_codes=[RC.GRANTED_QOS_0]),
    ),
    Vector(
        # Every Subscribe reason code (table 3.8).
        "suback-5.0-every-code",
        V5,
        h("90 13  0001  04 1f 0001 72  00 01 02 80 83 87 8f 91 97 9e a1 a2"),
        SubAckPacket(
            packet_id=1,
            reason_string="r",
            reason_codes=[
                RC.GRANTED_QOS_0,
                RC.GRANTED_QOS_1,
                RC.GRANTED_QOS_2,
                RC.UNSPECIFIED_ERROR,
                RC.IMPLEMENTATION_SPECIFIC_ERROR,
                RC.NOT_AUTHORIZED,
                RC.TOPIC_FILTER_INVALID,
                RC.PACKET_IDENTIFIER_IN_USE,
                RC.QUOTA_EXCEEDED,
                RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
                RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ],
        ),
    ),
    # -------------------------------------------------------------- UNSUBSCRIBE
    *[
        Vector(
            f"unsubscribe-{label}",
            version,
            h("a2 0c  0002  0003 612f62  0003 632f2b"),
            UnsubscribePacket(packet_id=2, topic_filters=["a/b", "c/+"]),
        )
        for label, version in (("3.1", V31), ("3.1.1", V311))
    ],
    Vector(
        "unsubscribe-5.0",
        V5,
        h("a2 19  0003  07 26 0001 6b 0001 76  0001 78  000a 2473686172652f672f23"),
        UnsubscribePacket(
            packet_id=3, topic_filters=["x", "$share/g/#"], user_properties=[("k", "v")]
        ),
    ),
    # ----------------------------------------------------------------- UNSUBACK
    # 3.1 and 3.1.1 UNSUBACK has no payload.
    Vector("unsuback-3.1", V31, h("b0 02 0002"), UnsubAckPacket(packet_id=2)),
    Vector("unsuback-3.1.1", V311, h("b0 02 0002"), UnsubAckPacket(packet_id=2)),
    Vector(
        # Every Unsubscribe reason code (table 3.9).
        "unsuback-5.0-every-code",
        V5,
        h("b0 0a  0003  00  00 11 80 83 87 8f 91"),
        UnsubAckPacket(
            packet_id=3,
            reason_codes=[
                RC.SUCCESS,
                RC.NO_SUBSCRIPTION_EXISTED,
                RC.UNSPECIFIED_ERROR,
                RC.IMPLEMENTATION_SPECIFIC_ERROR,
                RC.NOT_AUTHORIZED,
                RC.TOPIC_FILTER_INVALID,
                RC.PACKET_IDENTIFIER_IN_USE,
            ],
        ),
    ),
    Vector(
        "unsuback-5.0-reason-string",
        V5,
        h("b0 08  0003  04 1f 0001 6e  11"),
        UnsubAckPacket(
            packet_id=3, reason_codes=[RC.NO_SUBSCRIPTION_EXISTED], reason_string="n"
        ),
    ),
    # ------------------------------------------------------- PINGREQ, PINGRESP
    *[
        Vector(f"{name}-{label}", version, h(hex_), packet)
        for name, hex_, packet in (
            ("pingreq", "c0 00", PingReqPacket()),
            ("pingresp", "d0 00", PingRespPacket()),
        )
        for label, version in (("3.1", V31), ("3.1.1", V311), ("5.0", V5))
    ],
    # --------------------------------------------------------------- DISCONNECT
    Vector("disconnect-3.1", V31, h("e0 00"), DisconnectPacket()),
    Vector("disconnect-3.1.1", V311, h("e0 00"), DisconnectPacket()),
    Vector("disconnect-5.0-short", V5, h("e0 00"), DisconnectPacket()),
    Vector(
        "disconnect-5.0-reason-only",
        V5,
        h("e0 01 04"),
        DisconnectPacket(reason_code=RC.DISCONNECT_WITH_WILL_MESSAGE),
    ),
    Vector(
        "disconnect-5.0-session-taken-over",
        V5,
        h("e0 01 8e"),
        DisconnectPacket(reason_code=RC.SESSION_TAKEN_OVER),
    ),
    Vector(
        "disconnect-5.0-normal-with-reason-string",
        V5,
        h("e0 07  00  05 1f 0002 6f6b"),
        DisconnectPacket(reason_string="ok"),
    ),
    Vector(
        "disconnect-5.0-every-property",
        V5,
        h(
            "e0 1a  9c  18"
            "  11 00000000"  # session expiry interval 0
            "  1c 0003 737276"  # server reference "srv"
            "  1f 0003 627965"  # reason string "bye"
            "  26 0001 61 0001 62"  # user property a=b
        ),
        DisconnectPacket(
            reason_code=RC.USE_ANOTHER_SERVER,
            session_expiry_interval=0,
            server_reference="srv",
            reason_string="bye",
            user_properties=[("a", "b")],
        ),
    ),
    # --------------------------------------------------------------------- AUTH
    Vector("auth-5.0-short", V5, h("f0 00"), AuthPacket()),
    Vector(
        "auth-5.0-continue-no-properties",
        V5,
        h("f0 02 18 00"),
        AuthPacket(reason_code=RC.CONTINUE_AUTHENTICATION),
    ),
    Vector(
        "auth-5.0-continue",
        V5,
        h("f0 10  18  0e  15 0005 534352414d  16 0003 010203"),
        AuthPacket(
            reason_code=RC.CONTINUE_AUTHENTICATION,
            authentication_method="SCRAM",
            authentication_data=b"\x01\x02\x03",
        ),
    ),
    Vector(
        "auth-5.0-reauthenticate",
        V5,
        h("f0 11  19  0f  15 0001 6d  1f 0001 72  26 0001 61 0001 62"),
        AuthPacket(
            reason_code=RC.RE_AUTHENTICATE,
            authentication_method="m",
            reason_string="r",
            user_properties=[("a", "b")],
        ),
    ),
]


# Remaining Lengths around each boundary of the Variable Byte Integer (table
# 1-1 of 5.0, table 2.4 of 3.1.1): a QoS 0 PUBLISH to topic "a" (3 bytes)
# whose payload brings the Remaining Length to the value given. The fixed
# header bytes are written out by hand; the payload is n zero bytes.
LENGTH_VECTORS: list[tuple[str, int, str]] = [
    ("1-byte-max", 127, "30 7f"),
    ("2-byte-min", 128, "30 80 01"),
    ("2-byte-max", 16_383, "30 ff 7f"),
    ("3-byte-min", 16_384, "30 80 80 01"),
    ("3-byte-max", 2_097_151, "30 ff ff 7f"),
    ("4-byte-min", 2_097_152, "30 80 80 80 01"),
]

# Valid encodings the encoder does not produce (it writes the shortest form
# and properties in identifier order): they decode, but do not round-trip.
DECODE_ONLY: list[Vector] = [
    # 5.0 acks with a property length of 0 written out.
    Vector("puback-5.0-empty-properties", V5, h("40 04 0001 00 00"), PubAckPacket(packet_id=1)),
    Vector(
        "pubrec-5.0-reason-empty-properties",
        V5,
        h("50 04 0001 10 00"),
        PubRecPacket(packet_id=1, reason_code=RC.NO_MATCHING_SUBSCRIBERS),
    ),
    Vector("disconnect-5.0-empty-properties", V5, h("e0 02 00 00"), DisconnectPacket()),
    Vector("auth-5.0-empty-properties", V5, h("f0 02 00 00"), AuthPacket()),
    # Properties in any order (section 2.2.2.2: the order is not significant).
    # Which order the encoder writes these two in is left open here.
    Vector(
        "publish-5.0-format-indicator-and-expiry",
        V5,
        h("30 0b  0001 74  07  01 01  02 00000e10"),
        PublishPacket(topic="t", payload_format_indicator=1, message_expiry_interval=3600),
    ),
    Vector(
        "publish-5.0-properties-out-of-order",
        V5,
        h("30 0d  0001 74  09  26 0001 61 0001 62  01 01"),
        PublishPacket(topic="t", user_properties=[("a", "b")], payload_format_indicator=1),
    ),
]


def _ids(vectors: list[Vector]) -> list[str]:
    return [vector.id for vector in vectors]


def test_vector_ids_are_unique() -> None:
    ids = _ids(VECTORS) + _ids(DECODE_ONLY)
    assert len(ids) == len(set(ids))


def test_every_packet_type_in_every_version() -> None:
    """Each packet type has a vector in each version where it exists."""
    seen = {(type(v.packet), v.version) for v in VECTORS}
    all_types = {
        ConnectPacket, ConnAckPacket, PublishPacket, PubAckPacket, PubRecPacket,
        PubRelPacket, PubCompPacket, SubscribePacket, SubAckPacket, UnsubscribePacket,
        UnsubAckPacket, PingReqPacket, PingRespPacket, DisconnectPacket,
    }  # fmt: skip
    for version in (V31, V311, V5):
        for cls in all_types:
            assert (cls, version) in seen, (cls.__name__, version)
    assert (AuthPacket, V5) in seen


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_decode(codec: types.ModuleType, vector: Vector) -> None:
    assert codec.decode_packet(vector.data, version=vector.version) == vector.packet


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_encode(codec: types.ModuleType, vector: Vector) -> None:
    assert codec.encode_packet(vector.packet, version=vector.version) == vector.data


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_reader(codec: types.ModuleType, vector: Vector) -> None:
    """The stream reader gives the same packet, whole or one byte at a time."""
    reader = codec.PacketReader(version=vector.version)
    assert reader.feed(vector.data) == [vector.packet]
    reader = codec.PacketReader(version=vector.version)
    packets = []
    for index in range(len(vector.data)):
        packets.extend(reader.feed(vector.data[index : index + 1]))
    assert packets == [vector.packet]


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if isinstance(v.packet, ConnectPacket)],
    ids=[v.id for v in VECTORS if isinstance(v.packet, ConnectPacket)],
)
def test_server_reader_adopts_connect_version(codec: types.ModuleType, vector: Vector) -> None:
    reader = codec.PacketReader()
    assert reader.feed(vector.data) == [vector.packet]
    assert reader.version == vector.version


@pytest.mark.parametrize("vector", DECODE_ONLY, ids=_ids(DECODE_ONLY))
def test_decode_only(codec: types.ModuleType, vector: Vector) -> None:
    assert codec.decode_packet(vector.data, version=vector.version) == vector.packet
    # Whatever form the encoder picks, it decodes back to the same packet.
    encoded = codec.encode_packet(vector.packet, version=vector.version)
    assert codec.decode_packet(encoded, version=vector.version) == vector.packet


@pytest.mark.parametrize("version", [V31, V311, V5], ids=["3.1", "3.1.1", "5.0"])
@pytest.mark.parametrize(
    ("remaining_length", "header"),
    [(length, header) for _, length, header in LENGTH_VECTORS],
    ids=[name for name, _, _ in LENGTH_VECTORS],
)
def test_remaining_length_sizes(
    codec: types.ModuleType, version: ProtocolVersion, remaining_length: int, header: str
) -> None:
    prefix = h(header) + h("0001 61") + (h("00") if version == V5 else b"")
    payload = bytes(remaining_length - (len(prefix) - len(h(header))))
    data = prefix + payload
    packet = PublishPacket(topic="a", payload=payload)
    # In 5.0 the property length byte makes the payload one byte shorter for
    # the same Remaining Length.
    assert len(data) - len(h(header)) == remaining_length
    assert codec.decode_packet(data, version=version) == packet
    assert codec.encode_packet(packet, version=version) == data
