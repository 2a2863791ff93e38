"""Read packets from a TCP stream with PacketReader: CONNECT, then CONNACK.

Talks to the broker at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883).
"""

from __future__ import annotations

import os
import socket

from mqttproto import ConnAckPacket, ConnectPacket, PacketReader, ProtocolVersion, encode_packet

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))
V5 = ProtocolVersion.MQTT_5_0

with socket.create_connection((HOST, PORT), timeout=10) as sock:
    sock.sendall(encode_packet(ConnectPacket(client_id="codec-demo"), version=V5))
    reader = PacketReader(version=V5, max_packet_size=65536)
    packets = []
    while not packets:
        chunk = sock.recv(65536)  # any number of bytes: part of a packet, or several
        if not chunk:
            raise ConnectionError("the server closed the connection")
        packets = reader.feed(chunk)  # every packet these bytes completed
    connack = packets[0]
    assert isinstance(connack, ConnAckPacket)
    print("CONNACK:", connack.reason_code.name, "session present:", connack.session_present)
