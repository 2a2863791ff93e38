"""Encode a PUBLISH packet for MQTT 5.0 and decode it back."""

from __future__ import annotations

from mqttproto import ProtocolVersion, PublishPacket, QoS, decode_packet, encode_packet

packet = PublishPacket(
    topic="sensors/kitchen/temp",
    payload=b"21.5",
    qos=QoS.AT_LEAST_ONCE,
    packet_id=1,
    message_expiry_interval=3600,
    user_properties=(("unit", "celsius"),),
)
data = encode_packet(packet, version=ProtocolVersion.MQTT_5_0)
assert decode_packet(data, version=ProtocolVersion.MQTT_5_0) == packet
print(len(data), "bytes:", data.hex(" "))
