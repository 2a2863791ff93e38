"""Bound what a packet flooded with MQTT 5 User Properties makes the reader build."""

from __future__ import annotations

from mqttproto import PacketReader, ProtocolVersion, PublishPacket, encode_packet

V5 = ProtocolVersion.MQTT_5_0
flood = PublishPacket("t", b"", user_properties=[(f"k{i}", "v") for i in range(1000)])
data = encode_packet(flood, version=V5)

reader = PacketReader(version=V5, max_user_properties=64, max_user_property_bytes=16384)
for packet in reader.feed(data):
    properties = getattr(packet, "user_properties", ())
    if len(properties) > 64:
        # Past the limit: the list stops at the 65th, the rest were only checked.
        print("refused: more than 64 user properties; kept", len(properties))
